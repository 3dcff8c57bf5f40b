import sys

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad import SymgradError, zoo


def test_tutorial_numbers_for_the_neuron():
    g = sg.exact_at(zoo.get("neuron"), {"x": 1.1, "w": 2.2, "b": 0, "y": 1})
    print("dL/dw =", g["d/dw"], " dL/db =", g["d/db"])
    assert round(float(g["d/dw"]), 4) == -0.0898
    assert round(float(g["d/db"]), 4) == -0.0817


def test_issue_script_runs(models):
    x, y, w, b = sp.symbols("x y w b")
    model = sg.Model("my_neuron", sg.ops.bce(sg.ops.sigmoid(w * x + b), y), params=[w, b],
                     inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
    result = sg.verify(model, samples=500, seed=0, device="cpu", dtype="float64")
    assert result.ok and "d/dw" in str(result) and "numpy worst ULPs" in str(result)

    def mine(w, b, x, y):
        return torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)
    assert sg.verify(model, torch_fn=mine, samples=500, seed=0).ok


@pytest.mark.parametrize("name", [n for n in zoo.names() if n != "tiny_gpt"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_builtin_programs_agree_in_both_dtypes(models, name, dtype):
    r = sg.verify(models[name], samples=200, seed=1, dtype=dtype)
    assert r.verdict != "fail", str(r)


def test_same_seed_same_result(models):
    a = sg.verify(models["simplenet"], samples=50, seed=3).as_dict()
    b = sg.verify(models["simplenet"], samples=50, seed=3).as_dict()
    assert a == b


def test_native_bce_clamp_is_a_real_finding(models):
    """nn.BCELoss clamps p(1-p) at 1e-12 in backward: at a saturated sigmoid its gradient is
    wrong, and symgrad names the native backend (not numpy or the model's torch program)."""
    m = models["simplenet"]
    r = sg.verify(m, torch_fn=m.reference, samples=500, seed=2)
    assert r.verdict == "fail" and r.comparisons["torch"].ok and r.comparisons["numpy"].ok
    f = r.failures[0]
    assert f.backend == "torch_fn" and f.kind == "mismatch"
    p = 1 / (1 + np.exp(-_logit(f.point)))
    assert p * (1 - p) < 1e-12


def _logit(point):
    W1, b1 = np.array(point["W1"]), np.array(point["b1"])
    W2, b2, x = np.array(point["W2"]), np.array(point["b2"]), np.array(point["x"])
    return float((W2 @ np.maximum(W1 @ x + b1, 0) + b2)[0])


def test_domain_failure_is_reported_not_crashed():
    """Samples drawn from a declared domain where the loss is undefined: refused in one line
    before any backend runs (tensor/undefined.py); the user's own point there: a domain
    failure in the report, not a crash."""
    w, x = sp.symbols("w x")
    m = sg.Model("logneg", sp.log(w * x), params=[w], inputs={x: sg.Uniform(-1, 1)})
    with pytest.raises(sg.SymgradError, match=r"undefined on its declared domains: log\(w\*x\)"):
        sg.verify(m, samples=40, seed=0)
    r = sg.verify(m, at={w: np.array([0.5, 0.5]), x: np.array([-0.3, 0.3])})
    assert r.verdict == "fail"
    assert {f.kind for f in r.failures} == {"domain"}
    assert "not a finite real number" in r.failures[0].explanation


def test_nonfinite_is_its_own_class():
    """The torch.where trap: sqrt of a negative in the branch not taken gives the user's torch
    code a NaN gradient although the exact derivative there is 0. symgrad's own torch program
    feeds the untaken branch safe inputs (double where) and stays finite."""
    w = sp.Symbol("w")
    m = sg.Model("where_trap", sp.Piecewise((sp.sqrt(w), w > 0), (w**2, True)), params=[w])
    r = sg.verify(m, samples=40, seed=0,
                  torch_fn=lambda w: torch.where(w > 0, torch.sqrt(w), w**2))
    kinds = {(f.backend, f.kind) for f in r.failures}
    assert ("torch_fn", "non-finite") in kinds
    assert r.comparisons["numpy"].ok and r.comparisons["torch"].ok


def test_overflow_is_its_own_class():
    w, x = sp.symbols("w x")
    m = sg.Model("overflow", sp.exp(w * x), params={w: sg.Uniform(700, 710)},
                 inputs={x: sg.Uniform(1, 1.02)})
    r = sg.verify(m, samples=30, seed=0)
    assert {f.kind for f in r.failures} == {"overflow"}
    assert "range" in r.failures[0].explanation


def test_oracle_subset_is_reported():
    m = zoo.get("neuron")
    r = sg.verify(m, config=sg.VerifyConfig(samples=100, oracle_samples=10))
    assert len(r.oracle_samples) == 10 and r.as_dict()["oracle_samples"] == 10


def test_unknown_or_unavailable_device_and_mps_float64(models):
    with pytest.raises(SymgradError, match="unknown device 'tpu'; available here: cpu"):
        sg.verify(models["neuron"], device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SymgradError, match="device 'cuda' is not available.*available: cpu"):
            sg.verify(models["neuron"], device="cuda")
    with pytest.raises(SymgradError, match="MPS does not support float64|not available"):
        sg.verify(models["neuron"], device="mps", dtype="float64")


def test_tf32_flags_restored(models):
    from symgrad.backends.torch import _precision_flags, exact_math
    flags = _precision_flags()
    before = [getattr(obj, attr) for obj, attr, _ in flags]
    tf32 = "tf32" if flags[0][1] == "fp32_precision" else True
    try:
        for obj, attr, _ in flags:
            setattr(obj, attr, tf32)
        with exact_math():
            assert all(getattr(o, a) == v for o, a, v in flags)
        sg.verify(models["neuron"], samples=10)
        assert all(getattr(obj, attr) == tf32 for obj, attr, _ in flags)
    finally:
        for (obj, attr, _), value in zip(flags, before):
            setattr(obj, attr, value)


@pytest.mark.parametrize("fn, match", [
    (lambda w, b, x: w, r"torch_fn is missing argument\(s\) 'y'"),
    (lambda w, b, x, y, z: w, r"torch_fn has extra argument\(s\) 'z'"),
    (lambda w, b, x, y: torch.stack([w, b]), r"torch_fn returned \(2,\); it must return a scalar"),
])
def test_bad_torch_fn(models, fn, match):
    with pytest.raises(SymgradError, match=match):
        sg.verify(models["neuron"], torch_fn=fn, samples=5)


def test_bad_config():
    with pytest.raises(SymgradError, match="samples must be a positive integer"):
        sg.VerifyConfig(samples=0)
    with pytest.raises(SymgradError, match="at least 40 significant digits"):
        sg.VerifyConfig(oracle_dps=20)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda(models, dtype):
    for name in ("neuron", "simplenet", "tensor_ops"):
        m = models[name]
        r = sg.verify(m, samples=300, seed=0, device="cuda", dtype=dtype)
        assert r.ok, str(r)


def test_exact_kink_is_never_a_false_alarm_and_names_the_convention():
    """ReLU at exactly 0: sympy's H(0) = 1/2, torch.relu uses 0; both are subgradients."""
    w, x = sp.symbols("w x")
    m = sg.Model("relu_kink", sg.ops.relu(w * x) * 3, params={w: sg.Choice([-1.0, 0.0, 1.0])},
                 inputs={x: sg.Choice([0.0, 1.0, 2.0])})
    r = sg.verify(m, samples=50, seed=0, torch_fn=lambda w, x: torch.relu(w * x) * 3)
    assert r.ok and r.kinks
    assert "convention H(0) = 0" in r.kinks[0].message()
    assert "ok (kink)" in str(r)
    # a wrong gradient at the same kinks is still caught
    wrong = sg.verify(m, samples=50, seed=0, torch_fn=lambda w, x: torch.relu(w * x) * 3.5)
    assert wrong.verdict == "fail" and {f.kind for f in wrong.failures} == {"mismatch"}


def test_constant_gradient_that_is_not_representable_is_no_false_alarm():
    """d/dw of -2w/5 is the constant -2/5, which no float represents exactly (found by fuzzing)."""
    w, v = sp.symbols("w v")
    assert sg.verify(sg.Model("lin", -2 * v / 5 - 2 * w / 5, params=[w, v]), samples=20).ok


# ---------------------------------------------------------------- input edges, backends
def _neuron_torch(w, b, x, y):
    return torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)


def test_backends_selects_only_the_users_code(models):
    r = sg.verify(models["neuron"], torch_fn=_neuron_torch, samples=20, seed=0,
                  backends=("torch_fn",))
    assert set(r.comparisons) == {"torch_fn"} and r.ok
    assert set(sg.verify(models["neuron"], samples=5, backends=("numpy",)).comparisons) == \
        {"numpy"}
    with pytest.raises(SymgradError, match="backends: unknown \\['jax'\\]"):
        sg.verify(models["neuron"], samples=5, backends=("jax",))
    with pytest.raises(SymgradError, match="no torch_fn was given"):
        sg.verify(models["neuron"], samples=5, backends=("torch_fn",))


def test_own_program_findings_are_labelled_as_symgrads_own():
    w = sp.Symbol("w")  # e^100 is beyond float32: symgrad's own rows fail, the user's code is
    r = sg.verify(sg.Model("ovf", sp.exp(w), params=[w]), at={w: [100.0, 1.0]}, dtype="float32",
                  torch_fn=lambda w: torch.exp(w))  # not blamed for symgrad's programs
    own = [f for f in r.failures if f.backend in ("numpy", "torch")]
    assert own and all(f.cause.startswith("symgrad's own program") for f in own)
    assert not any(f.cause.startswith("symgrad's own program") for f in r.failures
                   if f.backend == "torch_fn")


def test_at_accepts_symbols_and_scalars(models):
    x, y, w, b = sp.symbols("x y w b")
    r = sg.verify(models["neuron"], at={w: 0.5, b: -1.0, x: 2.0, y: 1.0})
    assert r.ok and len(r.oracle_samples) == 1
    r2 = sg.verify(models["neuron"], at={"w": [0.5, 0.1], b: [-1.0, 0], "x": [2.0, 1], y: [1, 0]})
    assert r2.ok and len(r2.oracle_samples) == 2


def test_torch_fn_with_default_arguments_works(models):
    def fn(w, b, x, y, eps=1e-12):
        return torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)
    assert sg.verify(models["neuron"], torch_fn=fn, samples=20, seed=0).ok


