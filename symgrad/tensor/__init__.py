"""Tensor programs: a model as whole-array operations, its exact gradient as another program,
and views of it (numpy, torch, the oracle, the rounding-error bound). See ``program``."""

from .derive import Gradient, gradient
from .model import TensorModel
from .ops import (ELEMENTWISE, causal_mask, causal_self_attention, cross_entropy, dense, dropout,
                  embedding, layer_norm, log_softmax, logsumexp, mean, softmax, stack)
from .program import (X, Node, add_all, broadcast, const, einsum, input, map_, matmul, max_,
                      onehot, param, reshape, scatter_add, stop_gradient, sum_, take,
                      topological, transpose)

globals().update(ELEMENTWISE)  # symgrad.tensor.<op> for every entry of the op table

__all__ = sorted([
    "Gradient", "Node", "TensorModel", "X", "add_all", "broadcast", "causal_mask",
    "causal_self_attention", "const",
    "cross_entropy", "dense", "dropout", "einsum", "embedding", "gradient",
    "input", "layer_norm", "log_softmax", "logsumexp", "map_", "matmul", "max_", "mean",
    "onehot", "param", "reshape", "scatter_add", "softmax", "stack", "stop_gradient", "sum_", "take",
    "topological", "transpose", *ELEMENTWISE,
])
