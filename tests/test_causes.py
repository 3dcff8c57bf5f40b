"""Each root-cause class, triggered for real (the catalogue of torch behaviours included)."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

import symgrad as sg
import symgrad.tensor as st
from symgrad import causes
from symgrad.tensor import X, context
from symgrad.tensor.front import to_program
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward


def _causes(r):
    return {f.cause for f in r.failures}


def test_causes_does_not_import_the_pipeline():
    import ast
    from pathlib import Path
    files = sorted(Path(causes.__file__).parent.glob("*.py"))  # the package, every module
    assert len(files) >= 5
    for path in files:
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "verify" not in imported and ".verify" not in str(imported), path


# The models and torch code of the catalogue's tests, module-level (the retired same-verdict gate
# ran them through both pipelines and checked the same named cause: reports/gate.md).
def sat_model() -> sg.Model:
    """BCE of a sigmoid saturated at w x in [15.8, 17.2] (y = 0): in float32 p rounds to 1."""
    w, x, y = sp.symbols("w x y")
    return sg.Model("sat", sg.ops.bce(sg.ops.sigmoid(w * x), y), params={w: sg.Uniform(16, 17)},
                    inputs={x: sg.Uniform(0.99, 1.01), y: sg.Choice([0.0])})


def bce_loss_of_sigmoid(w, x, y):
    """nn.BCELoss of torch.sigmoid: clamps log at -100 (and p(1-p) at 1e-12 in backward)."""
    return torch.nn.BCELoss()(torch.sigmoid(w * x), y)


def softplus_model(plain: bool = False) -> sg.Model:
    """softplus(w x) past torch's threshold 20 (``plain``: written log(1 + e^(w x)))."""
    w, x = sp.symbols("w x")
    loss = sp.log(1 + sp.exp(w * x)) if plain else sg.ops.softplus(w * x)
    return sg.Model("plain_softplus" if plain else "softplus", loss,
                    params={w: sg.Uniform(10, 30)}, inputs={x: sg.Uniform(1, 2)})


def softplus_fn(w, x):
    return F.softplus(w * x)


def logits_model() -> sg.Model:
    """BCE of sigmoid(w x + b) with w in [6, 12], x in [-3, 3]: saturated logits."""
    w, b, x, y = sp.symbols("w b x y")
    return sg.Model("logits", sg.ops.bce(sg.ops.sigmoid(w * x + b), y),
                    params={w: sg.Uniform(6, 12), b: sg.Normal()},
                    inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})


def bce_with_logits_fn(w, b, x, y):
    return F.binary_cross_entropy_with_logits(w * x + b, y)


def intlog_model() -> sg.Model:
    """w log(k) with k an integer input: torch.log of an int64 tensor returns float32."""
    w, k = sp.symbols("w k")
    return sg.Model("intlog", w * sp.log(k), params={w: sg.Normal()},
                    inputs={k: sg.Integers(2, 9)})


def intlog_fn(w, k):
    return w * torch.log(k)


def guard_model() -> sg.Model:
    """A guard constant 1e-10 that rounds to 0 in float16 (run at w = 0)."""
    w = sp.Symbol("w")
    return sg.Model("guard", sp.Max(w, 0) + sp.sqrt(w**2 + sp.Float(1e-10)), params=[w])


def overflow_model() -> sg.Model:
    """exp(w x) with w x in [700, 724]: beyond float64's range (exp(709.8)) at most samples."""
    w, x = sp.symbols("w x")
    return sg.Model("overflow", sp.exp(w * x), params={w: sg.Uniform(700, 710)},
                    inputs={x: sg.Uniform(1, 1.02)})


def test_bce_loss_clamp_is_named(models):
    m = models["simplenet"]
    r = sg.verify(m, torch_fn=m.reference, samples=500, seed=2)
    assert _causes(r) == {"saturation/clamping inside torch: BCELoss clamp"}
    assert "p(1-p) = " in r.failures[0].note


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_float32_bce_loss_value_clamp_is_a_mismatch_and_named(dtype):
    r = sg.verify(sat_model(), samples=20, seed=0, dtype=dtype, backends=("torch_fn",),
                  torch_fn=bce_loss_of_sigmoid)
    value = [f for f in r.failures if f.output == "value"]
    assert r.verdict == "fail" and value and value[0].kind == "mismatch" and value[0].got == 100.0
    assert value[0].cause == "saturation/clamping inside torch: BCELoss clamp"
    assert f"rounds to 1 in {dtype}" in value[0].note