@pytest.mark.parametrize("body", ["detached", "constant"])
def test_detached_or_constant_output_names_the_function(models, body):
    def my_loss(w, b, x, y):
        if body == "detached":
            return (w * x + b).detach().sum()
        return torch.tensor(1.0, dtype=torch.float64)
    with pytest.raises(SymgradError, match="torch_fn 'my_loss' returned a loss that does not "
                                           "depend on the parameters"):
        sg.verify(models["neuron"], torch_fn=my_loss, samples=3, seed=0)


def test_non_integer_value_for_an_integers_input_is_an_error():
    w, k = sp.symbols("w k")
    m = sg.Model("ints", w * k, params=[w], inputs={k: sg.Integers(0, 9)})
    with pytest.raises(SymgradError, match="input 'k' is Integers.*non-integer value 2.5"):
        sg.verify(m, at={w: [1.0], k: [2.5]})
    with pytest.raises(SymgradError, match="input 'k'.*non-integer"):
        sg.exact_at(m, {"w": 1.0, "k": 2.5})
    assert sg.verify(m, at={w: [1.0], k: [2.0]}).ok


def test_a_mistyped_block_name_in_at_is_named(models):
    with pytest.raises(SymgradError, match=r"unknown name\(s\) \['yy'\]; missing \['y'\]"):
        sg.verify(models["neuron"], at={"w": [1.0], "b": [0.0], "x": [1.0], "yy": [1.0]})
    with pytest.raises(SymgradError, match=r"unknown name\(s\) \['zz'\]"):
        sg.verify(models["neuron"], at={"w": [1.0], "b": [0.0], "x": [1.0], "y": [1.0],
                                        "zz": [1.0]})


