"""The pytest plugin's ``assert_gradients`` fixture takes gradcheck: ``.gradcheck`` /
``.gradgradcheck`` pass correct code, and fail a planted backward bug with symgrad's finding
lines (no traceback, no Jacobian dump); run in a pytester session as a user's file would be."""

from __future__ import annotations

import inspect

import pytest
import torch

import symgrad as sg

pytest_plugins = ["pytester"]

USER_FILE = '''
import torch

class Cube(torch.autograd.Function):
    factor = 1.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x ** 2 * Cube.factor

def _x():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, dtype=torch.float64, generator=g).requires_grad_()

def test_correct(assert_gradients):
    assert assert_gradients.gradcheck(Cube.apply, (_x(),))

def test_correct_float32(assert_gradients):
    assert assert_gradients.gradcheck(torch.tanh, (_x().detach().float().requires_grad_(),))

def test_second_order(assert_gradients):
    assert assert_gradients.gradgradcheck(Cube.apply, (_x(),))

def test_planted(assert_gradients, monkeypatch):
    monkeypatch.setattr(Cube, "factor", 1 + 1e-7)  # torch.autograd.gradcheck passes this
    assert torch.autograd.gradcheck(Cube.apply, (_x(),))
    assert_gradients.gradcheck(Cube.apply, (_x(),))

def test_planted_no_raise(assert_gradients, monkeypatch):
    monkeypatch.setattr(Cube, "factor", 1 + 1e-7)
    assert assert_gradients.gradcheck(Cube.apply, (_x(),), raise_exception=False) is False
'''


@pytest.fixture(scope="module")
def export_warmed_up() -> None:
    """One capture in this process before ``pytester`` is set up. Its in-process run restores
    sys.modules to a snapshot taken at its setup, so the torch modules that torch.export
    imports on first use (torch._inductor.test_operators, which registers a TORCH_LIBRARY that
    outlives the module) would be dropped and imported again by a later capture in this
    session (test_verify_any_module run after this file alone), failing to register twice."""
    x = torch.linspace(-1, 1, 3, dtype=torch.float64).requires_grad_()
    assert sg.gradcheck(torch.tanh, (x,))


def test_fixture_gradcheck_passes_correct_code_and_fails_a_planted_bug(export_warmed_up,
                                                                       pytester):
    pytester.makepyfile(test_user=USER_FILE)
    r = pytester.runpytest("-p", "no:cacheprovider")
    r.assert_outcomes(passed=4, failed=1)
    out = r.stdout.str()
    assert "test_planted FAILED" in out or "FAILED test_user.py::test_planted" in out
    assert "symgrad.gradcheck: the backward of 'Cube' disagrees" in out
    assert "with respect to x[" in out
    assert "Traceback" not in out and "Jacobian mismatch" not in out  # (torch's own)
    # the failure's lines once, not again after "During handling of the above exception"
    failures = out.split("short test summary info")[0]  # its FAILED line quotes the headline
    assert failures.count("symgrad.gradcheck: the backward of 'Cube' disagrees") == 1, out
    assert "During handling of the above exception" not in out, out


def test_fixture_is_still_assert_gradients_match(assert_gradients):
    assert "allow_inconclusive" in inspect.signature(assert_gradients).parameters
    assert callable(assert_gradients.gradcheck) and callable(assert_gradients.gradgradcheck)