def test_softplus_threshold_is_named():
    r = sg.verify(softplus_model(), samples=40, seed=0, torch_fn=softplus_fn)
    assert _causes(r) == {"known torch convention: softplus threshold"}


def test_softplus_threshold_is_named_for_a_plain_log_one_plus_exp():
    r = sg.verify(softplus_model(plain=True), samples=40, seed=0, torch_fn=softplus_fn)
    assert r.verdict == "fail" and _causes(r) == {"known torch convention: softplus threshold"}


def test_saturated_logit_precision_is_named():
    r = sg.verify(logits_model(), samples=200, seed=0, torch_fn=bce_with_logits_fn)
    assert r.verdict == "fail" and _causes(r) == {"precision loss: saturated logit"}



def test_first_split_function_differs_versus_derivative_wrong(models):
    m = models["neuron"]
    forward_bug = sg.verify(m, backends=("torch_fn",), samples=40, seed=0,
                            torch_fn=lambda w, b, x, y: F.binary_cross_entropy(
                                torch.sigmoid(w * x * (1 + 1e-9) + b), y))
    klasses = {f.cause.split(":")[0] for f in forward_bug.failures}
    assert "function differs" in klasses and "derivative wrong" not in klasses
    backward_bug = sg.verify(m, backends=("torch_fn",), samples=40, seed=0,
                             torch_fn=lambda w, b, x, y: F.binary_cross_entropy(
                                 torch.sigmoid(scale_backward(w, 1 + 1e-9) * x + b), y))
    assert {f.output for f in backward_bug.failures} <= {"d/dw"}
    assert "derivative wrong: real derivative error" in _causes(backward_bug)
    assert not any(c.startswith("function differs") for c in _causes(backward_bug))


def test_where_trap_and_domain():
    w = sp.Symbol("w")
    trap = sg.verify(sg.Model("trap", sp.Piecewise((sp.sqrt(w), w > 0), (w**2, True)),
                              params=[w]), samples=40, seed=0,
                     torch_fn=lambda w: torch.where(w > 0, torch.sqrt(w), w**2))
    assert "known torch convention: where-trap" in _causes(trap)
    # at a chosen point (drawn samples of a model undefined on its domains are refused:
    # tests/test_domains.py)
    dom = sg.verify(sg.Model("dom", sp.log(w), params=[w]), at={"w": [-1.0, 2.0]})
    assert {c.split(" — ")[-1] for c in _causes(dom)} == {"domain: domain"}


def test_float16_guard_rounding_to_zero_is_not_a_where_trap():
    r = sg.verify(guard_model(), at={"w": [0.0, 0.0]}, dtype="float16", backends=("torch",))
    nonfinite = [f for f in r.failures if f.kind == "non-finite"]
    assert nonfinite and all("guard rounds to zero" in f.cause for f in nonfinite)
    assert not any("where-trap" in f.cause for f in r.failures)


def test_float16_bce_loss_eps_underflow_is_named_not_a_where_trap(models):
    """Meant to fail before: the tutorial's neuron (nn.BCELoss of torch.sigmoid) in float16 at
    z = 8.6, y = 1: the sigmoid rounds to 1, and BCELoss's backward divides by max(p(1-p),
    1e-12) with 1e-12 rounded to 0: 0/0. It read "where-trap" (the program has a branch)."""
    m = models["neuron"]
    at = {"w": [2.756], "b": [0.7383], "x": [2.848], "y": [1.0]}
    r = sg.verify(m, torch_fn=m.reference, at=at, dtype="float16", backends=("torch_fn",))
    nonfinite = [f for f in r.failures if f.kind == "non-finite"]
    assert r.verdict == "fail" and {f.output for f in nonfinite} == {"d/dw", "d/db"}, r
    assert _causes(r) == {"saturation/clamping inside torch: BCELoss eps underflow"}
    assert "rounds to 1 and 1e-12 rounds to 0 in float16" in nonfinite[0].note
    assert "where-trap" not in str(r)
    # float32 holds 1e-12: the same point passes there
    assert sg.verify(m, torch_fn=m.reference, at=at, dtype="float32",
                     backends=("torch_fn",)).verdict != "fail"


