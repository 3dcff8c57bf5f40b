"""symgrad's own programs rewrite the unstable patterns of a plain sympy model (symgrad.stable):
each rule is an identity (40 digits, boundaries included), the two overflows of issue 16 are
gone from the numpy and torch programs, the user's formula and the torch_fn allowance stay as
written, and a model without the patterns generates the same program as before."""

import re

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad import stable, zoo
from symgrad.compare import FAILING, INCONCLUSIVE, LOSS, OK, allowance
from symgrad.tensor.front import to_program
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import TorchOps
from symgrad.tensor.verify import entry_bounds
from symgrad.testing import scale_backward

OWN = ("numpy", "torch")


def _value(expr, subs: dict):
    """At 1000 digits (sympy's evalf does not raise the precision through a cancelling log, and
    1 - 1/(1 + e^-750) needs 330 digits), compared at 40."""
    return sp.N(expr.subs(subs), 1000)


def _close(a, b, rel=sp.Float("1e-35", 50)) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), sp.Float("1e-300", 50))


# ---------------------------------------------------------------- each rule is an identity
BOUNDARY = [0, 1, -1, sp.Rational(1, 10**12), -sp.Rational(1, 10**12), 30, -30, 200, -200, 750,
            -750]


@pytest.mark.parametrize("rule", stable.RULES, ids=[r.name for r in stable.RULES])
def test_each_rule_is_an_identity_at_40_digits(rule):
    t, a, b = sp.symbols("t a b", real=True)
    textbook, rewritten = rule.identity(t, a, b)
    rng = np.random.default_rng(0)
    points = [(v, 0, 0) for v in BOUNDARY] + [(0, 0, 0), (5, 5, 5), (200, 200, -3)]
    points += [tuple(sp.Rational(int(rng.integers(-4000, 4000)), 16) for _ in range(3))
               for _ in range(25)]
    for tv, av, bv in points:
        subs = {t: tv, a: av, b: bv}
        if rule.name == "log1p":  # log(1 + x) is defined for x > -1 only
            subs = {t: tv, a: -abs(sp.sympify(av)) - 1, b: bv}
        lhs, rhs = _value(textbook, subs), _value(rewritten, subs)
        assert lhs.is_finite and _close(lhs, rhs), (rule.name, subs, lhs, rhs)


def test_the_rewriter_is_an_identity_on_composed_models():
    """The whole rewritten program (steps substituted back) equals the formula as written."""
    w, v, x, y = sp.symbols("w v x y")
    p = 1 / (1 + sp.exp(-w * x))
    exprs = {
        "ce": -(w - sp.log(sp.exp(w) + sp.exp(v) + 1)),
        "bce": -(y * sp.log(p) + (1 - y) * sp.log(1 - p)),
        "softmax": sp.exp(w) / (sp.exp(w) + sp.exp(v * x)) * x,
        "nested": sp.log(1 + sp.exp(sp.log(1 + w ** 2) - v)) * (sp.exp(v * x) - 1) - (1 - sp.exp(w)),
        "mse_sigmoid": (sp.exp(w * x) / (1 + sp.exp(w * x)) - y) ** 2 + sp.log(1 - 1 / (1 + sp.exp(v))),
    }
    rng = np.random.default_rng(1)
    for name, expr in exprs.items():
        m = sg.Model(name, expr, params=[w, v], inputs=[x, y], allow_unused=True)  # bce: no v
        assert m.graph.rewrites, name
        rewritten, written = m.graph.expand(), m.written_graph.expand()
        syms = {s.name: s for s in written.free_symbols}
        for _ in range(6):
            pt = {s: sp.Rational(int(rng.integers(-1600, 1600)), 64) for s in syms.values()}
            pt = {s: (abs(v) if s.name == "y" else v) for s, v in pt.items()}
            assert _close(_value(written, pt), _value(rewritten, pt)), (name, pt)


