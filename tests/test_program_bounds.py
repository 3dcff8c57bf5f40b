"""The rounding-error bound E of a plain model's tensor program (ported from tests/test_bounds.py,
whose scalar ``bounds.compile_bound`` is deleted with the scalar pipeline; its ``error_source``
rules test stays there): E in units of u, as ``symgrad.tensor.verify.entry_bounds`` gives the
comparer, worst case. Includes Max/Min near a tie their computed arguments may cross
(``symgrad.rounding.NEAR_TIE``): the bound takes both arguments' errors there, not the winner's
alone - the winner's alone was 0 for Min(w x, 1) at w = 3, x = fl32(1/3) evaluated in float64,
and correct torch code failed at that float32 kink (tests/test_program_kinks.py)."""

import dataclasses

import numpy as np
import sympy as sp

import symgrad as sg
from symgrad.compare import Tolerance
from symgrad.rounding import NEAR_TIE
from symgrad.tensor.front import to_program
from symgrad.tensor.verify import entry_bounds

WORST = dataclasses.replace(Tolerance(), entry_bound="worst")
a, b, w, x = sp.symbols("a b w x")


def _E(expr, params, inputs=(), **values) -> list[float]:
    """E of (value, gradient...) at one point."""
    m = to_program(sg.Model("m", expr, params=list(params), inputs=list(inputs)))
    return entry_bounds(m, {k: np.array([v]) for k, v in values.items()}, WORST, 1)[0].tolist()


def test_rules():
    assert _E(a * b, [a, b], a=2.0, b=3.0)[0] == 6.0  # one rounding of the product
    assert _E(sp.exp(a), [a], a=1.0)[0] == np.exp(1.0)  # the function's own rounding
    assert _E(2 * a, [a], a=3.0)[0] == 0.0  # exact scaling


def test_cancellation_gets_the_terms_tolerance():
    assert _E(a - b, [a, b], a=1.0, b=1.0 - 1e-9)[0] > 1.9  # |a| + |b|, not |a - b|


def test_max_and_min_near_a_tie_take_both_arguments_errors():
    third = float(np.float32(1 / 3))  # 3 * fl32(1/3) = 1 + 2^-25 in float64: no tie there
    assert abs(3.0 * third - 1) <= NEAR_TIE * 1.0
    assert _E(sp.Min(w * x, 1), [w], [x], w=3.0, x=third)[0] >= 1.0  # E of w x (|w x| = 1)
    assert _E(sp.Max(1, w * x), [w], [x], w=3.0, x=third)[0] >= 1.0
    # far from the tie: the winner's E (the constant's 0; the product's one rounding)
    assert _E(sp.Min(w * x, 1), [w], [x], w=3.0, x=0.5)[0] == 0.0
    assert _E(sp.Max(w * x, 0), [w], [x], w=-3.0, x=0.5)[0] == 0.0
    assert _E(sp.Max(w * x, 0), [w], [x], w=3.0, x=0.5)[0] == 1.5
