"""GPT-2's building blocks as sympy programs on matrices of symbols.

Rows are positions, columns features (``# (T, C)``). Weights follow ``torch.nn.Linear``:
``W`` is (out, in) and ``dense(X, W, b) = X W^T + b``. Each block creates one intermediate per
output entry (and per reduction), so a whole small GPT stays a program of small steps.

>>> import symgrad as sg
>>> X, W = sg.matrix("X", 2, 3), sg.matrix("W", 4, 3)
>>> dense(X, W).shape
(2, 4)
"""

from __future__ import annotations

import sympy as sp

from ..errors import SymgradError
from ..graph import Intermediate, define
from .basic import (Group, _as_matrix, _tag, element_label, logsumexp, matrix_name,
                    softmax_entries)
from .elementwise import FUNCTIONS as ELEMENTWISE


def _matrix(rows: int, cols: int, entries) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix(rows, cols, list(entries))


def _vector(v, what: str) -> list:
    v = _as_matrix(v, what)
    if v.shape[1] != 1 and v.shape[0] != 1:
        raise SymgradError(f"{what}: expected a vector (sg.matrix(name, n)), got shape {v.shape}")
    return list(v)


def lookup(values: list, index) -> sp.Piecewise:
    """``values[index]`` for an integer input: one ``Eq(index, k)`` branch per entry, and NaN
    for an index outside 0..n-1 (undefined, reported as a domain failure)."""
    return sp.Piecewise(*[(v, sp.Eq(index, k)) for k, v in enumerate(values)], (sp.nan, True))


def dense(X, W, b=None, *, label: str | None = None) -> sp.ImmutableMatrix:
    """``X W^T + b`` as torch.nn.Linear applies it to each row.

    Arguments:
        X: the input, (T, in) (an ``sg.matrix`` or nested lists of sympy expressions).
        W: the weight, (out, in), as ``nn.Linear.weight``.
        b: the bias, (out,), or None.
        label: the output's name in explanations (default: the weight's name + "_out").
    Returns:
        The (T, out) matrix of outputs.

    >>> import symgrad as sg
    >>> dense(sg.matrix("X", 2, 3), sg.matrix("W", 4, 3), sg.matrix("b", 4)).shape
    (2, 4)
    """
    X, W = _as_matrix(X, "dense input"), _as_matrix(W, "dense weight")
    if X.shape[1] != W.shape[1]:
        raise SymgradError(f"dense: input has {X.shape[1]} features but the weight has shape "
                           f"{W.shape}; need weight (out, in={X.shape[1]})")
    bias = _vector(b, "dense bias") if b is not None else None
    if bias is not None and len(bias) != W.shape[0]:
        raise SymgradError(f"dense: bias has {len(bias)} entries, weight has {W.shape[0]} rows")
    T, n_in, n_out = X.shape[0], X.shape[1], W.shape[0]
    label = label or f"{matrix_name(W)}_out"  # named after its weight: out_head_out
    out = _matrix(T, n_out, (
        define(sp.Add(*[X[t, k] * W[o, k] for k in range(n_in)])
               + (bias[o] if bias is not None else 0), kind="dense",
               label=element_label(label, (T, n_out), t, o))
        for t in range(T) for o in range(n_out)))
    return _tag(out, "dense", label, (X, W) + ((b,) if b is not None else ()))


def embedding(ids, table, *, label: str | None = None) -> sp.ImmutableMatrix:
    """Rows of ``table`` (V, C) selected by integer inputs ``ids`` (a vector of T symbols)."""
    ids = _vector(ids, "embedding ids")
    E = _as_matrix(table, "embedding table")
    V, C = E.shape

    def pick(t: int, j: int):
        return define(lookup([E[v, j] for v in range(V)], ids[t]), kind="embedding",
                      label=element_label(label or "emb", (len(ids), C), t, j))
    return _matrix(len(ids), C, (pick(t, j) for t in range(len(ids)) for j in range(C)))


def layer_norm(X, gain, bias, *, eps=sp.Rational(1, 10**5), label: str | None = None):
    """LayerNorm over each row (biased variance, eps inside the square root), as nn.LayerNorm."""
    X = _as_matrix(X, "layer_norm input")
    g, b = _vector(gain, "layer_norm gain"), _vector(bias, "layer_norm bias")
    T, C = X.shape
    if len(g) != C or len(b) != C:
        raise SymgradError(f"layer_norm: gain/bias have {len(g)}/{len(b)} entries, need {C}")
    out = []
    for t in range(T):
        row = list(X.row(t))
        mean = define(sp.Add(*row) / C, kind="ln_mean", label=f"mu_{{{t}}}")
        centered = [define(x - mean, kind="ln_centered", label=f"xc_{{{t},{j}}}")
                    for j, x in enumerate(row)]
        var = define(sp.Add(*[c**2 for c in centered]) / C, kind="ln_var", label=f"var_{{{t}}}")
        rstd = define(1 / sp.sqrt(var + eps), kind="ln_rstd", label=f"rstd_{{{t}}}")
        out += [define(c * rstd * g[j] + b[j], kind="layer_norm",
                       label=element_label(label or "ln", (T, C), t, j))
                for j, c in enumerate(centered)]
    return _matrix(T, C, out)