def test_which_rules_fire():
    z, u = sp.symbols("z u")
    cases = {
        sp.log(sp.exp(z) + sp.exp(u)): ("log-sum-exp",),
        sp.log(1 / (1 + sp.exp(-z))): ("log-sigmoid",),
        sp.log(1 - 1 / (1 + sp.exp(-z))): ("log-one-minus-sigmoid",),
        sp.log(1 + sp.exp(z)) * u: ("softplus",),
        (sp.exp(z) - 1) * u: ("expm1",),
        sp.log(1 + z * u): ("log1p",),
        1 / (1 + sp.exp(-z)) * u: ("sigmoid",),
        (1 - 1 / (1 + sp.exp(-z))) * u: ("one-minus-sigmoid",),
        sp.exp(z) / (sp.exp(z) + sp.exp(u)): ("softmax",),
        sp.log(sg.ops.sigmoid(z)) * u: ("log-sigmoid",),  # an ops.sigmoid step, logged by hand
        sp.sin(z) * sp.exp(u) + sp.log(z ** 2 + 2): (),  # nothing to do
        sp.log(1 / (1 + sp.exp(sp.Rational(3, 2)))) * z: (),  # constants stay exact numbers
        sp.Piecewise((sp.log(1 + sp.exp(sp.sqrt(z))), z > 0), (z, True)): (),  # branches stay
    }
    for expr, rules in cases.items():
        m = sg.Model("m", expr, params=[z], inputs=[u] if expr.has(u) else [])
        assert m.graph.rewrites == rules, (expr, m.graph.rewrites)


# ---------------------------------------------------------------- the two overflows of issue 16
Z0, Z1 = sp.symbols("z0 z1")
CE = -(Z0 - sp.log(sp.exp(Z0) + sp.exp(Z1)))  # cross-entropy written by hand
W, X, Y = sp.symbols("w x y")
P = 1 / (1 + sp.exp(-W * X))
BCE = -(Y * sp.log(P) + (1 - Y) * sp.log(1 - P))  # BCE of a sigmoid written by hand


def _ce():
    return sg.Model("ce", CE, params=[Z0, Z1])


def _bce():
    return sg.Model("bce", BCE, params=[W], inputs=[X, Y])


def _ce_literal(z0, z1):
    return -(z0 - torch.log(torch.exp(z0) + torch.exp(z1)))


def _bce_literal(w, x, y):
    p = 1 / (1 + torch.exp(-w * x))
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


CE_AT = {"z0": [0.0, 1.0, 0.0, -3.0], "z1": [200.0, -3.0, 0.0, 90.0]}
BCE_AT = {"w": [152.0, 152.0, -152.0, -152.0, 1.0, 0.0],
          "x": [1.0] * 6, "y": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]}