def test_a_plain_model_is_verified_as_its_tensor_program(models, monkeypatch):
    """Issue 17: a plain sg.Model is verified as its tensor program, built once per model (the
    scalar pipeline and its SYMGRAD_PIPELINE switch are gone)."""
    verify_mod = sys.modules["symgrad.verify"]  # the attribute symgrad.verify is the function
    seen = []
    real = verify_mod.verify_tensor
    monkeypatch.setattr(verify_mod, "verify_tensor",
                        lambda model, **kw: seen.append(model) or real(model, **kw))
    monkeypatch.setenv("SYMGRAD_PIPELINE", "scalar")  # no longer read: still the program
    m = models["neuron"]
    assert sg.verify(m, samples=5, seed=0).verdict == "pass"
    assert sg.verify(m, samples=5, seed=1).verdict == "pass"
    assert [t.name for t in seen] == ["neuron", "neuron"] and seen[0] is seen[1]
    assert not hasattr(verify_mod, "pipeline") and not hasattr(verify_mod, "judge")


def test_something_that_is_not_a_model_is_named_in_one_line():
    with pytest.raises(sg.SymgradError, match=r"^model: a str is not a model; pass an sg.Model"):
        sg.verify("neuron")


def test_progress_true_prints_the_phases_and_the_default_is_silent(capsys):
    """newuser7: a CNN's sg.verify(module=...) ran 15 CPU s (52 s wall) without a word; the
    phases were shown only through config=VerifyConfig(progress=True), which also resets
    samples= to VerifyConfig's 500."""
    m = zoo.get("neuron")
    sg.verify(m, samples=4, seed=0)
    assert capsys.readouterr().err == ""
    r = sg.verify(m, samples=4, seed=0, progress=True)
    err = capsys.readouterr().err
    assert r.ok and "deriving neuron" in err and "compare" in err
    assert len(r.oracle_samples) == 4  # samples= kept (not VerifyConfig's 500)
