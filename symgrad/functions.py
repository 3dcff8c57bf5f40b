"""One row per sympy function symgrad can run: every target's spelling and its bound class.

The printers (``symgrad.backends``: numpy, torch, mpmath), the high-precision walk
(``symgrad.precise``: double-double and ARB balls), the code generator's vocabulary and the
rounding-error rules (``symgrad.rounding``) read these rows; none keeps its own table. A target a
function lacks is ``None`` in its row, and the error names it ("pow has no numpy spelling")
instead of a KeyError; a function without a row is "outside symgrad's function vocabulary".

Spellings: a printer spelling is a format template over the printed arguments (``"numpy.exp({0})"``)
or a callable taking the list of printed arguments (n-ary Max/Min); ``walk`` names the
implementation in the high-precision walk's namespaces (``symgrad.precise.ddops``,
``symgrad.precise.arb``), which share the names. Two printer keys are not sympy functions:
``"sqrt"`` (x**(1/2)) and ``"pow"`` (a non-integer power; ``None``: Python's ``**``).

Bound classes (what ``rounding.error_source`` does with f(a_1, ..., a_n)):

    rounded   sum |df/da_i| E_i + |f|   (the function's own rounding)
    exact     sum |df/da_i| E_i         (Abs, Max, Min: no rounding of their own)
    step      0                         (Heaviside, sign, DiracDelta: piecewise constant)

>>> import sympy as sp
>>> row(sp.erfc).torch
'torch.erfc({0})'
>>> row(sp.sin).walk
'sin'
>>> row(sp.asin).walk, row(sp.sign).bound
('asin', 'step')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import SymgradError

Spelling = str | Callable[[list[str]], str] | None


class nearest(sp.Function):  # noqa: N801 - a sympy function, named as sympy's are
    """floor(x + 1/2), the integer nearest x (a tie: the upper one); derivative 0 (piecewise
    constant: a jump at each half-integer). ``symgrad.capture.steps`` writes torch's floor,
    ceil, round and trunc with it so that their jumps are Piecewise kinks (its own jumps fall
    where those are continuous)."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.floor(x + sp.Rational(1, 2))
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero

# what the error messages call each target (printer names, and the walk kernels' names)
TARGETS = {"numpy": "numpy", "torch": "torch", "mpmath": "mpmath",
           "walk": "double-double / ARB-ball", "DD": "double-double", "ARB": "ARB-ball"}


def _fold(fn: str) -> Callable[[list[str]], str]:
    """An n-ary call from a binary one: fn(fn(a, b), c)."""
    return lambda args: functools.reduce(lambda out, a: f"{fn}({out}, {a})", args)


def _nary(fn: str) -> Callable[[list[str]], str]:
    """fn(a, b, c, ...) with every argument."""
    return lambda args: f"{fn}(" + ", ".join(args) + ")"


@dataclass(frozen=True)
class Function:
    """One sympy function (or printer key) and how each target spells it."""

    key: type | str  # the sympy class (sp.exp, log1p, ...) or a printer key ("sqrt", "pow")
    numpy: Spelling
    torch: Spelling
    mpmath: Spelling
    walk: str | None  # implementation name in the DD / ARB-ball walk namespaces
    bound: str = "rounded"  # rounded / exact / step (module docstring)
    torch_backward: Callable | None = None  # x -> f'(x) as torch's backward computes it where
    # its rounding differs from f''s own derivative (expm1: y + 1 from the rounded output y;
    # ``symgrad.tensor.mapbound.torch_form``); None: nothing to add

    @property
    def name(self) -> str:
        return getattr(self.key, "__name__", str(self.key))


