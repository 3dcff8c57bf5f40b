"""The same-verdict gate (issue 17): old scalar pipeline vs the tensor program built by
``symgrad.tensor.front.to_program``, on every case of tests/gate_cases.py.

- same verdict on every row without a known reason; the rows that differ today are
  ``xfail(strict=True)`` with their reason (a row that starts to agree must leave ``KNOWN``);
- a planted bug the old path catches never passes on the new path (no xfail, except the
  ones in ``MISSED_BY_NEW``: known blockers of the switch, strict so that a fix is seen);
- tensor = sympy.diff to 40 digits: each zoo model's tensor gradient program, evaluated in
  60-digit mpmath, equals sympy.diff of the scalar loss at a few points.
scripts/gate.py writes the same table into reports/gate.md.
"""

from __future__ import annotations

import sys

import mpmath
import numpy as np
import pytest
import sympy as sp

from symgrad import zoo
from symgrad.tensor.front import to_program
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import MpmathOps
from tests.gate_cases import BY_ID, CASES, KNOWN, MISSED_BY_NEW, SLOW, Row, run_case

_ROWS: dict[str, Row] = {}


def _row(case) -> Row:
    if case.id not in _ROWS:
        _ROWS[case.id] = run_case(case)
    return _ROWS[case.id]


def _marks(case, xfail: bool) -> list:
    marks = [pytest.mark.slow] if case.id in SLOW else []
    if (xfail and case.id in KNOWN) or case.id in MISSED_BY_NEW:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[case.id]))
    return marks


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c, True))
                                  for c in CASES])
def test_same_verdict_old_and_new(case):
    r = _row(case)
    assert r.old == r.new, (f"{case.id}: old {r.old}, new {r.new} "
                            f"(worst error/allowance {r.ratio_old:.3g} vs {r.ratio_new:.3g}) "
                            f"{r.error_new}")


PLANTED = [c for c in CASES if c.planted]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c, False))
                                  for c in PLANTED])
def test_planted_bug_caught_by_old_never_passes_on_new(case):
    r = _row(case)
    assert r.old == "fail", f"{case.id}: the old path no longer catches it ({r.old})"
    assert r.new != "pass", f"{case.id}: caught by the old path, passed by the new one"


NAMED = [c for c in CASES if c.cause]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c, True))
                                  for c in NAMED])
def test_same_named_cause_old_and_new(case):
    """A catalogued torch behaviour (symgrad.causes) is named alike on both paths: the same
    causes for the failures, and the case's cause among them."""
    r = _row(case)
    assert r.old == r.new == "fail", f"{case.id}: old {r.old}, new {r.new} {r.error_new}"
    assert r.cause_old == r.cause_new, f"{case.id}: old {r.cause_old!r}, new {r.cause_new!r}"
    assert case.cause in {c.split(": ")[-1] for c in r.cause_new.split("; ")}, r.cause_new


def test_the_old_column_runs_the_scalar_pipeline_whatever_the_default(monkeypatch):
    """The gate compares two pipelines: its old column is pinned to the scalar one (the
    environment asking for the program, as the default does, changes nothing there), its new
    column is the tensor program; the pin is gone after the case."""
    verify_mod = sys.modules["symgrad.verify"]  # the attribute symgrad.verify is the function
    seen = []
    real = verify_mod.verify_tensor
    monkeypatch.setattr(verify_mod, "verify_tensor",
                        lambda model, **kw: seen.append(model.name) or real(model, **kw))
    monkeypatch.setenv("SYMGRAD_PIPELINE", "program")
    r = run_case(BY_ID["zoo neuron float64"])
    assert r.old == r.new == "pass" and seen == ["neuron"]  # the new column only
    assert verify_mod._pipeline() == "program"


def test_gate_has_every_scalar_zoo_model_and_suite():
    names = {c.id.split()[1] for c in CASES if c.suite == "zoo"}
    assert names == {n for n in zoo.names() if n != "tiny_gpt"}
    assert {c.suite for c in CASES} == {"zoo", "planted bug", "correct twin", "false alarm",
                                        "named cause"}
    assert set(KNOWN) <= {c.id for c in CASES} and set(SLOW) <= {c.id for c in CASES}


# ------------------------------------------------------------ tensor = sympy.diff to 40 digits
DPS = 60
ZOO = [n for n in zoo.names() if n != "tiny_gpt"]


def _sympy_gradient(model, point: dict) -> list:
    """Loss and d loss / d param of the scalar loss at 60 digits: sympy.diff of the expanded
    loss for small models; for the others sympy.diff of every step (its local derivatives)
    chained in reverse, at the point (the expanded attention loss takes minutes to diff)."""
    val = {model.real[s]: sp.Float(float(v), DPS)
           for b in model.blocks for s, v in zip(b.symbols, np.ravel(point[b.name]))}
    if len(model.params) <= 8:
        loss = model.graph.expand()
        return [sp.N(e.xreplace(val), DPS)
                for e in [loss] + [sp.diff(loss, p) for p in model.params]]
    for n in model.graph.nodes:
        val[n.symbol] = sp.N(n.expr.xreplace(val), DPS)
    adj = {model.graph.output.symbol: sp.Float(1, DPS)}
    for n in reversed(model.graph.nodes):
        a = adj.pop(n.symbol, None)
        if a is None:
            continue
        for s in n.operands:
            d = sp.N(sp.diff(n.expr, s).xreplace(val), DPS)
            adj[s] = adj.get(s, 0) + a * d
    return [val[model.graph.output.symbol]] + [sp.N(adj.get(p, 0), DPS) for p in model.params]


@pytest.mark.parametrize("name", ZOO)
def test_tensor_gradient_equals_sympy_diff_to_40_digits(name):
    model = zoo.get(name)
    program = to_program(model)
    values = program.draw(2, np.random.default_rng(7), "float64")
    for s in range(2):
        one = {k: v[s:s + 1] for k, v in values.items()}
        outs = evaluate(program.gradient.outputs, MpmathOps(DPS), one)
        got = [v for o in outs for v in np.asarray(o, dtype=object).reshape(-1)]
        want = _sympy_gradient(model, {k: v[0] for k, v in one.items()})
        assert len(got) == len(want) == 1 + program.n_parameters
        with mpmath.workdps(DPS):
            for i, (g, w) in enumerate(zip(got, want)):
                w = mpmath.mpf(str(w))
                scale = max(abs(w), mpmath.mpf(1))
                assert abs(g - w) <= scale * mpmath.mpf(10) ** -40, (name, s, i, g, w)
