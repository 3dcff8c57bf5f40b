"""Capture: any torch function or ``nn.Module`` as a tensor program, and ``gradcheck``.

``torch.export`` (core ATen after decompositions) turns the user's code into a graph of ATen
ops; ``symgrad.capture.aten`` holds the one table that lowers each supported op to tensor-program
nodes; ``symgrad.capture.walk`` walks the graph into a ``TensorModel``;
``symgrad.capture.gradcheck`` is the drop-in for ``torch.autograd.gradcheck``.

This package file imports nothing, so a lower floor may import ``symgrad.capture.walk`` without
loading ``gradcheck`` (which sits on the verify floor).
"""
