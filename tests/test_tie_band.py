"""The default tie band of a Max/Min (``rounding.NEAR_TIE``: the bound takes both arguments'
errors within it) is the comparer's ``compare.tie_band`` with no dtype named, decided in one
place: both agree, the default covers every dtype symgrad runs, and a bound walked with the
default band takes both errors exactly where one walked with ``tie_band(())`` does."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import sympy as sp

import symgrad as sg
from symgrad.compare import DTYPES, Tolerance, tie_band
from symgrad.rounding import NEAR_TIE
from symgrad.tensor import bound, mapbound
from symgrad.tensor.front import to_program

w, x = sp.symbols("w x")


def test_the_rounding_default_is_the_comparers_band_with_no_dtype():
    assert NEAR_TIE == tie_band((), Tolerance()) == 2.0**-6  # 4 x u(bfloat16) = 4 x 2^-8
    assert NEAR_TIE == max(tie_band([d], Tolerance()) for d in DTYPES)  # covers every dtype
    assert tie_band(["bfloat16"], Tolerance()) == NEAR_TIE > tie_band(["float64"], Tolerance())
    wider = dataclasses.replace(Tolerance(), safety=8.0)
    assert tie_band((), wider) == 2 * NEAR_TIE  # the band follows the comparer's safety


def test_the_bounds_defaults_are_that_band():
    assert inspect.signature(bound.evaluate_bound).parameters["tie"].default == NEAR_TIE
    assert mapbound.TIE.get() == NEAR_TIE


def test_a_default_walk_takes_both_errors_within_the_band_and_only_there():
    """Min(w x, 1) at |w x - 1| = d: within tie (Ea + Eb) = tie |w x| both errors count (E
    of w x, about 1), outside only the winner's (the constant's 0); the default band and
    tie_band(()) draw that line at the same d."""
    m = to_program(sg.Model("m", sp.Min(w * x, 1), params=[w], inputs=[x]))
    band = tie_band((), Tolerance())

    def E(d, **kw):
        leaves = {"w": np.array([1.0 + d]), "x": np.array([1.0])}
        return bound.evaluate_bound([m.loss], leaves, **kw)[0].item()
    for d in (band / 2, band * 2):
        assert E(d) == E(d, tie=band)
    assert E(band / 2) >= 1.0 and E(band * 2) == 0.0
