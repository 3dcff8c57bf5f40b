import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import Choice, Integers, LogUniform, Normal, SymgradError, Uniform
from symgrad.cli import main
from symgrad.domains import UndefinedOnDomain


@pytest.mark.parametrize("domain", [Normal(1, 2), Uniform(-3, 3), LogUniform(1e-3, 1e3),
                                    Choice([0.0, 1.0]), Integers(0, 7)])
def test_same_seed_same_draws(domain):
    a = domain.sample(np.random.default_rng(5), (4, 3))
    b = domain.sample(np.random.default_rng(5), (4, 3))
    assert a.shape == (4, 3) and np.array_equal(a, b)


def test_draws_respect_domains():
    rng = np.random.default_rng(0)
    assert np.all((Uniform(-3, 3).sample(rng, (1000,)) >= -3))
    lu = LogUniform(1e-3, 1e3).sample(rng, (1000,))
    assert lu.min() > 0 and lu.max() < 1e3
    assert set(Choice([0.0, 1.0]).sample(rng, (100,))) <= {0.0, 1.0}
    ints = Integers(2, 4).sample(rng, (1000,))
    assert set(ints) == {2.0, 3.0, 4.0} and Integers.integer


@pytest.mark.parametrize("make, match", [
    (lambda: Normal(0, -1), "std must be"),
    (lambda: Uniform(1, 1), "low must be < high"),
    (lambda: LogUniform(-1, 1), "0 < low < high"),
    (lambda: Choice([]), "at least one value"),
    (lambda: Integers(3, 2), "low must be <= high"),
])
def test_bad_domains_are_named(make, match):
    with pytest.raises(SymgradError, match=match):
        make()


def _logwx(low: float) -> sg.Model:
    w, x = sp.symbols("w x")
    return sg.Model("logwx", sp.log(w * x), params={w: sg.Uniform(0.5, 2)},
                    inputs={x: sg.Uniform(low, 1)})


def test_a_model_undefined_on_its_declared_domain_is_refused_in_one_line():
    """Meant to fail before (newuser5): log(w x) with x ~ Uniform(-1, 1) ended FAIL while every
    line said "not a backend error". The oracle proves the loss undefined at drawn samples:
    one line naming the step, the sample and the declared domains; never a verdict."""
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(_logwx(-1.0), samples=20, seed=0)
    assert isinstance(err.value, UndefinedOnDomain)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith("model 'logwx' is undefined on its declared domains: log(w*x) is "
                          "undefined at sample "), msg
    assert "x ~ Uniform(low=-1.0, high=1)" in msg and "w ~ Uniform(low=0.5, high=2)" in msg
    assert "narrow those domains" in msg and "at=" in msg


def test_a_model_defined_on_its_declared_domain_is_verified():
    r = sg.verify(_logwx(0.1), samples=20, seed=0)
    assert r.ok, r


def test_a_chosen_point_outside_the_domain_is_not_refused_and_never_ok():
    """at= is the user's point: a "domain" entry there (the model's own domain), no refusal."""
    r = sg.verify(_logwx(-1.0), at={"w": np.array([1.0, 1.0]), "x": np.array([-0.5, 0.5])})
    assert not r.ok and {(f.kind, f.sample) for f in r.failures} == {("domain", 0)}


def _max_branch_model():
    """log(Max(-1, sqrt(x))): the kink sides' branch Max = -1 holds sympy's log(-1) = I*pi, a
    constant undefined on the reals (never the side taken where the model is defined)."""
    w, x = sp.symbols("w x")
    return sg.Model("maxlog", w / sp.log(sp.Max(-1, sp.sqrt(x))), params=[w],
                    inputs={x: Normal()})


def test_a_complex_constant_in_a_kink_branch_is_undefined_not_a_refusal():
    """Meant to fail before (gate33, fuzz draws 546 and 816 of seed 0): where a sample is
    undefined the oracle re-evaluates its row in balls, every Piecewise branch included, and
    the branch Max = -1 (log(-1) = I*pi) refused the whole model ("ARB map: constant -I/pi is
    not real"; the old scalar pipeline verified it). A non-real constant is NaN under the
    oracle's real semantics, as log of a negative entry is: at= reports the undefined point
    as domain and the defined one ok; drawn samples are refused as undefined, in one line."""
    r = sg.verify(_max_branch_model(), at={"w": [0.5, 0.5], "x": [-1.0, 0.25]})
    assert {(f.kind, f.sample) for f in r.failures} == {("domain", 0)}, r
    assert r.counts("numpy")["ok"] == 2, r  # sample 1 (x = 1/4): value and d/dw
    with pytest.raises(UndefinedOnDomain, match="log.Max.-1, sqrt.x...."):
        sg.verify(_max_branch_model(), samples=20, seed=546)


def test_the_cli_answers_an_undefined_model_as_bad_input(tmp_path, monkeypatch, capsys):
    (tmp_path / "undefmodel.py").write_text(
        "import sympy as sp, symgrad as sg\n"
        "w, x = sp.symbols('w x')\n"
        "def logwx():\n"
        "    return sg.Model('logwx', sp.log(w * x), params={w: sg.Uniform(0.5, 2)},\n"
        "                    inputs={x: sg.Uniform(-1, 1)})\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "undefmodel:logwx", "--samples", "10"]) == 2
    err = capsys.readouterr().err
    assert "is undefined on its declared domains: log(w*x)" in err, err


def _over_a_max_difference():
    """Fuzz draw 741 of seed 0: the divisor x - Max(0, x) is exactly 0 at every x > 0."""
    v, x = sp.symbols("v x")
    return sg.Model("fuzz741", sp.Max(sp.Rational(-3, 2), sp.cos(sp.Max(v, x)))
                    / (x - sp.Max(0, x)), params=[v], inputs={x: Normal()})


def test_a_division_by_an_exact_zero_through_max_is_proven_undefined():
    """Meant to fail before (honest34; reports/gate_history.md, fuzz 741): the balls' divisor
    x - Max(0, x) at an exact x > 0 is an exact 0, but the dividend's ball (a cosine) is not
    exact, so the NaN was counted unproven and the model's undefined samples stayed
    inconclusive ('not certified by ARB balls at 2048 bits'). A divisor ball of radius 0 at 0
    proves it (``arbdomain.RULES['div']``): refused in one line, as the scalar path had it
    (domain); a divisor ball about 0 that more bits may resolve stays unproven."""
    from symgrad.precise.arbdomain import DomainWatch, watched
    with pytest.raises(UndefinedOnDomain, match=r"7 of 20 samples undefined"):
        sg.verify(_over_a_max_difference(), samples=20, seed=741)
    x = sp.Symbol("x")
    w = DomainWatch()
    ops = watched(128, w)
    ops.map(sp.cos(x) / (x - sp.Max(0, x)), {x: ops.asarray(np.array([0.7, -0.7]))})
    assert (w.n_proven, w.unproven) == (1, 0)
    w = DomainWatch()
    ops = watched(128, w)  # 1 - sigmoid(1000) is a ball about 0 at 128 bits, not exactly 0
    s = ops.map(1 - 1 / (1 + sp.exp(-x)), {x: ops.asarray(np.array([1000.0]))})
    ops.map(1 / x, {x: s})
    assert (w.n_proven, w.unproven) == (0, 1)


def test_the_same_division_where_it_is_defined_is_verified():
    """Correct code where the divisor is not 0 (x < 0: x - Max(0, x) = x): numpy, torch ok."""
    r = sg.verify(_over_a_max_difference(), at={"v": [0.3, -1.2], "x": [-0.5, -2.0]})
    assert r.ok and r.verdict == "pass", r