F = Function
ROWS: tuple[Function, ...] = (
    F(sp.exp, "numpy.exp({0})", "torch.exp({0})", "mp.exp({0})", "exp"),
    F(expm1, "numpy.expm1({0})", "torch.expm1({0})", "mp.expm1({0})", "expm1",
      torch_backward=lambda x: expm1(x) + 1),
    F(sp.log, "numpy.log({0})", "torch.log({0})", "rlog({0})", "log"),
    F(log1p, "numpy.log1p({0})", "torch.log1p({0})", "rlog1p({0})", "log1p"),
    F(sp.sin, "numpy.sin({0})", "torch.sin({0})", "mp.sin({0})", "sin"),
    F(sp.cos, "numpy.cos({0})", "torch.cos({0})", "mp.cos({0})", "cos"),
    F(sp.tan, "numpy.tan({0})", "torch.tan({0})", "mp.tan({0})", "tan"),
    F(sp.asin, "numpy.arcsin({0})", "torch.asin({0})", "rasin({0})", "asin"),
    F(sp.acos, "numpy.arccos({0})", "torch.acos({0})", "racos({0})", "acos"),
    F(sp.atan, "numpy.arctan({0})", "torch.atan({0})", "mp.atan({0})", "atan"),
    F(sp.sinh, "numpy.sinh({0})", "torch.sinh({0})", "mp.sinh({0})", "sinh"),
    F(sp.cosh, "numpy.cosh({0})", "torch.cosh({0})", "mp.cosh({0})", "cosh"),
    F(sp.asinh, "numpy.arcsinh({0})", "torch.asinh({0})", "mp.asinh({0})", "asinh"),
    F(sp.tanh, "numpy.tanh({0})", "torch.tanh({0})", "mp.tanh({0})", "tanh"),
    F(sp.erf, "erf({0})", "torch.erf({0})", "mp.erf({0})", "erf"),
    F(sp.erfc, "erfc({0})", "torch.erfc({0})", "mp.erfc({0})", "erfc"),
    F(sp.Abs, "numpy.abs({0})", "torch.abs({0})", "abs({0})", "abs", "exact"),
    F(sp.Max, _fold("numpy.maximum"), _nary("maximum"), _nary("nanmax"), "max", "exact"),
    F(sp.Min, _fold("numpy.minimum"), _nary("minimum"), _nary("nanmin"), "min", "exact"),
    F(sp.sign, "numpy.sign({0})", "torch.sign({0})", "sign({0})", "sign", "step"),
    F(sp.Heaviside, "numpy.heaviside({0}, {1})", "heaviside({0}, {1})", "heaviside({0}, {1})",
      "heaviside", "step"),
    F(sp.DiracDelta, "numpy.zeros_like({0})", "torch.zeros_like({0})", "0", "diracdelta",
      "step"),
    F(nearest, "numpy.floor({0} + 0.5)", "torch.floor({0} + 0.5)", "mp.floor({0} + 0.5)",
      "nearest", "step"),
    F("sqrt", "numpy.sqrt({0})", "torch.sqrt({0})", "rsqrt({0})", None),
    F("pow", None, None, "rpow({0}, {1})", None),
)
_BY_KEY = {r.key: r for r in ROWS}
assert len(_BY_KEY) == len(ROWS), "a function has two rows"

# the sympy classes every printer runs (Piecewise is printed by the code generator itself)
SUPPORTED: tuple[type, ...] = tuple(r.key for r in ROWS if not isinstance(r.key, str))


def row(key: type | str) -> Function:
    """The row of a sympy function class (or printer key); a clear error for any other."""
    try:
        return _BY_KEY[key]
    except KeyError:
        name = getattr(key, "__name__", str(key))
        raise SymgradError(f"{name} is outside symgrad's function vocabulary "
                           f"({', '.join(r.name for r in ROWS)}); rewrite it with these, or "
                           "add its row to symgrad/functions.py") from None


def find(func) -> Function | None:
    """The row of ``func`` (a sympy class, through its bases) or None."""
    for klass in getattr(func, "__mro__", (func,)):
        r = _BY_KEY.get(klass)
        if r is not None:
            return r
    return None


def spellings(target: str) -> dict:
    """``{key: spelling}`` of every row that ``target`` (a ``TARGETS`` key) spells."""
    return {r.key: getattr(r, target) for r in ROWS if getattr(r, target) is not None}


def lacking(func, target: str) -> str:
    """The one-line reason ``target`` cannot run ``func`` (for the error messages)."""
    r = find(func)
    name = getattr(func, "__name__", str(func))
    if r is None:
        return (f"{name} is outside symgrad's function vocabulary "
                f"({', '.join(r.name for r in ROWS if not isinstance(r.key, str))}); rewrite it "
                "with these")
    return (f"{r.name} has no {TARGETS.get(target, target)} spelling (its row in "
            "symgrad/functions.py); rewrite it with functions that target has")


def walk_table(namespace: dict) -> dict:
    """``{sympy class: f(kernels, *args)}`` for the high-precision walk, from the rows' ``walk``
    names looked up in ``namespace`` (the DD or ARB-ball implementations)."""
    out = {}
    for r in ROWS:
        if r.walk is not None and not isinstance(r.key, str):
            fn = namespace[r.walk]
            out[r.key] = lambda k, *args, fn=fn: fn(*args)
    return out


def bound_classes(kind: str) -> tuple[type, ...]:
    """The sympy classes whose bound class is ``kind`` (rounded / exact / step)."""
    return tuple(r.key for r in ROWS if r.bound == kind and not isinstance(r.key, str))