def test_integer_input_promoted_to_float32_is_named():
    r = sg.verify(intlog_model(), samples=30, seed=0, backends=("torch_fn",),
                  torch_fn=intlog_fn)
    assert r.verdict == "fail"
    assert _causes(r) == {"dtype promotion in user code: integer input promoted"}
    assert "log" in r.failures[0].note


def test_nan_from_a_fully_masked_row_is_not_a_where_trap():
    a, b = sp.symbols("a b")
    # the model: a softmax-weighted sum over a row whose every entry the user's code masks
    m = sg.Model("masked", sp.Max(a, 0) + sp.exp(a) / (sp.exp(a) + sp.exp(b)), params=[a, b])

    def fn(a, b):
        row = torch.stack([a, b]).masked_fill(torch.tensor([True, True]), float("-inf"))
        return torch.relu(a) + torch.softmax(row, 0)[0]
    r = sg.verify(m, samples=10, seed=0, backends=("torch_fn",), torch_fn=fn)
    assert r.verdict == "fail" and not any("where-trap" in c for c in _causes(r))
    assert any(c.startswith("function differs") for c in _causes(r))


# ---------------------------------------------------------------- BCE-with-logits, float32
_X, _Y, _W, _B = sp.symbols("x y w b")
_Z = _W * _X + _B
BCE_WITH_LOGITS = {  # the loss written in plain sympy, as a new user does
    "softplus": _Y * sp.log(1 + sp.exp(-_Z)) + (1 - _Y) * sp.log(1 + sp.exp(_Z)),
    "sigmoid": -(_Y * sp.log(1 / (1 + sp.exp(-_Z)))
                 + (1 - _Y) * sp.log(1 - 1 / (1 + sp.exp(-_Z)))),
}


def logit_model(expr):
    return sg.Model("bce_logits", expr, params=[_W, _B],
                    inputs={_X: sg.Uniform(-3, 3), _Y: sg.Choice([0.0, 1.0])})


def _naive(w, b, x, y):
    return -(y * torch.log(torch.sigmoid(w * x + b))
             + (1 - y) * torch.log(1 - torch.sigmoid(w * x + b)))


SATURATED_AT = {"w": [1.0, 1.0], "b": [-9.3, 7.0], "x": [1.0, 1.0], "y": [0.0, 0.0]}


@pytest.mark.parametrize("form,torch_fn", [
    ("softplus", bce_with_logits_fn), ("sigmoid", bce_with_logits_fn),
    ("softplus", _naive)], ids=["softplus-F", "sigmoid-F", "softplus-naive"])
def test_float32_bce_with_logits_cancellation_is_named(form, torch_fn):
    """At z = -8.3, y = 0 torch computes (1 - y) z - log_sigmoid(z): terms of size 8.3 cancel
    to 2.5e-4 (≈1.5e4 ULPs in float32); the naive form cancels in 1 - sigmoid(z) at z = +8.
    Both are a catalogued precision loss, not "the function differs". (The naive torch code
    against the model written the same naive way is within that composition's own bound.)"""
    r = sg.verify(logit_model(BCE_WITH_LOGITS[form]), torch_fn=torch_fn, at=SATURATED_AT,
                  dtype="float32", backends=("torch_fn",))
    assert r.verdict == "fail"
    assert _causes(r) == {"precision loss: saturated logit"}, [f.message() for f in r.failures]
    assert "saturated logit" in r.failures[0].note


def test_a_forward_bug_at_a_saturated_logit_is_not_excused():
    """Meant to fail: a logit shifted by 0.01 at z = -8.3 (an error 2.3e-6, 2x the cancelled
    terms' rounding): the function differs."""
    at = {"w": [1.0], "b": [-9.3], "x": [1.0], "y": [0.0]}
    r = sg.verify(logit_model(BCE_WITH_LOGITS["softplus"]), at=at, dtype="float32",
                  backends=("torch_fn",), torch_fn=lambda w, b, x, y:
                  F.binary_cross_entropy_with_logits(w * x + b + 0.01, y))
    value = [f for f in r.failures if f.output == "value"]
    assert value and value[0].cause == "function differs: different function"


# ---------------------------------------------------------------- native tensor programs
def _z(lo: float, hi: float):
    """z = W * x elementwise over 3 entries, W in [lo, hi], x in [0.99, 1.01]."""
    W, x = st.param("W", (3,), sg.Uniform(lo, hi)), st.input("x", (3,), sg.Uniform(0.99, 1.01))
    return st.map_(X[0] * X[1], W, x)