def _assert_within_bound(r, backends=OWN):
    for name in backends:
        c = r.comparisons[name]
        assert np.isfinite(c.got).all(), (name, c.got)
        assert not np.isin(c.status, FAILING).any(), (name, c.status)
        assert np.isin(c.status, (OK, LOSS, INCONCLUSIVE)).all(), (name, c.status)  # within
        assert (c.error <= c.allowed_abs).all(), (name, c.error, c.allowed_abs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_written_cross_entropy_own_programs_do_not_overflow(dtype):
    """z1 = 200: exp(200) = inf in float32; the own programs run m + log(Σ exp(a_i - m))."""
    r = sg.verify(_ce(), at=CE_AT, dtype=dtype, backends=OWN)
    _assert_within_bound(r)
    assert not np.isin(r.comparisons["numpy"].status, INCONCLUSIVE).any()
    assert r.ok, str(r)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_written_bce_of_a_sigmoid_own_programs_do_not_overflow(dtype):
    """w x = +-152: 1 - p = 0 and exp(152) = inf in float32; the own programs run softplus."""
    r = sg.verify(_bce(), at=BCE_AT, dtype=dtype, backends=OWN)
    _assert_within_bound(r)
    # the same verdict as the zoo neuron (ops.bce of ops.sigmoid) at the same points
    neuron = sg.verify(zoo.get("neuron"), dtype=dtype, backends=OWN,
                       at={**BCE_AT, "b": [0.0] * 6})
    def verdicts(status):  # precision loss is a warning within the bound: ok
        return np.where(status == LOSS, OK, status)
    for name in OWN:
        np.testing.assert_array_equal(verdicts(r.comparisons[name].status),
                                      verdicts(neuron.comparisons[name].status[:, :2]))


def test_a_stable_torch_fn_is_no_longer_sunk_by_the_own_programs():
    """The user's stable code passes where symgrad's own programs used to overflow."""
    ce = sg.verify(_ce(), at=CE_AT, dtype="float32",
                   torch_fn=lambda z0, z1: torch.logsumexp(torch.stack([z0, z1]), 0) - z0)
    assert ce.ok, str(ce)
    bce = sg.verify(_bce(), at={k: v[:3] for k, v in BCE_AT.items()}, dtype="float32",
                    torch_fn=lambda w, x, y: F.binary_cross_entropy_with_logits(w * x, y))
    _assert_within_bound(bce, OWN + ("torch_fn",))


def test_a_wrong_gradient_is_still_caught_at_the_overflow_point():
    """Meant to fail: the stable user code with its backward scaled by 1.001 at z1 = 200."""
    r = sg.verify(_ce(), at=CE_AT, dtype="float32", torch_fn=lambda z0, z1: torch.logsumexp(
        torch.stack([scale_backward(z0, 1.001), z1]), 0) - z0)
    assert not r.ok
    assert {f.backend for f in r.failures} == {"torch_fn"}
    _assert_within_bound(r)


def _stable_and_textbook_bounds(r, model) -> np.ndarray:
    """E of the stable program and of the textbook composition at CE_AT, the larger of the
    two, as the tensor program that produced ``r`` computes them (probabilistic by default)."""
    assert "oracle_certified" in r.program_size  # the tensor pipeline (to_program) ran
    tm = to_program(model)
    values = {k: np.asarray(v, np.float64) for k, v in CE_AT.items()}
    tol, n = r.config.tolerance, len(CE_AT["z0"])
    return np.fmax(entry_bounds(tm, values, tol, n),
                   entry_bounds(tm.textbook_program, values, tol, n))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_literal_torch_fn_keeps_its_allowance_and_its_findings(dtype):
    """A hand-written torch_fn computes the formula as written: its allowance is the larger of
    the textbook composition's bound and the stable program's (as before), it passes where the
    literal code is fine, and its own overflow at z1 = 200 (float32) is still reported (on the
    tensor program: ``to_program``)."""
    model = _ce()
    r = sg.verify(model, at=CE_AT, dtype=dtype, torch_fn=_ce_literal)
    want = allowance(_stable_and_textbook_bounds(r, model), dtype, r.config.tolerance)
    np.testing.assert_allclose(r.comparisons["torch_fn"].allowed_abs, want, rtol=1e-12)
    _assert_within_bound(r, OWN)
    literal = r.comparisons["torch_fn"]
    overflow = ~np.isfinite(literal.got)
    if dtype == "float32":
        # exp(200), exp(90) = inf in float32: true findings about the literal code
        assert overflow[[0, 3]].any(axis=1).all() and not overflow[[1, 2]].any()
        assert {f.sample for f in r.failures} == {0, 3}
        assert {f.backend for f in r.failures} == {"torch_fn"}
    else:
        assert not overflow.any() and r.ok, str(r)


def test_literal_bce_torch_fn_keeps_its_findings():
    """The literal BCE code really is NaN/inf at w x = 152 (log(1 - p) with p = 1): reported for
    torch_fn, never for symgrad's own programs. Sample 0's 0 x log(0) = NaN is a failure;
    sample 1's log(1 - p) = inf is a singular point that rounding of the formula as written
    reaches (p rounds to 1), so it is inconclusive with that cause (``compare/singular.py``),
    never ok."""
    r = sg.verify(_bce(), at=BCE_AT, dtype="float64", torch_fn=_bce_literal)
    _assert_within_bound(r, OWN)
    assert {f.backend for f in r.failures} == {"torch_fn"}
    assert 0 in {f.sample for f in r.failures} and not r.ok
    literal = r.comparisons["torch_fn"]
    assert np.isin(literal.status[1], (*FAILING, INCONCLUSIVE)).all(), literal.status[1]
    assert np.isin(literal.status[2:], OK).all(), literal.status


# ---------------------------------------------------------------- what the rewrite leaves alone
def test_the_display_view_and_explanations_keep_the_formula_as_written():
    from symgrad.report import gradient_formulas, model_formulas
    model = _ce()
    assert model.graph.rewrites == ("log-sum-exp",)
    assert len(model.display_graph.nodes) == 1
    shown = model.display_graph.output.expr
    assert not shown.has(sp.Max) and shown.has(sp.log) and shown.has(sp.exp)
    assert len(model.written_graph.nodes) == 1 and model.written_graph.output.expr == shown
    text = sg.explain(model).markdown()
    assert "max" not in text.lower() and "logsumexp" not in text.lower()
    forward = " ".join(f.latex for f in model_formulas(model))
    assert "max" not in forward.lower()
    sections = dict(gradient_formulas(model))
    computed = sections["As computed (the gradient program symgrad derives and runs)"]
    notes = " ".join(f.note or "" for f in computed)
    assert "symgrad runs the stable form of the loss" in notes
    assert all("stable form" not in (f.note or "") for s, fs in sections.items()
               if s.startswith("Textbook") for f in fs)


def _broken_bce():
    """The BCE model built while the softplus rule is not an identity (softplus + 1e-9)."""
    original = stable.Rewriter.softplus

    def broken(self, t):
        return original(self, t) + sp.Rational(1, 10**9)
    stable.Rewriter.softplus = broken
    try:
        return _bce()
    finally:
        stable.Rewriter.softplus = original


def test_the_oracle_checks_the_rewrite_itself():
    """Meant to fail: a rule that were not an identity (softplus + 1e-9) is caught, because
    the oracle evaluates the formula as written, not the rewritten program (the tensor
    program's oracle checks its rewrite against ``written_program`` in balls)."""
    r = sg.verify(_broken_bce(), at={k: v[4:] for k, v in BCE_AT.items()}, backends=OWN)
    assert not r.ok and {f.output for f in r.failures} == {"value"}


def test_a_correct_rewrite_is_certified_on_every_sample():
    """The tensor program's rewrite check on a correct rule: every entry where the formula as
    written is defined agrees with the stable program's oracle, none is replaced or open, and
    the bits it needed are reported as the scalar oracle's (the cancelling 1 - p at w x = 152
    needs more than 128)."""
    tm = to_program(_bce())
    assert tm.written_program is not None
    r = sg.verify(tm, at=BCE_AT, backends=OWN)
    assert r.ok, str(r)
    assert r.oracle_bits["max"] > 128 and r.oracle_bits["uncertain_entries"] == 0
    assert sum(r.oracle_bits["distribution"].values()) == len(BCE_AT["w"])


def test_the_log_sum_exp_shift_gives_each_tied_logit_one_half():
    """m = max(z0, z1) shifts the log-sum-exp; the derived program's gradient does not depend on
    the shift's own derivative: at a tie each logit gets exactly 1/2 in numpy and torch."""
    model = _ce()
    r = sg.verify(model, at={"z0": [0.0, 7.0], "z1": [0.0, 7.0]}, backends=OWN)
    for name in OWN:
        got = r.comparisons[name].got
        np.testing.assert_allclose(got[:, 1:], [[-0.5, 0.5], [-0.5, 0.5]], rtol=2.3e-16)
    assert r.ok and not r.kinks


def test_expm1_and_log1p_keep_small_arguments_accurate():
    """(exp(t) - 1) w x at t = 1e-9 and log(1 + w x) at w x = 1e-10: the own programs run
    expm1 / log1p and are accurate to a few ULPs (the literal forms lose ~8 and ~6 digits)."""
    t, w, x = sp.symbols("t w x")
    m = sg.Model("expm1", (sp.exp(t) - 1) * w * x + sp.log(1 + w * x), params=[t, w],
                 inputs=[x])
    assert set(m.graph.rewrites) == {"expm1", "log1p"}
    r = sg.verify(m, at={"t": [1e-9, 3e-9], "w": [1e-10, 2.0], "x": [1.0, 0.5]}, backends=OWN)
    _assert_within_bound(r)
    for name in OWN:
        assert r.comparisons[name].ulps.max() < 8, (name, r.comparisons[name].ulps)


def _without_rewrites(monkeypatch, name):
    class Identity:
        applied = ()

        def __call__(self, e):
            return e
    with monkeypatch.context() as mp:
        mp.setattr("symgrad.model.Rewriter", Identity)
        return zoo.get(name)


@pytest.mark.parametrize("name", ["neuron", "simplenet", "gpt_cross_entropy", "chain_rule",
                                  "gpt_softmax"])
def test_a_model_without_the_patterns_generates_the_same_program(monkeypatch, name):
    before = _without_rewrites(monkeypatch, name)
    after = zoo.get(name)
    assert after.graph.rewrites == ()
    def steps(model):  # the derived tensor program's nodes, #ids and object addresses left out
        return [re.sub(r"#\d+|0x[0-9a-f]+", "#",
                       f"{n.op} {n.shape} {n.name} {sorted(n.attrs.items())}")
                for n in to_program(model).gradient.nodes]
    assert steps(before) == steps(after), name
    ra = sg.verify(before, samples=20, seed=3, backends=OWN)
    rb = sg.verify(after, samples=20, seed=3, backends=OWN)
    for backend in OWN:
        np.testing.assert_array_equal(ra.comparisons[backend].got, rb.comparisons[backend].got)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_plain_sigmoid_has_a_finite_derivative_in_saturation(dtype):
    """(1/(1 + exp(-w x)) - y)^2 at w x = -152 and -800: sympy's derivative
    exp(-wx)/(1 + exp(-wx))^2 is inf/inf; the sigmoid step's s (1 - s) is not."""
    m = sg.Model("mse_sigmoid", (1 / (1 + sp.exp(-W * X)) - Y) ** 2, params=[W], inputs=[X, Y])
    assert m.graph.rewrites == ("sigmoid",)
    r = sg.verify(m, at={"w": [-152.0, -800.0, 152.0, 0.5, 30.0, 40.0], "x": [1.0] * 6,
                         "y": [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]}, dtype=dtype, backends=OWN)
    _assert_within_bound(r)
    if dtype == "float64":  # d/dw = 2 s^2 sigmoid(-wx) ~ 2e-13, 8e-18: torch's s (1 - s) gives
        for name in OWN:    # 1 - s = 0 here; exp(-softplus(-t)) keeps it to a few ULPs
            c = r.comparisons[name]
            assert (c.status[4:] == OK).all() and c.ulps[4:].max() < 8, (name, c.ulps)


def _own_torch_second_derivative(model: sg.Model, name: str, at: float) -> tuple[float, float]:
    """d/dw and d2/dw2 of the loss by torch autograd (double backward) of symgrad's own torch
    program of ``model`` (its tensor program under the torch table, as the torch view runs it)."""
    program = to_program(model)
    w = torch.tensor([at], dtype=torch.float64, requires_grad=True)
    leaves = {b.name: w if b.name == name else torch.ones(1, dtype=torch.float64)
              for b in program.blocks}
    loss = evaluate([program.loss], TorchOps("float64"), leaves)[0].sum()
    (g,) = torch.autograd.grad(loss, w, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), w)
    return g.item(), h.item()


