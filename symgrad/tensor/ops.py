"""Model-building ops on tensor nodes, read like torch: ``dense``, ``layer_norm``, ``gelu``,
``softmax``, ``causal_self_attention``, ``dropout``, ``cross_entropy``, ``embedding``.

Rows are positions, the last axis features. Weights follow ``torch.nn.Linear``: W is (out, in)
and ``dense(x, W, b) = x W^T + b``. Each op adds a handful of nodes whatever the sizes.

>>> import symgrad.tensor as st
>>> x, W = st.param("x", (4, 3)), st.param("W", (5, 3))
>>> st.gelu(st.dense(x, W)).shape
(4, 5)
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import SymgradError
from ..optable import X0, families, function
from .program import (X, Node, add_all, const, einsum, map_, max_, onehot, reshape,
                      stop_gradient, sum_, take, transpose)

_LETTERS = "abcdefgh"


def mean(x: Node, axes=None, *, keepdims: bool = False) -> Node:
    """Mean over ``axes`` (default all): a sum, then one exact division by the count."""
    s = sum_(x, axes, keepdims=keepdims)
    return map_(X[0] / sp.Integer(x.size // max(s.size, 1)), s)


def dense(x: Node, W: Node, b: Node | None = None) -> Node:
    """``x W^T + b`` over the last axis of ``x`` (torch.nn.Linear: W is (out, in))."""
    if W.ndim != 2 or x.shape[-1] != W.shape[1]:
        raise SymgradError(f"dense: input {x.name or 'x'} has {x.shape[-1]} features but weight "
                           f"{W.name!r} has shape {W.shape}; need (out, in={x.shape[-1]})")
    lead = _LETTERS[:x.ndim - 1]
    y = einsum(f"{lead}i,oi->{lead}o", x, W)
    if b is None:
        return y
    if b.shape != (W.shape[0],):
        raise SymgradError(f"dense: bias {b.name!r} has shape {b.shape}, need ({W.shape[0]},)")
    return y + b


def layer_norm(x: Node, gain: Node | None, bias: Node | None, *,
               eps=sp.Rational(1, 10**5)) -> Node:
    """nn.LayerNorm over the last axis: biased variance, ``eps`` inside the square root."""
    C = x.shape[-1]
    for p in (gain, bias):
        if p is not None and p.shape != (C,):
            raise SymgradError(f"layer_norm: {p.name!r} has shape {p.shape}, need ({C},)")
    mu = mean(x, -1, keepdims=True)
    xc = x - mu
    var = mean(map_(X[0] ** 2, xc), -1, keepdims=True)
    y = map_(X[0] / sp.sqrt(X[1] + eps), xc, var)
    if gain is not None:
        y = y * gain
    if bias is not None:
        y = y + bias
    return y


# symgrad.tensor.<op> for every entry of the op table (symgrad.optable)
ELEMENTWISE = {name: function(name, lambda e, x: map_(e.computed.xreplace({X0: X[0]}), x))
               for name in families()}


def _shift(x: Node, axis: int, mask: Node | None) -> Node:
    """max over ``axis`` (of the unmasked entries) as a stopped shift, keepdims."""
    # masked entries become -|x| (<= 0): below a real maximum unless every real score is far
    # more negative than a masked one is large (then exp of the real ones may underflow)
    src = x if mask is None else map_(X[0] * X[1] + (X[1] - 1) * sp.Abs(X[0]), x, mask)
    return stop_gradient(max_(src, axis, keepdims=True))


def softmax(x: Node, axis: int = -1, *, mask: Node | None = None) -> Node:
    """exp(x - max) / sum over ``axis``; ``mask`` (0/1, broadcastable) leaves entries out as
    torch's masked_fill(-inf) does, without infinities: exp is taken of ``mask * (x - max)``."""
    m = _shift(x, axis, mask)
    if mask is None:
        e = map_(sp.exp(X[0] - X[1]), x, m)
    else:
        e = map_(X[2] * sp.exp(X[2] * (X[0] - X[1])), x, m, mask)
    return e / sum_(e, axis, keepdims=True)


