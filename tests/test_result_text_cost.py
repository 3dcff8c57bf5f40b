"""str(result) of a large result that was not streamed (issue 19: "the text output must not lag
the JSON"): its figures are read in one chunked pass over the entries (``SCAN_FROM``), a
finding's measure from its own column - never a pass over every entry per finding, never the
per-entry figures held whole. Counted in entries measured (no timed assertion)."""

import dataclasses

import pytest
import torch

import symgrad as sg
import symgrad.measures as measures_mod
import symgrad.tensor as st
from symgrad.tensor.model import TensorModel
from symgrad.testing import scale_backward
from tests.clients import batchnorm_bias_case


@pytest.fixture(scope="module")
def planted():
    """tanh(W x) summed, W (40, 50), its backward x 2 in the user's code: thousands of failing
    entries, precision-loss warnings in symgrad's own programs, three backends; measured whole
    (its size is below SCAN_FROM)."""
    W, x = st.param("W", (40, 50)), st.input("x", (50,))
    model = TensorModel("wide", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))

    def wrong(W, x):
        return torch.tanh(scale_backward(W, 2.0) @ x).sum()
    r = sg.verify(model, torch_fn=wrong, samples=3, seed=0)
    assert r.verdict == "fail" and len(r.failures) >= 5 and r.precision_losses
    return r


def _counting(monkeypatch):
    """Count the entries the module's ``measures`` computes, call by call."""
    seen = []
    real = measures_mod.measures

    def counted(comp, config, cols=slice(None)):
        seen.append(comp.status[:, cols].size)
        return real(comp, config, cols)
    monkeypatch.setattr(measures_mod, "measures", counted)
    return seen


def test_text_of_a_large_result_measures_each_entry_once(planted, monkeypatch):
    whole_text = str(planted)
    fresh = dataclasses.replace(planted)  # the same result, nothing memoised
    monkeypatch.setattr(measures_mod, "SCAN_FROM", 0)  # read as a large one
    monkeypatch.setattr(measures_mod, "MEASURE_CHUNK", 211)  # a few columns per chunk
    seen = _counting(monkeypatch)
    assert str(fresh) == whole_text  # the same text, number for number
    entries = sum(c.status.size for c in fresh.comparisons.values())
    rows = len(fresh.oracle_samples)
    listed = (len(fresh.failures) + len(fresh.precision_losses) + len(fresh.kinks)
              + len(fresh.undecided))
    # one pass over every backend's entries, then one column per finding shown or sorted;
    # a text path linear per finding in the entry count measures `listed` x entries
    assert sum(seen) <= entries + 2 * listed * rows, (sum(seen), entries, listed)
    assert listed * entries > 4 * (entries + 2 * listed * rows)  # the bound could see that
    assert max(seen) <= max(211, rows)  # no call measured more than a chunk (or a column)
    assert not any(k[0] == "measures" for k in fresh._memo)  # nothing held whole
    # asked again: every figure memoised, nothing measured
    seen.clear()
    assert str(fresh) == whole_text and not seen


def test_the_json_of_a_large_result_is_unchanged_by_the_scan(planted, monkeypatch):
    whole = planted.as_dict()
    fresh = dataclasses.replace(planted)
    monkeypatch.setattr(measures_mod, "SCAN_FROM", 0)
    monkeypatch.setattr(measures_mod, "MEASURE_CHUNK", 211)
    assert fresh.as_dict() == whole  # medians below MEASURE_WHOLE stay float64, exact


def test_a_result_below_scan_from_is_still_measured_whole(planted):
    fresh = dataclasses.replace(planted)
    str(fresh)
    assert any(k[0] == "measures" for k in fresh._memo)  # one whole pass, kept


def _precision_loss_results():
    """Two results: one with precision-loss entries that lose (the value row reads "ok
    (precision loss)"), one with exact zeros that lose nothing at their terms' scale
    (train-mode BatchNorm's bias: the row reads "ok")."""
    import sympy as sp
    w = sp.Symbol("w")
    loses = sg.verify(sg.Model("sq", (1 + w * 1e-9) ** 2 - 1, params=[w]), samples=40, seed=0)
    net, x = batchnorm_bias_case()
    zero = sg.verify(module=net, inputs=x, train=True, samples=4)
    return loses, zero


def test_precision_loss_rows_read_the_same_from_the_scan(monkeypatch):
    loses, zero = _precision_loss_results()
    assert loses.rows()[0]["verdict"] == "ok (precision loss)"
    assert all(row["verdict"] == "ok" for row in zero.rows())
    whole = [str(loses), str(zero)]
    monkeypatch.setattr(measures_mod, "SCAN_FROM", 0)
    monkeypatch.setattr(measures_mod, "MEASURE_CHUNK", 7)
    fresh = [dataclasses.replace(r) for r in (loses, zero)]
    assert [str(r) for r in fresh] == whole
    assert all(("stats", name, 0, 1) in r._memo for r in fresh for name in r.comparisons)
