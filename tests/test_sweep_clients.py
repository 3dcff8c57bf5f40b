"""scripts/sweep_clients.py, the false-alarm sweep of issue 18's real clients, on 2 clients x 2
seeds x float64/float32: the correct clients fail at no seed, and the same clients with a
planted wrong backward (conv1.weight's gradient x1.5 behind a max-pool; an MoE router whose
gradient is dropped) fail at every seed in float64 and at some seed in float32, so a clean
sweep is not a sweep that cannot fail. The report is written and names every run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "sweep_clients", Path(__file__).resolve().parents[1] / "scripts" / "sweep_clients.py")
script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(script)

SEEDS = range(2)


@pytest.mark.slow
@pytest.mark.parametrize("planted", [False, True], ids=["correct", "planted"])
@pytest.mark.parametrize("name", ["cnn-train", "moe-top2"])
def test_sweep_has_no_false_alarm_and_sees_a_planted_bug(name, planted):
    client = (script.PLANTED if planted else script.CLIENTS)[name]
    rows = {dtype: script.sweep(client, dtype, SEEDS) for dtype in script.DTYPES}
    for dtype, row in rows.items():
        assert row["seeds"] == len(SEEDS) and row["error"] == 0, row["runs"]
        if not planted:
            assert row["fail"] == 0, (dtype, row["runs"])
            assert row["pass"] + row["inconclusive"] == len(SEEDS)
            assert 0 <= row["worst_ratio"] <= 1, row
    if planted:
        assert rows["float64"]["fail"] == len(SEEDS), rows["float64"]["runs"]
        assert rows["float32"]["fail"] >= 1, rows["float32"]["runs"]
        found = rows["float64"]["runs"][0]["findings"][0]
        assert ("conv1.weight[" if name == "cnn-train" else "router.weight[") in found, found


def test_report_is_written_with_a_row_per_client_and_dtype(tmp_path):
    """The report set (md + json) on the cheapest client, one seed, no controls."""
    assert script.main(["--seeds", "1", "--only", "custom-function", "--planted-seeds", "0",
                        "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "sweep_clients.json").read_text())
    assert [(r["client"], r["dtype"]) for r in doc["rows"]] == [
        ("custom-function", d) for d in script.DTYPES]
    text = (tmp_path / "sweep_clients.md").read_text()
    assert "| custom-function | float64 | 1 |" in text and "## False alarms" in text
    for bad in (["--only", "no-such-client"], ["--dtypes", "float16"]):
        with pytest.raises(SystemExit):
            script.main([*bad, "--out", str(tmp_path)])


@pytest.mark.slow
def test_every_client_has_a_control_and_a_small_planted_error_is_caught():
    """Every correct client has a planted twin; a relative error of δ (1e-3 in float32) in one
    gradient, by a tensor hook (lstm) or in a custom Function's backward, fails the run, and
    Gain's factor is restored afterwards."""
    assert set(script.PLANTED) == set(script.CLIENTS)
    for name in ("lstm", "custom-function", "custom-function-gradcheck"):
        row = script.sweep(script.PLANTED[name], "float32", range(1))
        assert row["fail"] == 1, (name, row["runs"])
    assert script.C.Gain.factor == 1.0
    with pytest.raises(ValueError, match="planted parameter 'nope' is not in LSTMOut"):
        script._planted(script.C.LSTMOut(), "nope", "float32")


def test_an_inconclusive_run_says_which_entry_and_why(tmp_path):
    """cnn-train in float32 at seed 16 leaves one entry undecided (today's bound: a 2.4e-5
    gradient allowed 3.6e-5): the page names it and why. A tighter bound that decides it
    moves this test to another inconclusive seed of reports/sweep_clients.json."""
    assert script.main(["--seeds", "1", "--first-seed", "16", "--only", "cnn-train",
                        "--dtypes", "float32", "--planted-seeds", "0", "--out",
                        str(tmp_path)]) == 0
    run = json.loads((tmp_path / "sweep_clients.json").read_text())["rows"][0]["runs"][0]
    assert run["verdict"] == "inconclusive" and "conv1.weight[" in run["undecided_example"]
    text = (tmp_path / "sweep_clients.md").read_text()
    assert "## Why runs are inconclusive" in text
    assert "cnn-train float32 seed 16 (1 of 412 entries)" in text and "float32 cannot" in text
