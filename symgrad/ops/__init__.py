"""Building blocks as sympy: each result is a named intermediate of the model's program.

``basic``: activations, losses and tensor ops (the tutorial's); ``transformer``: GPT-2's blocks.
"""

from .basic import (Group, bce, exp, linear, matmul, mse, relu, reshape, sigmoid, softplus, step,
                    tanh, total, transpose)
from .transformer import (add, causal_self_attention, cross_entropy, dense, dropout, embedding,
                          feed_forward, gelu, layer_norm, log_softmax, softmax)

__all__ = ["Group", "add", "bce", "causal_self_attention", "cross_entropy", "dense", "dropout",
           "embedding", "exp", "feed_forward", "gelu", "layer_norm", "linear", "log_softmax",
           "matmul", "mse", "relu", "reshape", "sigmoid", "softmax", "softplus", "step", "tanh",
           "total", "transpose"]
