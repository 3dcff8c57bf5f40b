"""Named causes of a hand-written backward's own bugs (``symgrad.causes.backward``), through
``sg.gradcheck`` as a framework engineer's suite runs it (newuser6, A5): a leak into masked rows,
no gradient reaching a block (a backward returning None, a ``.detach()``), float32 arithmetic in
a float64 backward (named likely, with its evidence). Each planted bug gets its name; a correct
backward passes; a different bug (a factor 1 + 1e-7 in the backward) keeps "real derivative
error". The detectors are also checked on synthetic entries (a constant factor is no float32
rounding; a block partly 0 is no detach)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import symgrad as sg
from symgrad.causes import Context, Entries, named
from tests.clients import LeakyMaskedMean, MaskedMean

LEAK = "gradient leaks into entries the output does not depend on"
DETACHED = "no gradient reaches {}: detached or not returned by the backward"
F32 = "float32 arithmetic inside the float64 backward, likely"
REAL = "[cause: derivative wrong: real derivative error]"


class ScaledSigmoid(torch.autograd.Function):
    """s * sigmoid(x), its backward correct."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.save_for_backward(x, s)
        return s * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        p = torch.sigmoid(x)
        return g * s * p * (1 - p), (g * p).sum()


class NoneForS(ScaledSigmoid):
    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        p = torch.sigmoid(x)
        return g * s * p * (1 - p), None


class Float32Sigmoid(ScaledSigmoid):
    """The sigmoid computed in float32 inside the backward; the rest in the input's dtype."""

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        p = torch.sigmoid(x.float()).to(x.dtype)
        return g * s * p * (1 - p), (g * p).sum()


class Float32Backward(ScaledSigmoid):
    """The whole x gradient computed in float32 and converted back."""

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        p = torch.sigmoid(x.float())
        return (g.float() * s.float() * p * (1 - p)).to(x.dtype), (g * torch.sigmoid(x)).sum()


def off_by(factor: float) -> type[ScaledSigmoid]:
    """A different bug: the x gradient times ``factor``."""

    class OffBy(ScaledSigmoid):
        @staticmethod
        def backward(ctx, g):
            x, s = ctx.saved_tensors
            p = torch.sigmoid(x)
            return g * s * p * (1 - p) * factor, (g * p).sum()
    return OffBy


OffByFactor = off_by(1 + 1e-7)


MASK = torch.tensor([1, 0, 1, 1, 0])


def _x(dtype):
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 4, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def _s(dtype):
    return torch.tensor(1.5, dtype=dtype).requires_grad_()


def _lines(func, args, reference=None) -> list[str]:
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(func, args, reference=reference)
    lines = [ln for ln in str(info.value).splitlines() if ln.startswith("  mismatch")]
    assert lines, str(info.value)
    return lines


DTYPES = [torch.float64, torch.float32]


@pytest.mark.parametrize("dtype", DTYPES)
def test_correct_backwards_pass(dtype):
    assert sg.gradcheck(MaskedMean.apply, (_x(dtype), MASK)) is True
    assert sg.gradcheck(ScaledSigmoid.apply, (_x(dtype), _s(dtype))) is True


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_leak_into_masked_rows_is_named_with_its_count(dtype):
    for ln in _lines(LeakyMaskedMean.apply, (_x(dtype), MASK)):
        # masked rows 1 and 4, 4 columns, 4 samples: 32 failing entries, each an exact 0
        assert f"[cause: derivative wrong: {LEAK} (exact 0 at 32 of 32 failing entries)]" in ln, ln
        assert re.search(r"x\[[14], \d\]", ln), ln


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_backward_returning_none_is_no_gradient_reaching_the_parameter(dtype):
    for ln in _lines(NoneForS.apply, (_x(dtype), _s(dtype))):
        assert "got 0.0" in ln and DETACHED.format("s") in ln, ln
        assert LEAK not in ln and F32 not in ln, ln


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_detach_is_no_gradient_reaching_the_input_by_its_name(dtype):
    """A wrong ``.detach()``: the capture keeps it as the stop-gradient it is (issue 18), so
    the intended function is the independent reference that names it."""
    def scaled(x, scale):
        return ScaledSigmoid.apply(x, scale.detach())
    for ln in _lines(scaled, (_x(dtype), _s(dtype)), reference=ScaledSigmoid.apply):
        assert DETACHED.format("scale") in ln and "0.0 at all 4 entries, 4 samples" in ln, ln


