"""Building blocks as sympy: each result is a named intermediate of the model's program.

``basic``: losses and tensor ops (the tutorial's); ``transformer``: GPT-2's blocks;
``elementwise``: one function per entry of the op table (``symgrad.optable``): sigmoid, relu,
tanh, exp, log, softplus, gelu, ...
"""

from .basic import Group, bce, linear, matmul, mse, reshape, step, total, transpose
from .elementwise import FUNCTIONS as _ELEMENTWISE
from .transformer import (add, causal_self_attention, cross_entropy, dense, dropout, embedding,
                          feed_forward, layer_norm, log_softmax, softmax)

globals().update(_ELEMENTWISE)  # sg.ops.<op> for every entry of the op table

__all__ = sorted(["Group", "add", "bce", "causal_self_attention", "cross_entropy", "dense",
                  "dropout", "embedding", "feed_forward", "layer_norm", "linear", "log_softmax",
                  "matmul", "mse", "reshape", "softmax", "step", "total", "transpose",
                  *_ELEMENTWISE])
