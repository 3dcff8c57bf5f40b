"""Correct code that must pass: every built-in model (symgrad's own programs and the native
torch.nn reference) in float64 and float32, a few seeds here, 20 in the slow sweep
(``scripts/detection.py`` records it in reports/detection.md). A failure is a false alarm unless
its cause is a documented torch finding (nn.BCELoss's clamp at a saturated sigmoid).

symgrad's own programs are stable where the math is finite (log-sum-exp with a max shift,
torch.sigmoid, softmax as exp(x - lse), NaN-safe branches): its own rows never fail there, and a
user's correct code is not sunk by them."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad import zoo


@pytest.mark.parametrize("dtype, logits", [("float32", [0.0, 200.0]), ("float64", [0.0, 1000.0]),
                                           ("float32", [-300.0, 0.0, 300.0])])
def test_log_softmax_at_large_logits(dtype, logits):
    a = sg.matrix("a", 1, len(logits))
    m = sg.Model("lse", sg.ops.total(sg.ops.log_softmax(a)), params=[a])
    r = sg.verify(m, at={"a": np.array([[logits]])}, dtype=dtype,
                  torch_fn=lambda a: torch.log_softmax(a, dim=-1).sum())
    assert r.ok, str(r)


def test_cross_entropy_at_large_logits_float32():
    logits, t = sg.matrix("L", 1, 3), sg.matrix("t", 1)
    m = sg.Model("ce", sg.ops.cross_entropy(logits, t), params=[logits],
                 inputs={t: sg.Integers(0, 2)})
    r = sg.verify(m, at={"L": np.array([[[0.0, 150.0, -150.0]]]), "t": np.array([[0.0]])},
                  dtype="float32")
    assert r.verdict != "fail", str(r)


def test_sigmoid_far_in_the_tail_float32():
    z = sp.Symbol("z")
    m = sg.Model("sig", 3 * sg.ops.sigmoid(z), params=[z])
    r = sg.verify(m, at={"z": np.array([-100.0, -30.0, 0.0, 100.0])}, dtype="float32",
                  torch_fn=lambda z: 3 * torch.sigmoid(z))
    assert r.verdict != "fail", str(r)


def test_safe_branch_does_not_poison_symgrads_torch_program():
    w = sp.Symbol("w")
    m = sg.Model("safe", sp.Piecewise((sp.log(w), w > 1), (w - 1, True)), params=[w])
    r = sg.verify(m, at={"w": np.array([-2.0, 0.0, 0.5, 1.0, 3.0])})
    assert r.comparisons["torch"].ok and r.comparisons["numpy"].ok, str(r)


@pytest.mark.parametrize("seed", [4, 8])
def test_gpt_attention_float32(seed):
    r = sg.verify(zoo.get("gpt_attention"), seed=seed, dtype="float32")
    assert r.verdict != "fail", str(r)


def test_heaviside_in_a_model_runs_in_torch():
    """torch.heaviside has no derivative; symgrad's row gives it a zero one."""
    w, x = sp.symbols("w x")
    m = sg.Model("step", sp.Heaviside(w * x - 1) * w**2 + w, params=[w], inputs=[x])
    assert sg.verify(m, samples=50, seed=0).ok
from symgrad.compare import INCONCLUSIVE, Tolerance

KNOWN = ("BCELoss clamp",)
SMALL_MODELS = [n for n in zoo.names() if n != "tiny_gpt"]


def _false_alarms(r):
    return [f.message() for f in r.failures if not any(k in f.cause for k in KNOWN)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SMALL_MODELS)
def test_builtin_model_and_reference_have_no_false_alarm(reference_run, name, dtype):
    """60 samples (conftest's REFERENCE_SAMPLES), seeds 0 and 1: the runs test_gpt's block
    tests read too, made once per session."""
    for seed in (0, 1):
        r = reference_run(name, seed, dtype)
        assert not _false_alarms(r), "\n".join(_false_alarms(r))
        assert r.comparisons["numpy"].ok and r.comparisons["torch"].ok, str(r)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SMALL_MODELS)