def _softmax(values: list, kind: str = "softmax", *, name: str = "p", row: int = 0) -> list:
    """Softmax of one row, stable: exp(x - logsumexp(x)); entries named ``<name>_{t,s}``, the
    shift ``lse<head>_{t}``."""
    tag = name[len(name.rstrip("0123456789")):]  # a head number, as in attn0
    return softmax_entries(values, kind=kind,
                           labels=[f"{name}_{{{row},{s}}}" for s in range(len(values))],
                           lse_label=f"lse{tag}_{{{row}}}")


def softmax(X, *, label: str | None = None) -> sp.ImmutableMatrix:
    """Softmax over the last axis (each row), as exp(x - logsumexp(x)) (stable).

    Arguments:
        X: the scores, (T, V).
        label: the probabilities' name in explanations (default "p").
    Returns:
        The (T, V) matrix of probabilities; each row sums to 1.

    >>> import symgrad as sg
    >>> softmax(sg.matrix("Z", 2, 3)).shape
    (2, 3)
    """
    X = _as_matrix(X, "softmax input")
    return _matrix(*X.shape, (p for t in range(X.shape[0])
                              for p in _softmax(list(X.row(t)), name=label or "p", row=t)))


def _logsumexp(values: list, row: int = 0):
    return logsumexp(values, label=f"lse_{{{row}}}")  # stable: max(x) + log(sum(exp(x - max)))


def log_softmax(X, *, label: str | None = None) -> sp.ImmutableMatrix:
    """x - log(sum(exp(x))) over each row."""
    X = _as_matrix(X, "log_softmax input")
    out = []
    for t in range(X.shape[0]):
        lse = _logsumexp(list(X.row(t)), row=t)
        out += [define(x - lse, kind="log_softmax", label=f"{label or 'logp'}_{{{t},{j}}}")
                for j, x in enumerate(X.row(t))]
    return _matrix(*X.shape, out)


def dropout(X, keep, p, *, label: str | None = None) -> sp.ImmutableMatrix:
    """Dropout with an explicit keep-mask input (0/1 entries) and 1/(1-p) scaling."""
    X, keep = _as_matrix(X, "dropout input"), _as_matrix(keep, "dropout keep-mask")
    if X.shape != keep.shape:
        raise SymgradError(f"dropout: mask shape {keep.shape} != input shape {X.shape}")
    scale = 1 / (1 - sp.nsimplify(p))
    cols = X.shape[1]
    return _matrix(*X.shape, (define(x * m * scale, kind="dropout",
                                     label=f"{label or 'drop'}_{{{i // cols},{i % cols}}}")
                              for i, (x, m) in enumerate(zip(X, keep))))


def causal_self_attention(X, Wq, Wk, Wv, Wo, bo=None, *, n_heads: int, bq=None, bk=None,
                          bv=None, attn_keep=None, p: float = 0.0,
                          label: str | None = None) -> sp.ImmutableMatrix:
    """Multi-head causal self-attention as GPT-2 computes it.

    X (T, C); Wq, Wk, Wv, Wo (C, C) as nn.Linear weights; optional q/k/v biases (``qkv_bias``);
    output projection with bias ``bo``. Position t attends to positions s <= t (the causal mask:
    masked scores are left out of the softmax, which equals adding -inf). ``attn_keep`` is an
    optional list, one (T, T) keep-mask per head, for dropout on the attention weights.
    """
    X = _as_matrix(X, "attention input")
    T, C = X.shape
    if C % n_heads:
        raise SymgradError(f"attention: emb_dim {C} is not divisible by n_heads {n_heads}")
    hd = C // n_heads
    Q, K, V = (dense(X, Wq, bq, label="q"), dense(X, Wk, bk, label="k"),
               dense(X, Wv, bv, label="v"))  # (T, C) each
    scale = 1 / sp.sqrt(hd)
    ctx = [[None] * C for _ in range(T)]
    for h in range(n_heads):
        cols = range(h * hd, (h + 1) * hd)
        for t in range(T):
            scores = [define(sp.Add(*[Q[t, c] * K[s, c] for c in cols]) * scale, kind="score",
                             label=f"score{h}_{{{t},{s}}}")
                      for s in range(t + 1)]  # (t+1,) causal
            weights = _softmax(scores, kind="attention", name=f"attn{h}", row=t)
            if attn_keep is not None:
                keep = attn_keep[h]
                weights = [define(w * keep[t, s] / (1 - sp.nsimplify(p)), kind="dropout",
                                  label=f"attnd{h}_{{{t},{s}}}")
                           for s, w in enumerate(weights)]
            for c in cols:
                ctx[t][c] = define(sp.Add(*[weights[s] * V[s, c] for s in range(t + 1)]),
                                   kind="context", label=f"ctx_{{{t},{c}}}")
    context = _matrix(T, C, (ctx[t][c] for t in range(T) for c in range(C)))  # (T, C)
    return dense(context, Wo, bo, label=label or "out")


