"""How a model is written: symgrad's stable ops among its steps, a softplus or sigmoid written
by hand, a guard constant the dtype cannot hold; and the precision-loss cause those decide.

>>> import sympy as sp
>>> t = sp.Symbol("t")
>>> softplus_arguments(sp.log(1 + sp.exp(2 * t)))
[2*t]
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from ..compare import dtype_info
from .kinds import OWN, Cause


# symgrad's own ops whose programs run a stable form (step kind -> the op as the user wrote
# it); bce only where it runs from the logit (ops.bce of ops.sigmoid: no log of a probability)
STABLE_OPS = {"bce": "ops.bce", "softplus": "ops.softplus",
              "logsumexp": "the log-sum-exp of ops.softmax / ops.cross_entropy",
              "cross_entropy": "ops.cross_entropy", "nll": "ops.cross_entropy",
              "log_softmax": "ops.log_softmax", "softmax": "ops.softmax",
              "sigmoid": "ops.sigmoid"}


def stable_ops(steps) -> list[str]:
    """symgrad's stable ops among a model's steps, as the user wrote them.

    Arguments:
        steps: (kind, expression as the program computes it) per step.
    Returns:
        The ops (``STABLE_OPS``), each once, in the steps' order.

    >>> z, p = sp.symbols("z p")
    >>> stable_ops([("sigmoid", 1 / (1 + sp.exp(-z))), ("bce", log1p(sp.exp(z)) - z)])
    ['ops.sigmoid', 'ops.bce']
    >>> stable_ops([("bce", -sp.log(p))])  # bce of a probability: the form as written
    []
    """
    found = [STABLE_OPS[k] for k, e in steps
             if k in STABLE_OPS and not (k == "bce" and e.has(sp.log))]
    return list(dict.fromkeys(found))


def precision_loss(backend: str, stable: list[str], own_loses: bool | None = None) -> Cause:
    """The cause of a precision-loss warning (an entry within its bound but beyond
    ``precision_loss_ulps``), from which ops the model was written with: "use a stable form"
    only where the model has none of symgrad's; where it has, the digits are lost elsewhere or
    inherently, and where ``own_loses`` is known (do symgrad's own programs lose digits at the
    same entry?) it says which for the user's code.

    Arguments:
        backend: the backend that lost the digits.
        stable: ``stable_ops`` of the model.
        own_loses: symgrad's own programs' status at the same sample and entry, for a
            ``torch_fn`` finding (None: unknown or not asked).
    Returns:
        The ``Cause``.

    >>> precision_loss("torch_fn", ["ops.bce"], own_loses=False).name
    'cancellation in the code verified'
    """
    if not stable:
        return Cause("precision loss", "cancellation", "the model as written cancels here; "
                     "the error is within its rounding bound; a stable form (log1p, "
                     "log-sum-exp, log-sigmoid, softplus) would avoid it")
    ops = ", ".join(stable)
    if backend not in OWN and own_loses is False:
        return Cause("precision loss", "cancellation in the code verified",
                     f"symgrad's own program (stable: {ops}) keeps these digits at this entry; "
                     "the code verified computes another form, which cancels here (within its "
                     "rounding bound)")
    return Cause("precision loss", "inherent cancellation",
                 f"the model already uses symgrad's stable forms ({ops}), which do not cancel; "
                 + ("symgrad's own program loses these digits too: " if own_loses else "")
                 + "the digits are lost in the gradient itself here (the chain rule sums terms "
                 "of opposite sign) or in a step written in plain sympy, not in those ops "
                 "(within the rounding bound)")


def softplus_arguments(expr: sp.Expr) -> list[sp.Expr]:
    """Arguments t of every softplus written by hand: log(1 + exp(t)), log1p(exp(t))."""
    found = []
    for f in expr.atoms(sp.log, log1p):
        arg = f.args[0]
        inner = arg - 1 if isinstance(f, sp.log) else arg
        if isinstance(inner, sp.exp):
            found.append(inner.args[0])
    return found


def sigmoid_arguments(expr: sp.Expr) -> list[sp.Expr]:
    """Logits t of every sigmoid written by hand: 1/(1 + exp(-t)) (a Pow(1 + exp(-t), -1))."""
    found = []
    for f in expr.atoms(sp.Pow):
        base, power = f.args
        if power == -1 and isinstance(base - 1, sp.exp):
            found.append(-(base - 1).args[0])
    return found


def guard_in(exprs, dtype: str) -> str | None:
    """A non-zero constant of the expressions ``exprs`` (any program's steps) that rounds to 0
    in ``dtype`` (as text), if any."""
    smallest = dtype_info(dtype).tiny * dtype_info(dtype).eps  # smallest subnormal
    for expr in exprs:
        for c in expr.atoms(sp.Number):
            if c != 0 and abs(float(c)) < smallest / 2:
                return str(c)
    return None
