import subprocess
import sys
import textwrap

import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.testing import assert_gradients_match


def _model():
    w, x = sp.symbols("w x")
    return sg.Model("tanh_neuron", sp.tanh(w * x), params=[w], inputs=[x])


def test_correct_code_passes():
    # float64: hypothesis reaches a subnormal x (5e-324, d/dw exact to the bit) and saturation,
    # where torch's x (1 - y^2) from its rounded output is 0 against an exact ~3e-16 (w = 1,
    # x = 20): inside the allowance of torch's own formula (tensor/torch_vjp), so inconclusive
    # there - never a FAIL; away from saturation every entry is resolved
    assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x), max_examples=25,
                           allow_inconclusive=True)
    w, x = sp.symbols("w x")
    narrow = sg.Model("tanh_neuron", sp.tanh(w * x), params={w: sg.Uniform(-2, 2)},
                      inputs={x: sg.Uniform(-3, 3)})
    assert_gradients_match(narrow, torch_fn=lambda w, x: torch.tanh(w * x), max_examples=25)
    # float32: at a saturated tanh d/dw lies below the rounding of correct code - inconclusive
    # there, accepted here explicitly (the next test: not by default)
    assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x), max_examples=25,
                           dtype="float32", allow_inconclusive=True)


def _saturated():
    """tanh(w x) with w, x in [4, 5): |w x| >= 16 at every input, where float32's tanh rounds
    to 1 and torch's d/dw = x (1 - y^2) is 0 against an exact x (1 - tanh^2) < 3e-13, far
    below the allowance of that formula: every input is inconclusive in float32."""
    w, x = sp.symbols("w x")
    return sg.Model("tanh_neuron", sp.tanh(w * x), params={w: sg.Uniform(4, 5)},
                    inputs={x: sg.Uniform(4, 5)})


def test_inconclusive_fails_unless_allowed():
    # on the wide model (_model) whether 25 examples reach a saturated input depends on the
    # search's seed, which hypothesis derives from the source of assert_gradients_match's
    # `check` (derandomize=True): with a one-line edit there 7 of 11 other seeds found none and
    # this passed no AssertionError. On _saturated() every input is inconclusive, so the first
    # example decides, whatever the seed (12 of 12 seeds raised, and passed when allowed)
    tanh = lambda w, x: torch.tanh(w * x)  # noqa: E731
    with pytest.raises(AssertionError, match=r"(?s)inconclusive against the exact derivative.*"
                                             r"allow_inconclusive=True.*— INCONCLUSIVE"):
        assert_gradients_match(_saturated(), torch_fn=tanh, max_examples=25, dtype="float32")
    # allowed, the same search passes: the error above is the inconclusive verdict's alone
    assert_gradients_match(_saturated(), torch_fn=tanh, max_examples=25, dtype="float32",
                           allow_inconclusive=True)
    # a fail is still a fail when inconclusive is allowed (caught on 12 of 12 seeds)
    with pytest.raises(AssertionError, match="disagree with the exact derivative"):
        assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x * (1 + 1e-12)),
                               max_examples=30, allow_inconclusive=True)


class _WrongAtTie(torch.autograd.Function):
    """max(a, b), right off the tie; at a == b the whole gradient x1000 goes to a (no
    subgradient: every one lies between (1, 0) and (0, 1))."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return torch.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        tie = a == b
        return (torch.where(tie, 1000.0 * g, torch.where(a > b, g, 0 * g)),
                torch.where(tie, 0 * g, torch.where(b > a, g, 0 * g)))


def test_a_backward_wrong_only_at_a_tie_raises_one_assertion_error():
    """Meant to fail on the old behaviour: at the tie w1 = w2 = 0 the error / allowance
    overflowed to inf (an exact 0.5 with a zero bound: allowance 4 tiny), hypothesis' target()
    raised InvalidArgument (observation=inf) instead of the AssertionError with the table."""
    w1, w2, x = sp.symbols("w1 w2 x")
    m = sg.Model("tie_max", sp.Max(w1, w2), params=[w1, w2], inputs=[x])
    with pytest.raises(BaseException) as info:
        assert_gradients_match(m, torch_fn=lambda w1, w2, x: _WrongAtTie.apply(w1, w2),
                               max_examples=60)
    assert type(info.value) is AssertionError, repr(info.value)  # no ExceptionGroup either
    text = str(info.value)
    assert "disagree with the exact derivative" in text and "expected 0.5, got 1000.0" in text
    assert "symgrad: tie_max — FAIL" in text and "minimal input: w1=0.0, w2=0.0" in text


def test_target_observation_is_always_finite():
    from types import SimpleNamespace as NS
    import math
    from symgrad.testing import _observation
    for ulps, allowed in ((4.5e16, 8e-292), (math.inf, 2.0), (1.0, 0.0), (math.nan, 1.0),
                          (0.0, 0.0), (3.0, 2.0)):
        v = _observation(NS(worst=[NS(ulps=ulps, allowed_ulps=allowed)]))
        assert math.isfinite(v), (ulps, allowed, v)
    assert abs(_observation(NS(worst=[NS(ulps=3.0, allowed_ulps=2.0)])) - math.log10(1.5)) < 1e-12


def test_wrong_code_fails_with_table_and_minimal_input():
    with pytest.raises(AssertionError, match=r"(?s)ULPs.*minimal input: w=0\.0, x=1\.0"):
        assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x * (1 + 1e-12)),
                               max_examples=30)


def test_three_line_user_file_runs_under_pytest(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        from symgrad.testing import assert_gradients_match
        from symgrad import zoo
        def test_neuron(): assert_gradients_match(zoo.get("neuron"), max_examples=10)
        def test_fixture(assert_gradients): assert_gradients(zoo.get("chain_rule"), max_examples=5)
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--hypothesis-profile=ci", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout


def test_plugin_fixture_passes_allow_inconclusive_through(assert_gradients):
    import inspect
    assert "allow_inconclusive" in inspect.signature(assert_gradients).parameters
    assert_gradients(_model(), torch_fn=lambda w, x: torch.tanh(w * x), max_examples=10,
                     allow_inconclusive=True)


def test_failure_message_says_each_finding_once():
    """Meant to fail on the old message, which listed the failing entries and then str(result),
    which lists them again: each finding line once, before the table."""
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x * (1 + 1e-12)),
                               max_examples=30)
    lines = str(info.value).splitlines()
    found = [ln for ln in lines if ln.strip().startswith("torch_fn: mismatch")]
    assert found and len(found) == len(set(found)), lines
    assert lines[0].startswith("gradients of tanh_neuron disagree")
    assert lines[1] == found[0] and lines.index(found[-1]) < lines.index(
        next(ln for ln in lines if ln.startswith("symgrad: tanh_neuron — FAIL")))
