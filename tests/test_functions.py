"""symgrad.functions: one row per sympy function, read by every printer, the walk and the bound."""

from fractions import Fraction

import flint
import numpy as np
import pytest
import sympy as sp

from symgrad import functions, rounding
from symgrad.backends import mpmath as mp_backend, numpy as np_backend, torch as torch_backend
from symgrad.codegen import SUPPORTED_FUNCTIONS, Printer, Target
from symgrad.errors import SymgradError
from symgrad.precise import DD_OPS
from symgrad.precise.arb import ArbKernels
from symgrad.precise.dd import DD
from symgrad.precise.ddops import DDKernels


def test_every_printer_reads_the_rows():
    for backend, key in ((np_backend, "numpy"), (torch_backend, "torch"), (mp_backend, "mpmath")):
        assert backend.FUNCTIONS == functions.spellings(key)
    assert set(SUPPORTED_FUNCTIONS) == set(functions.SUPPORTED) | {sp.Piecewise}


def test_walk_tables_and_bound_classes_come_from_the_rows():
    walked = {r.key for r in functions.ROWS if r.walk and not isinstance(r.key, str)}
    assert set(DDKernels.functions) == walked == set(ArbKernels.functions)
    assert set(rounding._EXACT) == {sp.Abs, sp.Max, sp.Min}
    assert set(rounding._NO_ERROR) == {sp.Heaviside, sp.sign, sp.DiracDelta, functions.nearest}


def test_a_missing_spelling_is_named():
    x = sp.Symbol("x")
    with pytest.raises(SymgradError, match="acosh is outside symgrad's function vocabulary"):
        DD_OPS.map(sp.acosh(x), {x: DD_OPS.asarray(np.array([1.0]))})
    # every sympy row is walked now: a row without a DD spelling still names itself
    assert functions.lacking(sp.sign, "plain") == ("sign has no plain spelling (its row in "
                                                  "symgrad/functions.py); rewrite it with "
                                                  "functions that target has")
    plain = Target("plain", {sp.exp: "exp({0})"})
    with pytest.raises(SymgradError, match="tanh has no plain spelling"):
        Printer(plain, {x: "a0"})(sp.tanh(x))
    with pytest.raises(SymgradError, match="gamma is outside symgrad's function vocabulary"):
        Printer(np_backend.target("float64"), {x: "a0"})(sp.gamma(x))
    with pytest.raises(SymgradError, match="outside symgrad's function vocabulary"):
        functions.row(sp.gamma)


def test_nearest_is_floor_of_x_plus_a_half_in_every_walk():
    """functions.nearest (capture's floor / round, issue 18 stop 34): the DD kernel from a DD's
    two parts (a tie broken by the low part, an integer high part with a negative low part),
    the ARB ball exact where the ball decides it and both integers where it straddles."""
    hi = np.array([2.5, 2.5, 2.5, -0.5, 1e17, 3.2, -7.0, 0.49999999999999994])
    lo = np.array([0.0, -1e-20, 1e-20, 0.0, -0.3, 0.0, -1e-18, 0.0])
    got = DDKernels.functions[functions.nearest](None, DD(hi, lo))
    for h, lw, gh, gl in zip(hi, lo, got.hi, got.lo):
        want = (Fraction(h) + Fraction(lw) + Fraction(1, 2)).__floor__()
        assert Fraction(gh) + Fraction(gl) == want, (h, lw)
    balls = np.array([flint.arb(2.5), flint.arb(1.2, 0.1), flint.arb(2.5, 1e-10)], dtype=object)
    out = ArbKernels.functions[functions.nearest](None, balls)
    assert out[0] == 3 and out[1] == 1 and out[2].contains(2) and out[2].contains(3)
    assert functions.nearest(sp.Rational(5, 2)) == 3 and sp.diff(
        functions.nearest(sp.Symbol("x")), sp.Symbol("x")) == 0