def test_no_false_alarm_on_20_seeds(models, name, dtype):
    m = models[name]
    for seed in range(20):
        r = sg.verify(m, torch_fn=m.reference, samples=100, seed=seed, dtype=dtype)
        assert not _false_alarms(r), "\n".join(_false_alarms(r))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tiny_gpt_no_false_alarm(dtype):
    m = zoo.get("tiny_gpt")
    for seed in range(2):
        r = sg.verify(m, torch_fn=m.reference, samples=4, seed=seed, dtype=dtype)
        assert r.ok, str(r)


def _tiny_gpt_float32(tolerance):
    m = zoo.get("tiny_gpt", config={"vocab_size": 5, "context_length": 3, "emb_dim": 4, "n_heads": 2,
                      "n_layers": 1, "drop_rate": 0.1, "qkv_bias": False})
    return sg.verify(m, torch_fn=m.reference, samples=8, seed=0, dtype="float32",
                     tolerance=tolerance)


def _unresolved(c, tol: Tolerance) -> np.ndarray:
    """The entries the dtype cannot resolve: a nonzero exact value (above ``zero_below`` of
    its allowance) whose allowance is as large as itself, with an error in (0, allowance]."""
    exact, allowed = np.abs(c.expected), c.allowed_abs
    return ((exact > tol.zero_below * allowed) & (allowed >= exact) & (c.error > 0)
            & (c.error <= allowed))


@pytest.mark.parametrize("entry_bound", ["probabilistic", "worst"])
def test_float32_deep_model_reports_inconclusive_entries_not_ok(entry_bound):
    """A one-layer GPT in float32: an entry whose allowance is as large as its exact value is
    inconclusive (counted), never ok, and nothing fails: the block test vouches for every
    block. With the worst-case entry bound such entries exist; with the default probabilistic
    one (min(E, lam sigma), reports/gate.md row 'small_gpt float32') the tighter allowance
    resolves them, and the rule still holds for any left."""
    tol = Tolerance(entry_bound=entry_bound)
    r = _tiny_gpt_float32(tol)
    assert r.verdict != "fail", str(r)
    counts = r.counts("torch_fn")
    c = r.comparisons["torch_fn"]
    unresolved = _unresolved(c, tol)
    assert (c.status[unresolved] == INCONCLUSIVE).all()
    assert unresolved.sum() == (c.status == INCONCLUSIVE).sum() == counts["inconclusive"]
    assert counts["systematic"] == 0
    if entry_bound == "worst":
        assert counts["inconclusive"] > 0


def test_float32_saturated_but_stable_code_passes():
    """log-sigmoid BCE at large logits in float32: correct, must pass (no value clamp)."""
    w, x, y = sp.symbols("w x y")
    m = sg.Model("sat", sg.ops.bce(sg.ops.sigmoid(w * x), y), params={w: sg.Uniform(16, 40)},
                 inputs={x: sg.Uniform(0.99, 1.01), y: sg.Choice([0.0, 1.0])})

    def fn(w, x, y):
        z = w * x
        return -(y * torch.nn.functional.logsigmoid(z)
                 + (1 - y) * torch.nn.functional.logsigmoid(-z))
    r = sg.verify(m, torch_fn=fn, samples=100, seed=0, dtype="float32")
    assert r.verdict != "fail", str(r)
    assert np.isfinite(r.comparisons["torch_fn"].got).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tensor_tiny_gpt_no_false_alarm(dtype):
    """tiny_gpt as a tensor program (the probabilistic entry bound, block and pooled tests):
    symgrad's numpy and torch views and the native reference pass, 2 seeds."""
    from symgrad.zoo import gpt2
    m = gpt2.tiny_gpt()
    for seed in (0, 1):
        r = sg.verify(m, torch_fn=m.reference, samples=4, seed=seed, dtype=dtype)
        assert r.verdict != "fail", str(r)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tensor_tiny_gpt_no_false_alarm_on_20_seeds(dtype):
    from symgrad.zoo import gpt2
    m = gpt2.tiny_gpt()
    for seed in range(20):
        r = sg.verify(m, torch_fn=m.reference, samples=4, seed=seed, dtype=dtype)
        assert r.verdict != "fail", (seed, str(r))
