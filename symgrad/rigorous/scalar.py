"""The rigorous enclosure of a scalar program (``symgrad.rigorous.balls`` has the theorem): the
program compiled to rounded ball arithmetic (``compile_enclosure``), its output balls per sample
(``enclose``), and the lazy per-entry radii the comparer asks for (``scalar_enclosure``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import sympy as sp
from flint import arb, ctx

from ..backends import arb as arb_backend
from ..codegen import Printer, Target, build, program_lines
from ..errors import SymgradError
from .balls import EXACT_FUNCTIONS, PREC, Enclosure, Rounding, Unbounded, spread, union


class _Printer(Printer):
    """Sums and products as calls of the rounding model (order-free sums)."""

    def const(self, e: sp.Expr) -> str:
        return self._named_const(e)

    def __call__(self, e) -> str:
        if getattr(e, "is_Add", False) and not e.is_number:
            return "R.rsum(" + ", ".join(self(a) for a in e.args) + ")"
        if getattr(e, "is_Mul", False) and not e.is_number:
            rounded = sum(1 for a in e.args if not _power_of_two(a)) - 1
            return f"R.rprod({max(rounded, 0)}, " + ", ".join(self(a) for a in e.args) + ")"
        return super().__call__(e)


def _power_of_two(c) -> bool:
    if not getattr(c, "is_Rational", False) or c == 0:
        return False
    p, q = abs(int(c.p)), int(c.q)
    return p & (p - 1) == 0 and q & (q - 1) == 0


class RoundedKinks(arb_backend.Kinks):
    """Kink sites over rounded balls: a Heaviside (or which argument wins a Max/Min) whose
    argument's ball holds 0 may be computed as any of 0, H(0), 1: the ball [0, 1]; a sign:
    [-1, 1]. A Piecewise condition still needs a certain side (else: unbounded)."""

    def heaviside(self, i, x, h0):
        x = arb_backend._a(x)
        if x.is_nan():
            return arb_backend.NAN
        if x > 0:
            return arb(1)
        if x < 0:
            return arb(0)
        return arb_backend._a(h0) if x.is_zero() else arb(0).union(arb(1))

    def sign(self, i, x):
        x = arb_backend._a(x)
        if x.is_nan():
            return arb_backend.NAN
        if x > 0 or x < 0 or x.is_zero():
            return arb(int(x > 0) - int(x < 0))
        return arb(-1).union(arb(1))

    def select(self, i, x, members, h0):
        return self.heaviside(i, x, h0)

    def rel(self, i, lhs, rhs):
        return self.sites[i].op(arb_backend._need(arb_backend._sign(arb_backend._a(lhs)
                                                                     - arb_backend._a(rhs))), 0)


def _target(rounding_name: str = "R") -> Target:
    """The arb target with every rounded operation routed through the rounding model ``R``."""
    base = arb_backend.target()
    base.namespace["kinks"] = RoundedKinks(sites=base.namespace["kinks"].sites)
    functions = {}
    for key, template in arb_backend.FUNCTIONS.items():
        name = getattr(key, "__name__", key)
        if callable(template) or name in EXACT_FUNCTIONS:
            functions[key] = template
        elif key == "sqrt":
            functions[key] = "R.rsqrt({0})"
        elif key == "ipow":
            functions[key] = "R.ripow({0}, {1})"
        else:
            functions[key] = "R.rfun(" + template + ")"
    return Target("arb-rounded", functions, dict(base.namespace), constant=lambda e: e,
                  piecewise=base.piecewise, logic_and="and", logic_or="or", node=base.node)


def compile_enclosure(assignments: Sequence[tuple[sp.Symbol, sp.Expr]],
                      leaves: Sequence[sp.Symbol], outputs: Sequence[sp.Expr]) -> Callable:
    """The program in rounded ball arithmetic: ``fn(balls, R) -> [ball per output]``.

    Arguments:
        assignments, leaves, outputs: a straight-line program (``symgrad.derive.Program``).
    Returns:
        The compiled function; its constants are kept as sympy numbers and rounded per dtype.
    """
    t = _target()
    pr = _Printer(t, {})
    lines = program_lines("def enclosure(X, R):", assignments, leaves, outputs, pr)
    lines.insert(1, "    " + "; ".join(f"{name} = R.constant(C_{name})"
                                      for name in pr.constants.values()) or "    pass")
    for expr, name in pr.constants.items():
        pr.values[f"C_{name}"] = expr
    for name in pr.constants.values():
        pr.values.pop(name, None)
    fn = build(lines, t, pr, "enclosure")
    fn.kinks = t.namespace["kinks"]
    return fn


def compile_program_enclosure(program) -> Callable:
    """``compile_enclosure`` of a derived ``Program``: [value, *gradient]."""
    return compile_enclosure(program.assignments, program.leaves,
                             (program.value, *program.gradient))


def enclose(fn: Callable, X: np.ndarray, dtype: str, *, function_ulps: float,
            exact: bool = False) -> list:
    """Output balls per sample: a list (one per column of X) of lists of ``arb`` (None where
    the sample's enclosure is unbounded).

    Arguments:
        fn: from ``compile_enclosure``.
        X: (n_leaves, N) the samples, numbers of ``dtype`` (exact inputs).
        dtype: the backend's dtype; function_ulps: the elementary functions' table (k ulps).
        exact: no widening: balls of the program's exact value (the enclosure's centre).
    """
    R = Rounding(dtype, function_ulps, exact=exact)
    loose = Rounding(dtype, function_ulps, exact=exact, strict=False)
    out = []
    with ctx.workprec(PREC):
        fn.kinks.allow, fn.kinks.dirs, fn.kinks.reached = None, {}, {}
        for j in range(X.shape[1]):
            args = [arb(float(v)) for v in X[:, j]]
            row = None
            # strict first; where one intermediate is unbounded (log 0 in d/dy of x**y at x = 0)
            # again with it a NaN ball, so only the entries that depend on it are unbounded
            for rounding in (R, loose):
                try:
                    row = [arb_backend._a(o) for o in fn(args, rounding)]
                    break
                except (Unbounded, arb_backend.Imprecise, ValueError, ZeroDivisionError,
                        OverflowError, TypeError):
                    pass
                finally:
                    fn.kinks.dirs, fn.kinks.reached = {}, {}
            out.append(row)
    return out


def scalar_enclosure(fns: Callable[[], Sequence[Callable]], X: np.ndarray, hi: np.ndarray,
                     lo: np.ndarray, dtype: str, function_ulps: float) -> Enclosure:
    """The lazy ``Enclosure`` of a scalar model: for each row, the union over ``fns()`` (the
    derived program, and the textbook one for a user's torch_fn; compiled on first use) of
    the rounded ball evaluation at X[:, row], as radii about hi + lo."""
    def radii_of(rows: np.ndarray) -> np.ndarray:
        parts = [spread(enclose(fn, X[:, rows], dtype, function_ulps=function_ulps),
                        enclose(fn, X[:, rows], dtype, function_ulps=function_ulps, exact=True),
                        (len(rows), hi.shape[1])) for fn in fns()]
        return union(*parts)
    if dtype not in ("float64", "float32", "float16", "bfloat16"):
        raise SymgradError(f"rigorous enclosure: unknown dtype {dtype!r}")
    return Enclosure(radii_of)
