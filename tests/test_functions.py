"""symgrad.functions: one row per sympy function, read by every printer, the walk and the bound."""

import numpy as np
import pytest
import sympy as sp

from symgrad import functions, rounding
from symgrad.backends import mpmath as mp_backend, numpy as np_backend, torch as torch_backend
from symgrad.codegen import SUPPORTED_FUNCTIONS, Printer, Target
from symgrad.errors import SymgradError
from symgrad.precise import DD_OPS
from symgrad.precise.arb import ArbKernels
from symgrad.precise.ddops import DDKernels


def test_every_printer_reads_the_rows():
    for backend, key in ((np_backend, "numpy"), (torch_backend, "torch"), (mp_backend, "mpmath")):
        assert backend.FUNCTIONS == functions.spellings(key)
    assert set(SUPPORTED_FUNCTIONS) == set(functions.SUPPORTED) | {sp.Piecewise}


def test_walk_tables_and_bound_classes_come_from_the_rows():
    walked = {r.key for r in functions.ROWS if r.walk and not isinstance(r.key, str)}
    assert set(DDKernels.functions) == walked == set(ArbKernels.functions)
    assert set(rounding._EXACT) == {sp.Abs, sp.Max, sp.Min}
    assert set(rounding._NO_ERROR) == {sp.Heaviside, sp.sign, sp.DiracDelta}


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
