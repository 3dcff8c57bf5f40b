"""symgrad ops: the catalogue, planted wrong operators that must be caught, correct operators
that must pass, known torch behaviours that must show up with their names, the committed
report's reproducers, and the command line."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch

from symgrad.cli import main
from symgrad.errors import SymgradError
from symgrad.opcatalog import CATALOGUE, Arg, Op, OpsConfig, by_name, run_ops
from symgrad.opcatalog.build import first_order
from symgrad.opcatalog.inputs import samples
from symgrad.opcatalog.report import as_html, as_json, as_markdown, from_json, redraw, snippet, \
    table_rows
from symgrad.opcatalog.run import run_one

REPORT = Path(__file__).resolve().parent.parent / "reports" / "ops.json"
FAST = ("relu", "sigmoid", "exp", "log1p", "softplus", "hardsigmoid", "softmax", "layer_norm",
        "mse_loss", "cross_entropy")


def _timing():
    return {"derive_s": 0.0, "verify_s": 0.0, "gradcheck_s": 0.0}


def test_catalogue_covers_80_operators_and_lists_the_unsupported_with_why():
    supported = [op for op in CATALOGUE if not op.unsupported]
    assert len(supported) >= 80
    assert len({op.name for op in CATALOGUE}) == len(CATALOGUE)
    for op in CATALOGUE:
        assert (op.define is None) == bool(op.unsupported), op.name
    assert {"erfinv", "lgamma", "digamma"} <= {op.name for op in CATALOGUE if op.unsupported}
    with pytest.raises(SymgradError, match="unknown operator 'nope'"):
        by_name("nope")
    with pytest.raises(SymgradError, match="unknown operator 'sigmod'; did you mean 'sigmoid'"):
        by_name("sigmod")  # newuser4 S3-6: a typo got the whole list and no suggestion


def test_every_definition_matches_its_torch_call_in_value():
    """The documented formula (exact, via the oracle) and torch agree at a bulk point, through
    the read-out: a row with a wrong definition, shape or call fails here."""
    import symgrad as sg
    rng = np.random.default_rng(0)
    for op in CATALOGUE:
        if op.unsupported:
            continue
        built = first_order(op)
        at = samples(op, dtype="float64", budget=80, rng=rng)
        point = {a.name: at[a.name][75] for a in op.args}  # a bulk sample (edges come first)
        point["readout"] = (1.0 if built.out_size == 1
                            else np.linspace(0.5, 1.5, built.out_size))
        want = float(sg.exact_at(built.model, point)["value"])
        tensors = {k: torch.tensor(np.asarray(v), dtype=torch.long if k == "t" and
                                   by_name(op.name).args[-1].domain == "class3" else
                                   torch.float64) for k, v in point.items()}
        for a in op.args:
            if a.domain == "class3":
                tensors[a.name] = torch.tensor(int(point[a.name]))
        got = float(built.torch_fn(**tensors))
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), op.name


def test_fast_subset_has_no_unexplained_finding_and_names_known_behaviours():
    report = run_ops(OpsConfig(ops=FAST, dtypes=("float64", "float32"), budget=10,
                               gradcheck=False))
    assert report.ok, [(f.op, f.dtype, f.cause) for f in report.unexplained]
    causes = {(f.op, f.dtype, f.cause) for f in report.findings}
    assert ("softplus", "float64", "known torch convention: softplus threshold") in causes
    assert ("hardsigmoid", "float64",
            "real derivative error: hardsigmoid backward uses a float32 1/6") in causes
    ok = {(r.op, r.dtype) for r in report.rows if r.status == "ok"}
    for name in ("exp", "log1p", "mse_loss", "relu"):
        assert (name, "float64") in ok and (name, "float32") in ok, name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_operators_in_their_stable_range_are_never_flagged(dtype):
    for name in ("tanh", "exp", "sin", "erf", "log", "softsign", "atan"):
        op = by_name(name)
        bulk = Op(f"bulk_{name}_{dtype}", op.group, op.call, op.define,
                  (Arg("x", (), "small" if op.args[0].domain == "real" else op.args[0].domain),),
                  notes="bulk only")
        row = run_one(bulk, dtype, OpsConfig(budget=24, gradcheck=False), _timing())
        assert row.status == "ok", (name, [(f.cause, f.point) for f in row.findings])
        assert row.first.worst_ratio <= 1


def test_planted_wrong_gradient_is_caught():
    """sin with its gradient off by 1e-9 relative (value unchanged): a real derivative error."""
    op = Op("mutant_sin_grad", "elementwise",
            "torch.sin(x) + (x - x.detach()) * 1e-9 * torch.cos(x)", lambda x: sp.sin(x),
            (Arg("x", (), "small"),))
    row = run_one(op, "float64", OpsConfig(budget=16, gradcheck=True), _timing())
    assert row.status == "unexplained"
    f = next(f for f in row.findings if f.order == "gradient")
    assert f.output == "d/dx" and f.ulps > 1e5
    assert f.gradcheck_passes  # gradcheck (rtol 1e-3) cannot see it; symgrad does


def test_planted_wrong_second_derivative_is_caught():
    """Value and gradient exact, Hessian off by 1e-6: only the double-backward check sees it."""
    op = Op("mutant_sin_hess", "elementwise",
            "torch.sin(x) + 5e-7 * (x - x.detach()) ** 2", lambda x: sp.sin(x),
            (Arg("x", (), "small"),))
    row = run_one(op, "float64", OpsConfig(budget=16, gradcheck=False), _timing())
    assert not [f for f in row.findings if f.order == "gradient"]
    assert [f for f in row.findings if f.order == "hessian-vector" and not f.explained]


def test_bfloat16_allowance_comes_from_its_unit_roundoff():
    report = run_ops(OpsConfig(ops=("exp", "tanh", "mse_loss"), dtypes=("bfloat16",), budget=12,
                               gradcheck=False, second_order=False))
    assert report.ok, [(f.op, f.cause, f.point) for f in report.unexplained]
    row = report.rows[0]
    assert row.first.checked > 0 and row.first.worst_ratio <= 1


def test_snippet_reproduces_a_fresh_finding():
    report = run_ops(OpsConfig(ops=("softplus",), dtypes=("float64",), budget=10,
                               gradcheck=False, second_order=False))
    f = report.findings[0]
    ns: dict = {}
    exec(snippet(f), ns)  # noqa: S102 - our own generated reproducer
    assert ns["reproduced"]


def test_every_snippet_of_the_committed_report_reproduces():
    doc = json.loads(REPORT.read_text())
    assert doc["findings"], "the committed report has findings"
    for f in doc["findings"]:
        ns: dict = {}
        exec(f["snippet"], ns)  # noqa: S102 - the committed reproducer
        assert ns["reproduced"], (f["op"], f["dtype"], f["order"], f["cause"])


def test_cli_ops_writes_the_report_and_exit_codes(tmp_path, capsys):
    assert main(["ops", "--ops", "relu,exp", "--budget", "4", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "ops.json").read_text())
    assert {r["op"] for r in doc["rows"]} == {"relu", "exp"}
    assert (tmp_path / "ops.md").read_text().startswith("# Torch's operators")
    assert "<html" in (tmp_path / "ops.html").read_text()
    assert main(["ops", "--ops", "nope"]) == 2
    assert "unknown operator 'nope'" in capsys.readouterr().err
    assert main(["ops", "--dtype", "float8"]) == 2
    assert main(["ops", "--budget", "0"]) == 2


@pytest.mark.slow
def test_whole_catalogue_float64_has_no_unexplained_finding():
    report = run_ops(OpsConfig(dtypes=("float64",), budget=16))
    assert not [r for r in report.rows if r.status == "error"]
    assert report.ok, [(f.op, f.cause, f.point) for f in report.unexplained]


def _page_text(page: str) -> str:
    """The page's prose: code blocks and tags removed."""
    page = re.sub(r"<pre>.*?</pre>|<code>.*?</code>|<script>.*?</script>", "", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


def test_ops_page_renders_markdown_and_shows_the_table_first():
    report = from_json(json.loads(REPORT.read_text()))
    page = as_html(report, table_rows(report))
    assert page.index("<h2>Every operator</h2>") < page.index("<h2>Findings</h2>")
    assert page.index("<h2>Every operator</h2>") < page.index("<h2>Method</h2>")
    prose = _page_text(page)
    assert "`" not in prose, re.findall(r".{30}`.{30}", prose)[:3]
    assert not re.search(r"(?<![\w*])\*\w[^*]*\*(?![\w*])", prose)
    assert "<code>torch_fn</code>" in page and "<em>inconclusive</em>" in page
    md = as_markdown(report)
    assert md.index("## Every operator") < md.index("## Findings")


def test_a_run_s_pages_say_what_its_json_holds():
    """The Markdown written beside ops.json reads the timings as the JSON rounds them: a
    gradcheck_s of 15.3549 (15.35 in the JSON) read "15.4" in the page and "15.3" when drawn
    again from the JSON, so a regenerated catalogue failed the test below."""
    report = from_json(json.loads(REPORT.read_text()))
    report = replace(report, seconds=327.6249, timing={**report.timing, "gradcheck_s": 15.3549})
    again = from_json(json.loads(json.dumps(as_json(report))))
    assert as_markdown(report) == as_markdown(again)


def test_committed_ops_pages_are_drawn_from_the_committed_json(tmp_path):
    """ops.json round-trips into the report, and the committed pages are its current views."""
    (tmp_path / "ops.json").write_text(REPORT.read_text())
    md, page = redraw(tmp_path)
    assert page.read_text() == REPORT.with_suffix(".html").read_text()
    assert md.read_text() == REPORT.with_suffix(".md").read_text()
