"""The building blocks of the catalogue's rows: ``Arg``, ``Op``, the exact forms the rows share
(softplus and sigmoid from the op table, logsumexp, norms, ...) and the row constructors.

>>> from symgrad.opcatalog.rows import Arg
>>> Arg("x").domain
'real'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from ..optable import OPS

R = sp.Rational
LN2 = sp.log(2)
EPS6 = sp.Rational(1e-6)  # eps=1e-6 as torch receives it: the double nearest 1e-6, exactly


@dataclass(frozen=True)
class Arg:
    """One argument of the torch call: a block of the model."""

    name: str  # the torch call's variable name and the model's block name
    shape: tuple[int, ...] = ()  # () scalar, (n,) vector, (r, c) matrix
    domain: str = "real"  # key of symgrad.opcatalog.inputs.DOMAINS
    param: bool = True  # differentiated (a parameter) or held fixed (a target, a label)


@dataclass(frozen=True)
class Op:
    """A torch operator: its call, its exact definition, its arguments."""

    name: str  # unique row name (snake_case)
    group: str  # activation / elementwise / reduction / loss
    call: str  # the torch expression over the argument names (torch, F in scope)
    define: Callable | None  # (**blocks) -> sympy expr, or list of them (one per output entry)
    args: tuple[Arg, ...] = (Arg("x"),)
    kinks: tuple[float, ...] = ()  # where the op has a kink/threshold: inputs placed beside them
    notes: str = ""
    unsupported: str = ""  # why symgrad cannot express the derivative ("" = supported)

    @property
    def params(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.param)


# ------------------------------------------------------------------ exact building blocks
softplus = OPS["softplus"]  # two analytic branches: the op table's stable form
sigmoid = OPS["sigmoid"]  # two branches on e^-|z|: neither overflows


def logsumexp(xs):
    m = sp.Max(*xs)
    return m + sp.log(sp.Add(*[sp.exp(x - m) for x in xs]))


def mean(xs):
    return sp.Add(*xs) / len(xs)


def norm2(xs):
    return sp.sqrt(sp.Add(*[x**2 for x in xs]))


def dot(a, b):
    return sp.Add(*[p * q for p, q in zip(a, b)])


def pick(xs, t):
    """xs[t] for an integer-valued symbol t (one Eq branch per entry)."""
    return sp.Add(*[sp.Piecewise((x, sp.Eq(t, i)), (0, True)) for i, x in enumerate(xs)])


def elu(x, alpha):
    # max/min so the kink at 0 is seen (any subgradient accepted there)
    return sp.Max(x, 0) + alpha * (sp.exp(sp.Min(x, 0)) - 1)


def leaky(x, slope):
    return sp.Max(x, 0) + slope * sp.Min(x, 0)


def var(xs, correction):
    m = mean(xs)
    return sp.Add(*[(x - m) ** 2 for x in xs]) / (len(xs) - correction)


def unary(name, call, f, *, domain="real", group="elementwise", kinks=(), notes=""):
    if name in OPS:  # an op-table entry took this op over: its row, in this row's place
        return entry(name)  # (adding an op stays its entry plus a test line)
    return Op(name, group, call, lambda x: f(x), (Arg("x", (), domain),), kinks, notes)


def act(name, call, f, **kw):
    return unary(name, call, f, group="activation", **kw)


def binary(name, call, f, dx="real", dy="real", *, kinks=(), notes="", group="elementwise"):
    return Op(name, group, call, lambda x, y: f(x, y), (Arg("x", (), dx), Arg("y", (), dy)),
              kinks, notes)


def entry(name: str) -> Op:
    """The catalogue row of an op-table entry: its torch call, its stable formula."""
    e = OPS[name]
    PLACED.add(name)
    return Op(e.name, e.group, e.torch, lambda x: e(x), (Arg("x", (), e.domain),),
              e.kinks + e.probes, e.notes)


PLACED: set[str] = set()


def unsupported(name, group, call, why):
    return Op(name, group, call, None, (Arg("x"),), (), "", why)


V = (3,)  # the vector length of reductions and losses
C = (3,)  # the number of classes of classification losses
