"""Backends: numpy (vectorised program), torch (the same program as torch ops, autograd
gradients; or the user's torch_fn), mpmath (the exact oracle)."""
