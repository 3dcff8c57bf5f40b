"""Backends: numpy (vectorised program), torch (the same program as torch ops, autograd
gradients; or the user's torch_fn), arb (the certified oracle's ball arithmetic), mpmath
(explanations)."""
