"""symgrad's stable rewrites (symgrad.stable) on the program path (ported from
tests/test_stable.py before the scalar pipeline is deleted): the tensor program of a plain
``sg.Model`` runs the rewritten formula, and its oracle checks the rewrite against the formula
*as written* (``TensorModel.written_program``), so a rule that were not an identity is caught
(meant to fail) while the correct rules certify; the log-sum-exp shift is under stop-gradient;
a model without the patterns builds the same program as with the rewriter switched off."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad import stable, zoo
from symgrad.tensor.front import to_program
from symgrad.tensor.views import numpy_view, torch_view

OWN = ("numpy", "torch")
W, X, Y, Z0, Z1 = sp.symbols("w x y z0 z1")
P = 1 / (1 + sp.exp(-W * X))

# rule -> (a model that fires it, points, how the broken rule departs from an identity)
CASES = {
    "softplus": (lambda: sg.Model("bce", -(Y * sp.log(P) + (1 - Y) * sp.log(1 - P)),
                                  params=[W], inputs=[X, Y]),
                 {"w": [1.0, 0.0, 152.0], "x": [1.0, 1.0, 1.0], "y": [1.0, 0.0, 0.0]},
                 lambda original: lambda self, t: original(self, t) + sp.Rational(1, 10**9)),
    "logsumexp": (lambda: sg.Model("ce", -(Z0 - sp.log(sp.exp(Z0) + sp.exp(Z1))),
                                   params=[Z0, Z1]),
                  {"z0": [0.0, 1.0, -3.0], "z1": [200.0, -3.0, 90.0]},
                  lambda original: lambda self, xs: original(self, xs) + sp.Rational(1, 10**9)),
    "sigmoid": (lambda: sg.Model("mse_sigmoid", (P - Y) ** 2, params=[W], inputs=[X, Y]),
                {"w": [0.5, -3.0, 2.0], "x": [1.0, 1.0, 0.5], "y": [1.0, 0.0, 0.0]},
                lambda original: lambda self, t: original(self, t) * (1 + sp.Rational(1, 10**6))),
}

FIRES = {"softplus": "log-sigmoid", "logsumexp": "log-sum-exp", "sigmoid": "sigmoid"}  # the
# rule (symgrad.stable.RULES) whose step the Rewriter method builds in each case


def _at(points: dict) -> dict:
    return {k: np.array(v) for k, v in points.items()}


@pytest.mark.parametrize("rule", list(CASES))
def test_a_correct_rewrite_is_certified_against_the_formula_as_written(rule):
    build, points, _ = CASES[rule]
    model = build()
    assert FIRES[rule] in model.graph.rewrites
    tm = to_program(model)
    assert tm.written_program is not None
    r = sg.verify(tm, at=_at(points), backends=OWN)
    assert r.ok, str(r)
    assert r.oracle_bits["uncertain_entries"] == 0


@pytest.mark.parametrize("rule", list(CASES))
def test_a_rewrite_that_is_no_identity_is_caught(rule, monkeypatch):
    """Meant to fail: the model built while the rule is off by 1e-9 (1e-6 relative for the
    sigmoid): the program runs the broken formula, the oracle evaluates the formula as written,
    so the loss value disagrees."""
    build, points, broken = CASES[rule]
    with monkeypatch.context() as mp:
        mp.setattr(stable.Rewriter, rule, broken(getattr(stable.Rewriter, rule)))
        model = build()
    r = sg.verify(to_program(model), at=_at(points), backends=OWN)
    assert not r.ok and r.verdict == "fail"
    assert "value" in {f.output for f in r.failures}
    assert {f.backend for f in r.failures} == set(OWN)


def test_the_log_sum_exp_shift_is_under_stop_gradient():
    """m = max(z0, z1) in m + log(sum exp(z_i - m)) carries no gradient: at a tie each logit
    gets exactly -1/2 and 1/2 in the program's numpy and torch views (a shift that were
    differentiated would hand the max's subgradient on), and no kink is reported."""
    model = CASES["logsumexp"][0]()
    tm = to_program(model)
    vals = {"z0": np.array([0.0, 7.0]), "z1": np.array([0.0, 7.0])}
    for got in (numpy_view(tm, vals, "float64"),
                torch_view(tm, vals, dtype="float64", device="cpu")):
        assert got[:, 1:].tolist() == [[-0.5, 0.5], [-0.5, 0.5]]
    r = sg.verify(model, at=vals, backends=OWN)
    assert r.ok and not r.kinks, str(r)


class _Identity:
    """A rewriter that rewrites nothing (the model as written, for comparison)."""

    applied = ()

    def __call__(self, e):
        return e


@pytest.mark.parametrize("name", ["neuron", "simplenet", "gpt_cross_entropy", "chain_rule",
                                  "gpt_softmax"])
def test_a_model_without_the_patterns_builds_the_same_program(monkeypatch, name):
    """The zoo's models use no pattern (ops.* already are the stable forms): with the rewriter
    switched off their programs have the same size and compute bitwise the same values and
    gradients, in float64 and float32."""
    with monkeypatch.context() as mp:
        mp.setattr("symgrad.model.Rewriter", _Identity)
        before = to_program(zoo.get(name))
    after = to_program(zoo.get(name))
    assert zoo.get(name).graph.rewrites == ()
    assert len(before.gradient.outputs) == len(after.gradient.outputs)
    for dtype in ("float64", "float32"):
        vals = after.draw(8, np.random.default_rng(3), dtype)
        np.testing.assert_array_equal(numpy_view(before, vals, dtype),
                                      numpy_view(after, vals, dtype))
        np.testing.assert_array_equal(torch_view(before, vals, dtype=dtype, device="cpu"),
                                      torch_view(after, vals, dtype=dtype, device="cpu"))