def feed_forward(X, W1, b1, W2, b2, *, label: str | None = None) -> sp.ImmutableMatrix:
    """Linear(C, 4C) -> GELU(tanh) -> Linear(4C, C)."""
    gelu = ELEMENTWISE["gelu"]
    return dense(gelu(dense(X, W1, b1, label="hid"), label="act"), W2, b2, label=label or "ffn")


def add(A, B) -> sp.ImmutableMatrix:
    """Residual connection: entrywise sum (one intermediate per entry)."""
    A, B = _as_matrix(A, "add"), _as_matrix(B, "add")
    if A.shape != B.shape:
        raise SymgradError(f"add: shapes {A.shape} and {B.shape} differ")
    cols = A.shape[1]
    return _matrix(*A.shape, (define(a + b, kind="residual", label=f"res_{{{i // cols},{i % cols}}}")
                              for i, (a, b) in enumerate(zip(A, B))))


def cross_entropy(logits, targets, *, label: str | None = None):
    """Mean cross-entropy of each row's logits against integer targets, as
    ``F.cross_entropy(logits, targets)`` computes it (log-sum-exp minus the target's logit).

    Arguments:
        logits: the scores, (T, V).
        targets: T integer class ids (symbols of an input with ``sg.Integers(0, V - 1)``).
        label: the loss's name in explanations.
    Returns:
        The scalar loss: a named intermediate (a sympy symbol the program defines).

    >>> import symgrad as sg
    >>> Z, t = sg.matrix("Z", 2, 3), sg.matrix("t", 2)
    >>> m = sg.Model("ce", cross_entropy(Z, t), params=[Z], inputs={t: sg.Integers(0, 2)})
    >>> m.name
    'ce'
    """
    logits = _as_matrix(logits, "cross_entropy logits")
    names = (matrix_name(logits), matrix_name(_as_matrix(targets, "cross_entropy targets")))
    targets = _vector(targets, "cross_entropy targets")
    T, V = logits.shape
    if len(targets) != T:
        raise SymgradError(f"cross_entropy: {len(targets)} targets for {T} rows of logits")
    losses, steps = [], []
    for t in range(T):
        row = list(logits.row(t))
        lse = _logsumexp(row, row=t)
        losses.append(define(lse - lookup(row, targets[t]), kind="nll", label=f"nll_{{{t}}}"))
        steps += [lse, losses[-1]]
    if _one_array(logits):  # the per-row steps (lse_t, nll_t) are one op on the logits, as
        # dense's entries are: explain and the report read them as one layer,
        # nll = lse(Z) - pick(Z, y), in matrix notation
        group = Group("cross_entropy", "nll", names, (T, 1))
        for s in steps:
            if isinstance(s, Intermediate):
                s.group = group
    return define(sp.Add(*losses) / T, kind="cross_entropy", label=label)


def _one_array(m: sp.MatrixBase) -> bool:
    """Whether ``m``'s entries are one named array: one ``ops`` call's output (one Group of
    m's shape) or one block's entries (``Z_{i,j}``); not separate steps gathered in a matrix
    (``linear(x, W).T``: linear, linear#2, ...), which no matrix name stands for."""
    groups = {id(getattr(e, "group", None)) for e in m}
    first = getattr(m[0, 0], "group", None)
    if first is not None:  # in its own order (a transpose of a square one is not)
        return (len(groups) == 1 and first.shape == m.shape and all(
            getattr(m[i, j], "label", None) == element_label(first.label, m.shape, i, j)
            for i in range(m.shape[0]) for j in range(m.shape[1])))
    if any(isinstance(e, Intermediate) or not isinstance(e, sp.Symbol) for e in m):
        return False
    return len({e.name.split("_{")[0] for e in m}) == 1 and all("_{" in e.name for e in m)