def test_a_tensor_model_names_the_softplus_threshold():
    """st.softplus is the op table's stable form (no textbook program): read as a softplus."""
    m = TensorModel("softplus3", st.sum_(st.softplus(_z(10, 30))))
    r = sg.verify(m, samples=20, seed=0, backends=("torch_fn",),
                  torch_fn=lambda W, x: F.softplus(W * x).sum())
    assert r.verdict == "fail" and _causes(r) == {"known torch convention: softplus threshold"}


def test_a_tensor_model_names_the_bce_loss_clamp():
    """nn.BCELoss of a sigmoid that rounds to 1 in float32 (y = 0): the value is clamped at 100
    per entry; the sigmoid node (the op table's form) is read with its exact value."""
    z = _z(16, 17)
    m = TensorModel("bce3", st.sum_(st.map_(-sp.log(1 - X[0]), st.sigmoid(z))))
    r = sg.verify(m, samples=10, seed=0, dtype="float32", backends=("torch_fn",),
                  torch_fn=lambda W, x: torch.nn.BCELoss(reduction="sum")(
                      torch.sigmoid(W * x), torch.zeros(3, dtype=W.dtype)))
    value = [f for f in r.failures if f.output == "value" and f.backend == "torch_fn"]
    assert value and value[0].cause == "saturation/clamping inside torch: BCELoss clamp"
    assert "rounds to 1 in float32" in value[0].note


def test_op_values_read_the_textbook_program_exactly():
    """The sigmoid step of sg.ops.sigmoid at z = 40: p = 1 - 4.2e-18, kept exactly (hi + lo),
    so p (1 - p) is 4.2e-18 and not 0 as in float64."""
    p = context.op_values(to_program(sat_model()), {"w": np.array([40.0]),
                                                   "x": np.array([1.0]), "y": np.array([0.0])})
    (value, (z,)), = p["sigmoid"]
    assert z == 40 and 0 < 1 - value < 1e-17
    assert abs(float(value * (1 - value)) / math.exp(-40) - 1) < 1e-12


def test_a_first_order_torch_behaviour_is_not_named_at_order_2():
    """The catalogue's behaviours are first-order (``Entry.orders``): torch's softplus above its
    threshold is named at order 1; the same failure of a model marked ``order = 2`` (the HVP
    model of ``symgrad.hvp``) is not excused by it. End to end, order 2 names what the scalar
    path names (g·v, the HVP model's value, differs)."""
    m = TensorModel("softplus3", st.sum_(st.softplus(_z(21, 25))))
    fn = lambda W, x: F.softplus(W * x).sum()  # noqa: E731
    first = sg.verify(m, samples=10, seed=0, backends=("torch_fn",), torch_fn=fn)
    assert _causes(first) == {"known torch convention: softplus threshold"}
    f = next(f for f in first.failures if f.output != "value")
    leaves = {k: v[f.sample:f.sample + 1] for k, v in first.values.items()}
    ctx = causes.Context(dtype="float64", value_status="mismatch")
    assert context.classify(m, f, ctx, leaves).name == "softplus threshold"
    m.order = 2
    assert context.classify(m, f, ctx, leaves).name == "different function"
    second = sg.verify(TensorModel("softplus3", m.loss), samples=10, seed=0, order=2,
                       backends=("torch_fn",), torch_fn=fn)
    scalar = sg.verify(softplus_model(), samples=10, seed=0, order=2, backends=("torch_fn",),
                       torch_fn=softplus_fn, at={"w": [22.0, 24.0], "x": [1.0, 1.0]})
    assert _causes(second) == _causes(scalar) == {"function differs: different function"}


def test_overflow_is_its_own_class_on_the_tensor_path():
    """The exact value beyond float64's range: double-double says inf, the ARB ball ~1e311 is
    finite; the certificate takes the ball beyond float64's largest number as agreeing (it was
    'not certified', an error), and the failures are overflow, as on the scalar path."""
    r = sg.verify(to_program(overflow_model()), samples=30, seed=0)
    assert r.verdict == "fail" and {f.kind for f in r.failures} == {"overflow"}
    assert {c.split(" — ")[-1] for c in _causes(r)} == {"overflow: overflow"}


