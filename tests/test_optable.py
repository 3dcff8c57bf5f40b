"""The op table's helper test (like tinygrad's ``helper_test_op``): every entry, one line each.

For each elementwise op: (a) sympy.diff of its stable formula is its backward rule, and its
textbook form (and the form symgrad's own programs compute) is the same function, to 40 digits;
(b) the double-double walk evaluates it to ~30 digits against mpmath at large |x|, near 0 and
negative x; (c) torch's call (float64) matches the exact value; (d) ``sg.verify`` of a small
tensor program using it passes in float64 and float32, and a planted wrong backward
(``symgrad.testing.scale_backward``) is caught.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

import symgrad as sg
import symgrad.tensor as st
from symgrad.compare import Tolerance
from symgrad.errors import SymgradError
from symgrad.optable import OPS, X0, Y, resolve
from symgrad.precise import DD_OPS
from symgrad.tensor.model import TensorModel
from symgrad.tensor.program import X
from symgrad.testing import scale_backward

OPS_UNDER_TEST = [
    "relu",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "softplus",
    "logsigmoid",
    "gelu",
    "gelu_tanh",
    "mish",
    "silu",
    "softsign",
    "elu",
    "celu",
    "selu",
]
REAL = [-40.0, -7.5, -1.0, -1e-3, 1e-8, 0.3, 2.0, 9.0, 30.0]
POSITIVE = [1e-8, 1e-3, 0.3, 1.0, 7.0, 1e5]


def _points(e):
    return POSITIVE if e.domain == "pos" else REAL


def _exact(expr, x: float) -> mpmath.mpf:
    """The value at 450 digits (enough to survive 1 + erf(-28) and e^-800 cancelling)."""
    f = sp.lambdify(X0, expr, modules=["mpmath", {"log1p": mpmath.log1p}])
    with mpmath.workdps(450):
        return +f(mpmath.mpf(x))


def test_every_entry_is_tested():
    assert sorted(OPS_UNDER_TEST) == sorted(OPS)


@pytest.mark.parametrize("name", OPS_UNDER_TEST)
def test_backward_rule_and_textbook_form(name):
    e = OPS[name]
    assert X0 == X[0]
    diff = sp.diff(e.formula, X0)
    rule = e.backward.xreplace({Y: e.formula})
    for x in _points(e):
        if any(abs(x - k) < 1e-6 for k in e.kinks):
            continue
        with mpmath.workdps(50):
            for other in (e.staged, e.computed, rule):
                want = _exact(e.formula if other is not rule else diff, x)
                got = _exact(other, x)
                assert abs(got - want) <= mpmath.mpf(10) ** -40 * max(1, abs(want)), (name, x)


DD_GAPS: dict = {}  # op -> why its DD value is known to miss 30 digits (none today)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    reason=DD_GAPS[n], strict=True)) if n in DD_GAPS else n for n in OPS_UNDER_TEST])
def test_double_double_matches_mpmath(name):
    e = OPS[name]
    pts = np.array(_points(e))
    for form in (e.formula, e.computed):
        y = DD_OPS.map(form.xreplace({X0: X[0]}), {X[0]: DD_OPS.asarray(pts)})
        hi, lo = DD_OPS.to_float64(y)
        with mpmath.workdps(50):
            for x, h, l in zip(pts, hi, lo):
                want = _exact(e.formula, float(x))
                got = mpmath.mpf(float(h)) + mpmath.mpf(float(l))
                assert abs(got - want) <= mpmath.mpf(10) ** -29 * abs(want) + 1e-300, (name, x)


@pytest.mark.parametrize("name", OPS_UNDER_TEST)
def test_torch_call_matches_the_exact_value(name):
    e = OPS[name]
    # torch's softplus is x above 20; its GELU cancels in x (1 + erf) below -5 (3e-4 at -7.5)
    pts = [p for p in _points(e) if abs(p) <= 3]
    x = torch.tensor(pts, dtype=torch.float64)
    got = eval(e.torch, {"F": F, "torch": torch, "x": x})  # noqa: S307 - the table's own call
    for p, g in zip(pts, got.tolist()):
        want = float(_exact(e.formula, p))
        assert abs(g - want) <= 8 * np.finfo(np.float64).eps * abs(want) + 1e-300, (name, p, g)


def _model(e, torch_factor: float = 1.0):
    domain = sg.Uniform(0.2, 4) if e.domain == "pos" else sg.Uniform(-4, 4)
    x = st.param("x", (5,), domain)
    w = st.const(np.linspace(0.5, 1.5, 5), "w")
    fn = getattr(st, e.public)
    y = fn(x, *e.options[:1]) if e.family else fn(x)
    model = TensorModel(f"op_{e.name}", st.sum_(y * w))

    def reference(x):
        x = scale_backward(x, torch_factor) if torch_factor != 1.0 else x
        out = eval(e.torch, {"F": F, "torch": torch, "x": x})  # noqa: S307
        return (out * torch.as_tensor(np.linspace(0.5, 1.5, 5), dtype=x.dtype)).sum()
    return model, reference


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OPS_UNDER_TEST)
def test_verify_passes_and_a_wrong_backward_is_caught(name, dtype):
    e = OPS[name]
    cfg = sg.VerifyConfig(samples=6, seed=0, dtype=dtype,
                          tolerance=Tolerance(entry_bound="worst"))
    model, _ = _model(e)  # symgrad's own numpy and torch programs of the op: correct code
    good = sg.verify(model, config=cfg)  # (torch's own sigmoid'/tanh' from the rounded output
    assert good.verdict == "pass", str(good)  # are catalogue findings: not asserted here)
    _, wrong = _model(e, 1 + (1e-6 if dtype == "float64" else 1e-2))
    bad = sg.verify(model, torch_fn=wrong, config=cfg)
    assert bad.verdict == "fail", str(bad)


def test_family_options_are_the_same_on_every_side():
    """gelu(approximate=...) accepts tanh / erf / none on the scalar and the tensor side."""
    assert resolve("gelu", "none") is resolve("gelu", "erf") is OPS["gelu"]
    assert resolve("gelu") is OPS["gelu_tanh"]
    x = st.param("x", (2,))
    M = sg.matrix("M", 1, 1)
    for option in ("tanh", "erf", "none"):
        entry = resolve("gelu", option)
        assert st.gelu(x, option).attrs["expr"] == entry.computed.xreplace({X0: X[0]})
        assert st.gelu(x, approximate=option).attrs["expr"] == entry.computed.xreplace({X0: X[0]})
        sg.ops.gelu(M, approximate=option)
    for bad in (lambda: st.gelu(x, "fast"), lambda: sg.ops.gelu(M, approximate="fast")):
        with pytest.raises(SymgradError, match="approximate='fast'; choose 'none' or 'erf' or "
                                               "'tanh'"):
            bad()


def test_every_entry_is_exposed_and_catalogued():
    from symgrad.opcatalog.table import by_name
    for e in OPS.values():
        assert callable(getattr(sg.ops, e.public)) and callable(getattr(st, e.public))
        row = by_name(e.name)
        assert row.call == e.torch and row.define(X0) == e.formula


def test_named_entries_print_by_name_in_notation():
    """sg.ops.mish(z) is explained as mish(z) (LaTeX and MathML), differentiated by its rule."""
    from symgrad.present.notation import latex, mathml
    z = sp.Symbol("z", real=True)
    for e in OPS.values():
        if not e.named:
            continue
        shown = getattr(sg.ops, e.public)(z * 2, label="h").shown
        assert latex(shown).startswith(e.latex + r"\left(")
        assert f"<mi>{e.mathml}</mi>" in mathml(shown)
        u = shown.args[0]
        d = sp.diff(shown, u).subs(u, sp.Rational(3, 10))
        want = sp.diff(e.formula, X0).subs(X0, sp.Rational(3, 10))
        assert abs(sp.N(d - want, 40)) < 1e-35


def test_named_entries_have_a_layer_rule_in_explain():
    """A layer of sg.ops.mish in a matrix model is explained as r = mish(h), delta_h =
    delta_r o mish'(h) (from the entry), not left without a backward line."""
    x, W, W2, t = sg.matrix("x", 3), sg.matrix("W", 2, 3), sg.matrix("W2", 1, 2), sp.Symbol("t")
    for e in OPS.values():
        if not e.named:
            continue
        r = getattr(sg.ops, e.public)(sg.ops.linear(x, W, label="h"), label="r")
        a = sg.ops.sigmoid(sg.ops.linear(r, W2, label="z"), label="a")
        m = sg.Model(f"{e.name}net", sg.ops.bce(a[0, 0], t, label="L"), params=[W, W2],
                     inputs={x: sg.Normal(), t: sg.Choice([0.0, 1.0])})
        text = sg.explain(m).markdown()
        assert rf"r = {e.latex}\left(h\right)" in text
        assert rf"\delta_{{h}} = \delta_{{r}} \circ {e.latex}'(h)" in text


@pytest.mark.parametrize("name", [n for n in OPS_UNDER_TEST if OPS[n].kinks])
def test_declared_subgradients_are_the_one_sided_derivatives(name):
    """Each kink's declared [left, right] derivative is the formula's own one-sided limit
    (the row's ``subgradients`` were read by nothing, so a wrong pair passed unseen)."""
    e = OPS[name]
    assert len(e.subgradients) == len(e.kinks), name
    d = sp.diff(e.formula, X0)  # at 1e-60 beside the kink, in 450 digits (sympy's limit of
    for k, (left, right) in zip(e.kinks, e.subgradients):  # a Piecewise took the wrong branch)
        for step, want in ((-1e-60, left), (1e-60, right)):
            got = _exact(d, k + step)
            assert abs(got - want) <= 1e-12 * max(1, abs(want)), (name, k, step, got, want)
