"""Building blocks as sympy, each result a named intermediate of the model's program.

Ops accept scalars (sympy expressions) or ``sg.matrix``-style matrices (applied elementwise
where that is what the op means). Numerically delicate ops are written in exact *stable* forms
(BCE of a sigmoid through softplus of the logit), which are the same functions mathematically.

>>> import sympy as sp
>>> from symgrad import ops
>>> z = sp.Symbol("z")
>>> a = ops.sigmoid(z, label="a")
>>> a.definition
1/(1 + exp(-z))
"""

from __future__ import annotations

from typing import Callable

import sympy as sp

from ..errors import SymgradError
from ..graph import Intermediate, define
from ..optable import OPS, X0


class Group:
    """The op call that made a matrix of intermediates: for layer-level explanations."""

    def __init__(self, op: str, label: str, operands: tuple, shape: tuple[int, int]):
        self.op, self.label, self.operands, self.shape = op, label, operands, shape


def element_label(label: str | None, shape: tuple[int, int], i: int, j: int) -> str | None:
    """``h_{i}`` for a column vector, ``P_{i,j}`` for a matrix, ``label`` for a scalar."""
    if label is None or shape == (1, 1):
        return label
    return f"{label}_{{{i}}}" if shape[1] == 1 else f"{label}_{{{i},{j}}}"


def matrix_name(m) -> str:
    """The block or group name of a matrix argument (for explanations)."""
    first = m[0, 0] if isinstance(m, sp.MatrixBase) else m
    group = getattr(first, "group", None)
    if group is not None:
        return group.label
    name = getattr(first, "label", None) or getattr(first, "name", str(first))
    return name.split("_{")[0]


def _tag(out: sp.ImmutableMatrix, op: str, label: str | None, operands) -> sp.ImmutableMatrix:
    if label is not None:
        group = Group(op, label, tuple(matrix_name(o) for o in operands), out.shape)
        for e in out:
            if isinstance(e, Intermediate):
                e.group = group
    return out


def _elementwise(f: Callable, x, label=None, op: str = ""):
    if isinstance(x, sp.MatrixBase):
        rows, cols = x.shape
        if label is None and op:  # named after its operand (tanh_W1_out), as dense after W
            label = f"{op}_{matrix_name(x)}"
        out = sp.ImmutableMatrix(rows, cols, [
            f(x[i, j], label=element_label(label, x.shape, i, j))
            for i in range(rows) for j in range(cols)])
        return _tag(out, op, label, (x,))
    return f(sp.sympify(x), label=label)


def _operand(x, kind: str):
    """Make ``x`` a single symbol (a leaf or an intermediate) so local derivatives are small."""
    x = sp.sympify(x)
    return x if x.is_Atom else define(x, kind=kind)


def step(expr, *, label: str, kind: str | None = None):
    """Name an expression as a step of the model (``z = x w + b``), for explanations."""
    return _elementwise(lambda e, label=None: define(e, kind=kind or label, label=label), expr,
                        label=label, op="step")


# ---------------------------------------------------------------- activations
# sigmoid, tanh, exp, relu, softplus, ... are built from the op table: symgrad.ops.elementwise


def _softplus_expr(z):
    """softplus(z) in the form the op table has symgrad's programs compute (BCE from a logit)."""
    return OPS["softplus"].computed.xreplace({X0: z})


def logsumexp(values, *, label: str | None = None):
    """log(sum(exp(x))) in the stable exact form max(x) + log(sum(exp(x - max(x)))).

    No exp overflows for any finite x (log-sum-exp at logits [0, 1000] is 1000, not inf); its
    derivative is given as the softmax exp(x_i - lse), so the max adds no kink.
    """
    xs = [sp.sympify(v) for v in values]
    if len(xs) == 1:
        return xs[0]
    m = sp.Max(*xs, evaluate=False)  # sympy's simplification of a Max is slow (pairwise)

    def partials(out):
        found: dict = {}
        for x in xs:
            if not x.is_number:
                found[x] = found.get(x, 0) + sp.exp(x - out)
        return found
    out = define(m + sp.log(sp.Add(*[sp.exp(x - m) for x in xs])), kind="logsumexp",
                 label=label, partials=partials)
    out.shown = sp.log(sp.Add(*[sp.exp(x) for x in xs]))  # the textbook form, for readers
    return out


def softmax_entries(values, *, kind: str = "softmax", labels: list | None = None,
                    lse_label: str | None = None) -> list:
    """Softmax of a list as exp(x_i - logsumexp(x)): every exp <= 1, no (sum exp)^2 anywhere in
    the derivative (float32 attention overflowed there). ``labels`` name the entries,
    ``lse_label`` the shift."""
    xs = [sp.sympify(v) for v in values]
    if len(xs) == 1:
        return [sp.Integer(1)]
    lse = logsumexp(xs, label=lse_label)
    labels = labels or [None] * len(xs)
    return [define(sp.exp(x - lse), kind=kind, label=name,
                   partials=lambda p, x=x: ({x: p} if not x.is_number else {}) | {lse: -p})
            for x, name in zip(xs, labels)]


# ---------------------------------------------------------------- losses
def _bce(p, y, label):
    if isinstance(p, Intermediate) and p.op == "sigmoid" and hasattr(p, "logit"):
        # BCE(sigmoid(z), y) = (1 - y) softplus(z) + y softplus(-z): the same function, with
        # neither the value nor its derivative cancelling for labels y in {0, 1}.
        z = p.logit
        out = define((1 - y) * _softplus_expr(z) + y * _softplus_expr(-z), kind="bce",
                     label=label)
    else:
        p = _operand(p, "p")
        out = define(-(y * sp.log(p) + (1 - y) * sp.log(1 - p)), kind="bce", label=label)
    out.display = -(y * sp.log(p) + (1 - y) * sp.log(1 - p))
    return out