# ------------------------------------------- a cause is about the entry that failed (ux4, S3)
def test_a_planted_bug_beside_a_saturated_logit_is_a_derivative_error():
    """Meant to fail: w1's backward x(1 + 1e-5) in a sum of two BCE-with-logits, w0's logit
    saturated at -9.3, w1's at 0.7. The saturated logit is not on d/dw1's path: the proven
    mismatch is "derivative wrong", never torch's rounding (main named it "saturated logit")."""
    w0, w1, x = sp.symbols("w0 w1 x")
    m = sg.Model("two_logits", sg.ops.softplus(w0 * x) + sg.ops.softplus(w1 * x),
                 params=[w0, w1], inputs={x: sg.Uniform(0.9, 1.1)})

    def fn(w0, w1, x):
        z = torch.stack([w0 * x, scale_backward(w1, 1 + 1e-5) * x])
        return F.binary_cross_entropy_with_logits(z, torch.zeros_like(z), reduction="sum")
    r = sg.verify(m, torch_fn=fn, at={"w0": [-9.3], "w1": [0.7], "x": [1.0]},
                  dtype="float32", backends=("torch_fn",))
    w1_failures = [f for f in r.failures if f.output == "d/dw1"]
    assert r.verdict == "fail" and w1_failures
    assert {f.cause for f in w1_failures} == {"derivative wrong: real derivative error"}


class _Swish(torch.autograd.Function):
    """x sigmoid(x) with its backward x(1 + 1e-5): a planted bug, no BCE anywhere."""

    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        return g * s * (1 + x * (1 - s)) * (1 + 1e-5)


def test_a_bare_sigmoid_is_not_a_saturated_logit():
    """Meant to fail: the new user's swish (sigmoid logits up to 10.5, no log of them) with a
    1e-5 backward bug in float32: proven mismatches, each "derivative wrong" (main: "precision
    loss: saturated logit", i.e. blamed torch's rounding). (A 1e-6 bug, ~8 float32 ULPs, is
    within what torch's sigmoid' from its rounded output may lose at these logits:
    symgrad.tensor.mapbound.torch_form.)"""
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(64, generator=g)).requires_grad_()
    with pytest.raises(sg.GradcheckError) as e:
        sg.gradcheck(_Swish.apply, (x,))
    text = str(e.value)
    assert "saturated logit" not in text and "[cause: derivative wrong" in text, text


def test_a_float32_op_in_a_float64_run_is_named_not_an_integer_promotion():
    """F.cross_entropy(float logits, int64 target) is the normal call, not an integer
    promotion (main said "integer input promoted ... cross_entropy on an integer tensor" for
    every cross_entropy torch_fn): the float32 came from the user's own .float()."""
    X, W, t = sg.matrix("X", 2, 3), sg.matrix("W", 3, 3), sg.matrix("t", 2)
    m = sg.Model("ce", sg.ops.cross_entropy(sg.ops.dense(X, W), t), params=[W],
                 inputs={X: sg.Normal(0, 1), t: sg.Integers(0, 2)})
    r = sg.verify(m, samples=4, seed=0, backends=("torch_fn",),
                  torch_fn=lambda W, X, t: F.cross_entropy(X.float() @ W.float().T, t))
    assert r.verdict == "fail"
    assert _causes(r) == {"dtype promotion in user code: lower precision in user code"}
    assert "float() gave float32 in a float64 run" in r.failures[0].note
    ok = sg.verify(m, samples=4, seed=0, backends=("torch_fn",),
                   torch_fn=lambda W, X, t: F.cross_entropy(X @ W.T, t))
    assert ok.verdict == "pass", [f.message() for f in ok.failures]


def test_a_bug_at_a_confidently_wrong_saturated_logit_is_a_derivative_error():
    """Meant to fail: BCE-with-logits at z = +9.3, y = 0 (loss ~9.3, adjoint sigmoid(z) - y ~1:
    nothing cancels) with w's backward x(1 + 1e-5) in float32. Main named it "saturated logit"
    (|z| > 4, rel < 1e-3); the rule now needs the entry's loss below e^-4 (a confident, correct
    prediction, where sigmoid(z) - y cancels)."""
    w, x = sp.symbols("w x")
    m = sg.Model("one_logit", sg.ops.softplus(w * x), params=[w],
                 inputs={x: sg.Uniform(0.9, 1.1)})

    def fn(w, x):
        z = scale_backward(w, 1 + 1e-5) * x
        return F.binary_cross_entropy_with_logits(z, torch.zeros_like(z))
    r = sg.verify(m, torch_fn=fn, at={"w": [9.3], "x": [1.0]}, dtype="float32",
                  backends=("torch_fn",))
    assert r.verdict == "fail" and _causes(r) == {"derivative wrong: real derivative error"}