def logsumexp(x: Node, axis: int = -1) -> Node:
    """m + log(sum(exp(x - m))) over ``axis`` with m the stopped max, keepdims."""
    m = _shift(x, axis, None)
    s = sum_(map_(sp.exp(X[0] - X[1]), x, m), axis, keepdims=True)
    return map_(X[0] + sp.log(X[1]), m, s)


def log_softmax(x: Node, axis: int = -1) -> Node:
    return x - logsumexp(x, axis)


def dropout(x: Node, keep: Node | None, p) -> Node:
    """Dropout with an explicit 0/1 keep-mask input and 1/(1-p) scaling; identity without one."""
    if keep is None:
        return x
    if keep.shape != x.shape:
        raise SymgradError(f"dropout: keep-mask {keep.name!r} has shape {keep.shape}, the input "
                           f"has {x.shape}")
    return map_(X[0] * X[1] / (1 - sp.nsimplify(p)), x, keep)


def stack(nodes: list[Node]) -> Node:
    """(k, *shape) from k nodes of one shape: sum_i e_i (x) node_i, exact (products by 0/1)."""
    k = len(nodes)
    shape = nodes[0].shape
    if any(n.shape != shape for n in nodes):
        raise SymgradError(f"stack: shapes {[n.shape for n in nodes]} differ")
    letters = _LETTERS[:len(shape)]
    parts = [einsum(f"k,{letters}->k{letters}", const(np.eye(k)[i], f"e{i}"), n)
             for i, n in enumerate(nodes)]
    return add_all(parts)


def embedding(ids: Node, table: Node) -> Node:
    """Rows of ``table`` (V, C) selected by the integer input ``ids`` (T,)."""
    return take(table, ids)


def causal_mask(T: int) -> Node:
    """(T, T) with 1 where position t may attend to s (s <= t)."""
    return const(np.tril(np.ones((T, T))), "causal_mask")


def causal_self_attention(x: Node, Wq: Node, Wk: Node, Wv: Node, Wo: Node, bo: Node | None = None,
                          *, n_heads: int, bq: Node | None = None, bk: Node | None = None,
                          bv: Node | None = None, attn_keep: Node | None = None,
                          p: float = 0.0) -> Node:
    """Multi-head causal self-attention as GPT-2 (and the book) computes it.

    x (T, C); Wq, Wk, Wv, Wo (C, C) as nn.Linear weights; q/k/v biases optional (qkv_bias);
    output projection bias ``bo``. ``attn_keep`` (H, T, T) is the dropout keep-mask of the
    attention weights.
    """
    T, C = x.shape
    if C % n_heads:
        raise SymgradError(f"attention: emb_dim {C} is not divisible by n_heads {n_heads}")
    hd = C // n_heads

    def heads(W, b):  # (T, C) -> (H, T, hd)
        return transpose(reshape(dense(x, W, b), (T, n_heads, hd)), (1, 0, 2))

    q, k, v = heads(Wq, bq), heads(Wk, bk), heads(Wv, bv)
    scores = map_(X[0] / sp.sqrt(hd), einsum("htd,hsd->hts", q, k))
    w = softmax(scores, -1, mask=reshape(causal_mask(T), (1, T, T)))
    if attn_keep is not None:
        w = dropout(w, attn_keep, p)
    ctx = einsum("hts,hsd->thd", w, v)
    return dense(reshape(ctx, (T, C)), Wo, bo)


def cross_entropy(logits: Node, targets: Node) -> Node:
    """Mean over rows of logsumexp(row) - row[target] with integer targets (T,)."""
    T, V = logits.shape
    if targets.shape != (T,):
        raise SymgradError(f"cross_entropy: targets {targets.name!r} have shape {targets.shape}, "
                           f"need ({T},) for logits {logits.shape}")
    lse = reshape(logsumexp(logits, -1), (T,))
    picked = sum_(logits * onehot(targets, V), -1)
    return mean(lse - picked)