def bce(p, y, *, label: str | None = None):
    """Binary cross-entropy -(y log p + (1 - y) log(1 - p)), averaged over entries of matrices.

    When ``p`` is ``sigmoid(z)`` it is computed from the logit as softplus(z) - y z, the same
    function in a form without catastrophic cancellation.
    """
    if isinstance(p, sp.MatrixBase) or isinstance(y, sp.MatrixBase):
        p, y = sp.ImmutableMatrix(p), sp.ImmutableMatrix(y)
        if p.shape != y.shape:
            raise SymgradError(f"bce: p has shape {p.shape} but y has shape {y.shape}")
        terms = [_bce(a, b, None) for a, b in zip(p, y)]
        return define(sp.Add(*terms) / len(terms), kind="mean", label=label)
    return _bce(sp.sympify(p), sp.sympify(y), label)


def mse(pred, target, *, label: str | None = None):
    """Mean squared error over all entries."""
    pred = pred if isinstance(pred, sp.MatrixBase) else sp.ImmutableMatrix([pred])
    target = target if isinstance(target, sp.MatrixBase) else sp.ImmutableMatrix([target])
    if pred.shape != target.shape:
        raise SymgradError(f"mse: pred has shape {pred.shape} but target has {target.shape}")
    return define(sp.Add(*[(a - b) ** 2 for a, b in zip(pred, target)]) / len(pred),
                  kind="mse", label=label)


# ---------------------------------------------------------------- tensor ops
def _as_matrix(x, what: str) -> sp.ImmutableMatrix:
    if not isinstance(x, sp.MatrixBase):
        raise SymgradError(f"{what}: expected a matrix (e.g. sg.matrix('W', 5, 10)), got "
                           f"{type(x).__name__}")
    return sp.ImmutableMatrix(x)


def matmul(a, b, *, label: str | None = None) -> sp.ImmutableMatrix:
    """Matrix product; one intermediate per output entry (a dot product)."""
    a, b = _as_matrix(a, "matmul"), _as_matrix(b, "matmul")
    if a.shape[1] != b.shape[0]:
        raise SymgradError(f"matmul: shapes {a.shape} and {b.shape} do not align "
                           f"({a.shape[1]} != {b.shape[0]})")
    rows, inner, cols = a.shape[0], a.shape[1], b.shape[1]
    out = sp.ImmutableMatrix(rows, cols, [
        define(sp.Add(*[a[i, k] * b[k, j] for k in range(inner)]), kind="matmul",
               label=element_label(label, (rows, cols), i, j))
        for i in range(rows) for j in range(cols)])
    return _tag(out, "matmul", label, (a, b))


def linear(x, weight, bias=None, *, label: str | None = None) -> sp.ImmutableMatrix:
    """``weight @ x + bias`` as torch.nn.Linear computes it (weight: (out, in), x: (in, 1)).

    Arguments:
        x: the input, (in, 1) (or (in, k): k columns, each its own input), first, as in
            ``F.linear(x, weight, bias)``.
        weight: (out, in), as ``nn.Linear.weight``.
        bias: (out,), or None.
        label: the output's name in explanations (default: each entry its own step).
    Returns:
        The (out, k) matrix of outputs, one intermediate per entry.

    >>> import symgrad as sg
    >>> linear(sg.matrix("x", 4), sg.matrix("W", 3, 4), sg.matrix("c", 3), label="z").shape
    (3, 1)
    """
    w, x = _as_matrix(weight, "linear weight"), _as_matrix(x, "linear input")
    if w.shape[1] != x.shape[0]:  # linear(W, x) for linear(x, W) read "weight has shape (4, 1)"
        swapped = ("; the input comes first, linear(x, weight, bias): swap them"
                   if x.shape[1] == w.shape[0] else "")  # (newuser8)
        raise SymgradError(f"linear: weight has shape {w.shape} but the input has "
                           f"{x.shape[0]} rows; need weight (out, in) and input (in, 1)"
                           + swapped)
    if bias is not None:
        bias = _as_matrix(bias, "linear bias")
        if bias.shape[0] != w.shape[0]:
            raise SymgradError(f"linear: bias has {bias.shape[0]} entries, weight has "
                               f"{w.shape[0]} rows")
    out = []
    for i in range(w.shape[0]):
        for j in range(x.shape[1]):
            acc = sp.Add(*[w[i, k] * x[k, j] for k in range(w.shape[1])])
            if bias is not None:
                acc = acc + bias[i]
            out.append(define(acc, kind="linear",
                              label=element_label(label, (w.shape[0], x.shape[1]), i, j)))
    result = sp.ImmutableMatrix(w.shape[0], x.shape[1], out)
    return _tag(result, "linear", label, (x, w) + ((bias,) if bias is not None else ()))


def transpose(a) -> sp.ImmutableMatrix:
    """Transpose (no new intermediates)."""
    return _as_matrix(a, "transpose").T


def reshape(a, rows: int, cols: int) -> sp.ImmutableMatrix:
    """Row-major reshape, as torch.reshape on a contiguous tensor."""
    a = _as_matrix(a, "reshape")
    if rows * cols != len(a):
        raise SymgradError(f"reshape: cannot reshape {a.shape} ({len(a)} entries) to "
                           f"({rows}, {cols})")
    return a.reshape(rows, cols)


def total(a, *, label: str | None = None):
    """Sum of all entries, as one intermediate."""
    a = _as_matrix(a, "total") if isinstance(a, sp.MatrixBase) else sp.ImmutableMatrix([a])
    return define(sp.Add(*list(a)), kind=label or "sum")
