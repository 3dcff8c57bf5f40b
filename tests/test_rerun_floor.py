"""The block test's lower floors where a float64 re-run of the same code decides
(``symgrad.compare.blockflags``, ``Tolerance.rerun_floor``): a float32 backward x (1 + 1e-7),
2 u, is caught and "proven in float64" (one input: the bias is the common mode); correct
float32 code whose roundings are shared (a loss scaled by rounded constants, BCE near a
saturated logit) raises the suspicion and passes; without a re-run (the op catalogue,
``rerun=False``) the flags are exactly the usual ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.compare import Tolerance
from symgrad.compare.blockflags import block_flags
from symgrad.opcatalog.run import TOLERANCE as CATALOGUE_TOLERANCE
from tests.clients import scaled_square


def _scaled(factor: float):
    """x -> x^2 with a custom backward 2 x g * factor (1: correct)."""
    return scaled_square(factor).apply


def _inputs(*shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s, generator=gen).requires_grad_() for s in shapes)


def test_backward_times_1_plus_1e7_is_proven_in_float64(decided):
    square = _scaled(1 + 1e-7)

    def f(weight):
        return square(weight)
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(f, _inputs(6))
    text = str(info.value)
    assert "float32" in text and "weight" in text and "proven in float64" in text
    assert "float32 hides it in its rounding" in text
    assert info.value.result.verdict == "fail"
    assert decided and all(low and hit[0] for _, low, hit in decided)


def test_a_bias_shared_by_every_block_is_caught(decided):
    """Two inputs, both x (1 + 1e-7): no block departs from the common mode, which is the
    bias itself (more than one shared rounding can do)."""
    square = _scaled(1 + 1e-7)
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(lambda a, b: square(a) * 0.5 + square(b), _inputs(5, 5, seed=1))
    found = {f.block for f in info.value.result.comparisons["torch_fn"].systematic
             if f.confirmed}
    assert found == {"a", "b"}, found


def test_float64_and_the_correct_square_are_unchanged(decided):
    assert sg.gradcheck(_scaled(1.0), _inputs(6))
    x64 = tuple(x.detach().double().requires_grad_() for x in _inputs(6))
    with pytest.raises(sg.GradcheckError, match="proven"):  # float64's own entry test
        sg.gradcheck(_scaled(1 + 1e-7), x64)
    assert not any(low for _, low, _ in decided)  # float64: no re-run, no lower floor


def test_a_loss_scaled_by_rounded_constants_passes(decided):
    """(x^2).mean() * 0.1 * 0.3 / 7 in float32: 1/7, 0.1, 0.3 and the mean's 1/N rounded and
    shared by every entry, ~3 u: the lower floor raises it, float64 does not reproduce it."""
    assert sg.gradcheck(lambda x: (x * x).mean() * 0.1 * 0.3 / 7, _inputs(7, seed=2))
    assert decided and all(low and hit is not None and not hit[0] for _, low, hit in decided)


def test_bce_near_a_saturated_logit_passes(decided):
    """BCE with target 1 at logits ~ 6-9 (-logsigmoid(z)): dL/dz = -sigmoid(-z), rounded once
    and shared by every entry of x and w, a common mode up to ~14 u: raised, float64 does not
    reproduce it, dropped (never inconclusive). (torch's own binary_cross_entropy_with_logits
    forms sigmoid(z) - 1, which cancels beyond the captured program's bound here: not used.)"""
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(1, 3, generator=gen).abs() + 2).requires_grad_()
    w = torch.full((3,), 1.0, requires_grad=True)
    assert sg.gradcheck(lambda x, w: -F.logsigmoid(x @ w).mean(), (x, w))
    assert decided and all(low and hit is not None and not hit[0] for _, low, hit in decided)


def test_code_that_refuses_float64_is_not_held_against(decided):
    """x @ W with W a float32 tensor the function holds: its float64 re-run raises (double !=
    float). A suspicion the lower floor raises there has no float64 evidence and is dropped:
    the check passes as before, it does not stop with the re-run's error."""
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(7, 7, generator=gen)
    for _ in range(4):
        x = torch.randn(7, generator=gen).requires_grad_()
        assert sg.gradcheck(lambda x: (x @ W).pow(2).mean() * 0.1 * 0.3 / 7, (x,))
    assert decided and all(low and hit is None for _, low, hit in decided)


def _stats(n, rng):
    return {"p": rng.normal(0, 4, n) * 2.0**-24, "sigma": rng.uniform(0, 1, n) * 2.0**-24,
            "n_eff": rng.uniform(0.5, 6, n), "ok_rows": rng.random(n) < 0.9}


def test_without_a_rerun_the_flags_are_the_usual_ones():
    """rerun=False, and the op catalogue's tolerance (rerun_floor inf) with rerun=True, flag
    exactly what the usual rule does: the catalogue's verdicts cannot change."""
    rng = np.random.default_rng(0)
    tol, u = Tolerance(block_floor=2.0, block_min_entries=2.0), 2.0**-24  # so that some flag
    for _ in range(20):
        st = _stats(200, rng)
        st["p"][::7] *= 1e5
        common = rng.normal(0, 3, 200) * u
        thresh = np.maximum(tol.block_floor * u, tol.block_sigmas * st["sigma"])
        usual = (st["ok_rows"] & (st["n_eff"] >= tol.block_min_entries)
                 & (np.abs(st["p"]) > thresh) & (np.abs(st["p"] - common) > thresh))
        assert usual.any()
        flag, th, low = block_flags(st, common, u, tol, rerun=False)
        assert np.array_equal(flag, usual) and not low.any()
        off = Tolerance(block_floor=2.0, block_min_entries=2.0, rerun_floor=np.inf)
        flag, th, low = block_flags(st, common, u, off, rerun=True)
        assert np.array_equal(flag, usual) and not low.any()
        flag, _, low = block_flags(st, common, u, tol, rerun=True)
        assert np.array_equal(flag & ~low, usual) and (flag | ~usual).all()
    assert not np.isfinite(CATALOGUE_TOLERANCE.rerun_floor)
    assert "re-run of the same code decides" not in CATALOGUE_TOLERANCE.rule()
    assert CATALOGUE_TOLERANCE.as_dict()["rerun_floor"] is None