def test_float32_sigmoid_in_a_float64_backward_is_named_likely_by_its_scatter():
    lines = _lines(Float32Sigmoid.apply, (_x(torch.float64), _s(torch.float64)))
    for ln in lines:
        assert F32 in ln and "of both signs" in ln, ln
        rel = [float(v) for v in re.search(r"relative errors (\S+)\.\.(\S+) at", ln).groups()]
        assert 0 < rel[0] <= rel[1] < 64 * 2.0 ** -24, ln


def test_a_float32_backward_in_float64_is_named_by_its_float32_numbers():
    lines = _lines(Float32Backward.apply, (_x(torch.float64), _s(torch.float64)))
    for ln in lines:
        found = re.search(r"got is a float32 number at (\d+) of (\d+)\)", ln)
        assert F32 in ln and found and found[1] == found[2], ln


def test_float32_arithmetic_in_a_float32_run_is_no_bug():
    for f in (Float32Sigmoid, Float32Backward):
        assert sg.gradcheck(f.apply, (_x(torch.float32), _s(torch.float32))) is True


def test_a_factor_in_the_backward_stays_a_real_derivative_error():
    lines = _lines(OffByFactor.apply, (_x(torch.float64), _s(torch.float64)))
    assert all(REAL in ln for ln in lines), lines


WrongByThousandth = off_by(1 + 1e-3)


def test_a_factor_in_a_float32_backward_stays_a_real_derivative_error():
    lines = _lines(WrongByThousandth.apply, (_x(torch.float32), _s(torch.float32)))
    assert all(REAL in ln for ln in lines), lines


# the detectors on synthetic entries: what each must not name

class _F:
    kind, backend, output = "mismatch", "torch_fn", "d/dx[0]"

    def __init__(self, expected, got):
        self.expected, self.got = expected, got


def _entries(expected, got, failing=None, row=0, column=0):
    expected, got = np.atleast_2d(expected), np.atleast_2d(got)
    failing = np.ones(expected.shape, bool) if failing is None else np.atleast_2d(failing)
    return Entries("x", expected, expected == 0, got, failing, row, column)


def _name(e: Entries, dtype: str = "float64") -> str | None:
    f = _F(float(e.expected[e.row, e.column]), float(e.got[e.row, e.column]))
    cause = named(f, Context(dtype=dtype, block=e))
    return None if cause is None else cause.name


def test_a_constant_factor_is_not_named_float32():
    hi = np.random.default_rng(0).uniform(0.1, 2.0, 64)
    assert _name(_entries(hi, hi * (1 + 1e-7))) is None
    assert _name(_entries(hi, hi * (1 - 3e-8))) is None


def test_float32_roundings_are_named_and_not_in_a_float32_run():
    hi = np.random.default_rng(1).uniform(0.1, 2.0, 64)
    got32 = hi.astype(np.float32).astype(np.float64)
    assert "got is a float32 number at 64 of 64" in _name(_entries(hi, got32))
    assert _name(_entries(hi, got32), "float32") is None
    too_big = hi * (1 + 1e-4)  # far beyond float32's rounding: no float32 evidence
    assert _name(_entries(hi, too_big.astype(np.float32).astype(np.float64))) is None


def test_a_block_partly_zero_is_no_detach_and_a_nonzero_exact_is_no_leak():
    hi = np.array([1.0, 2.0, 3.0])
    assert _name(_entries(hi, np.array([0.0, 2.0, 0.0]))) is None  # only some entries 0
    assert "no gradient reaches x" in _name(_entries(hi, np.zeros(3)))
    e = _entries(np.array([0.0, 2.0]), np.array([1e-9, 2.5]), column=1)
    assert _name(e) is None  # this entry's exact value is 2: no leak here
    assert "exact 0 at 1 of 2 failing" in _name(_entries(np.array([0.0, 2.0]),
                                                         np.array([1e-9, 2.5])))


def test_own_programs_and_second_order_are_not_named():
    e = _entries(np.zeros(2), np.full(2, 1e-9))
    f = _F(0.0, 1e-9)
    f.backend = "torch"
    assert named(f, Context(block=e)) is None
    assert named(_F(0.0, 1e-9), Context(block=e, order=2)) is None
    assert named(_F(0.0, 1e-9), Context()) is None  # no block entries: the split's wording