def test_own_torch_program_of_the_stable_softplus_is_twice_differentiable_at_zero():
    """The stable rewrite of log(1 + e^w) (symgrad.stable): softplus'(0) = 1/2 and
    softplus''(0) = sigma'(0) = 1/4 exactly, by torch's double backward of symgrad's own
    program (the form max(w, 0) + log1p(e^-|w|) gave 1/4 -> 0: abs'(0) = 0 in autograd)."""
    w = sp.Symbol("w", real=True)
    got = _own_torch_second_derivative(sg.Model("softplus", sp.log(1 + sp.exp(w)), params=[w]),
                                       "w", 0.0)
    assert got == (0.5, 0.25), got
    for z in (-3.0, 2.5):  # and the same function off 0: sigma(z), sigma(z) sigma(-z)
        s = 1 / (1 + np.exp(-z))
        g, h = _own_torch_second_derivative(
            sg.Model("softplus", sp.log(1 + sp.exp(w)), params=[w]), "w", z)
        assert g == pytest.approx(s, rel=1e-15) and h == pytest.approx(s * (1 - s), rel=1e-14)


def test_order_2_of_the_plain_bce_at_a_zero_logit_passes():
    """H v of the plain BCE at w = 0 (the gate's "hvp stable rewrite of a plain BCE"): the own
    programs' double backward is sigma'(0) x v, within its bound, on numpy and torch."""
    r = sg.verify(_bce(), order=2, at=BCE_AT, seed=0, backends=OWN)
    for name in OWN:
        c = r.comparisons[name]
        assert not np.isin(c.status, FAILING).any(), (name, c.status, c.got, c.expected)
    assert r.comparisons["torch"].expected[5, 1] == pytest.approx(-0.24044197542958873)
    assert r.verdict == "pass", r.verdict