# ------------------------------------- a proven bug where nothing cancels (tidy23, item 4)
def _bce_of_sigmoid():
    w, b, x, y = sp.symbols("w b x y")
    return sg.Model("bce_sig", sg.ops.bce(sg.ops.sigmoid(w * x + b), y), params=[w, b],
                    inputs={x: sg.Uniform(0.9, 1.1), y: sg.Choice([0.0, 1.0])})


def _planted_bce(scale: float, form: str):
    """BCE-with-logits with w's backward x scale: torch's F.binary_cross_entropy_with_logits,
    or the stable softplus(z) - y z (whose value does not cancel at z << 0, y = 0)."""
    def fn(w, b, x, y):
        z = scale_backward(w, scale) * x + b
        return (F.binary_cross_entropy_with_logits(z, y) if form == "torch"
                else F.softplus(z) - y * z)
    return fn


AT_MINUS_30 = {"w": [1.0], "b": [-31.0], "x": [1.0], "y": [0.0]}


@pytest.mark.parametrize("form", ["torch", "softplus"])
@pytest.mark.parametrize("dtype,scale", [("float64", 1 + 1e-6), ("float32", 1 + 1e-4)])
def test_a_bug_at_z_minus_30_with_target_0_is_no_saturated_logit(dtype, scale, form):
    """Meant to fail: BCE-with-logits at z = -30, y = 0 (loss e^-30, a confident prediction)
    with w's backward x scale. The adjoint sigmoid(z) - 0 has full relative accuracy: nothing
    cancels, so the proven d/dw error is no precision loss (main: "precision loss: saturated
    logit", the loss being below e^-4 and the relative error below 1e-3). With the stable
    forward it is a derivative error; torch's own forward cancels in the value at z = -30
    ((1 - y) z - log_sigmoid(z): a catalogued saturated logit of the value), so there the
    first split reads the failing value and says the function differs."""
    r = sg.verify(_bce_of_sigmoid(), torch_fn=_planted_bce(scale, form), dtype=dtype,
                  at=AT_MINUS_30, backends=("torch_fn",))
    w = [f for f in r.failures if f.output == "d/dw"]
    assert r.verdict == "fail" and w, [f.message() for f in r.failures]
    assert not any("saturated logit" in f.cause for f in w)
    if form == "softplus":  # and the same code without the bug fails nothing
        assert _causes(r) == {"derivative wrong: real derivative error"}
        assert sg.verify(_bce_of_sigmoid(), torch_fn=_planted_bce(1.0, form), dtype=dtype,
                         at=AT_MINUS_30, backends=("torch_fn",)).verdict != "fail"


def test_the_rule_reads_the_entry_target_and_its_own_estimate():
    """The catalogue rule alone: a gradient entry at z = 20 is a saturated logit at y = 1
    (sigmoid(z) - 1 cancels ~5e8-fold) within its estimate, never at y = 0 (nothing cancels),
    nor beyond the estimate (twice it), nor at an unknown target beyond the worse sign
    convention's estimate."""
    def named(y, rel, dtype="float64"):
        ctx = causes.Context(dtype=dtype, ops={"bce": [(None, [20.0, y])]})
        f = type("F", (), {"output": "d/dw", "got": 1.0 + rel, "expected": 1.0})()
        return causes._saturated_logit(ctx, f, rel)
    u = 2.0**-53
    estimate = 2 * u * 21 * causes.adjoint_cancellation(20.0, 1.0)
    assert named(1.0, estimate / 2) and "target 1" in named(1.0, estimate / 2)
    assert named(1.0, estimate * 2) is None
    assert named(0.0, 1e-14) is None and named(0.0, 1e-9) is None
    assert named(float("nan"), 1e-6) and named(float("nan"), 1e-4) is None  # 1 + e^20
    assert causes.adjoint_cancellation(-30.0, 0.0) == 1.0
