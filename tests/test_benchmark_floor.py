"""scripts/benchmark_floor.py's recorder sees the GEMMs a verify runs (floor19): the oracle's
BLAS calls are those its DD products' Ozaki tiling makes, torch's are its module's, and a
product dropped changes the counts."""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import symgrad as sg
from symgrad.config import VerifyConfig
from symgrad.precise.dd import DD
from symgrad.precise.ozaki import OzakiConfig, dd_matmul
from symgrad.zoo import native_gpt
from symgrad.zoo.gpt2 import gpt2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark_floor as bf  # noqa: E402

TINY = {"n_layers": 1, "vocab_size": 64, "emb_dim": 16, "n_heads": 2, "context_length": 8}


@pytest.fixture(scope="module")
def recorded():
    model = gpt2(TINY, tokens=8)
    rec = bf.Recorder()
    with bf.recording(rec):
        result = sg.verify(model, torch_fn=model.reference,
                           config=VerifyConfig(samples=1, seed=0, dtype="float64"))
    return model, rec, result


def _calls(rec, phase, lib=None):
    return Counter(k[2] for k, n in rec.counts.items() for _ in range(n)
                   if k[0] == phase and (lib is None or k[1] == lib))


def test_the_oracles_blas_calls_are_its_dd_products_tiling(recorded):
    _, rec, result = recorded
    assert result.verdict == "pass"
    dd = {k: n for k, n in rec.dd.items() if k[0] == "oracle"}
    assert dd, "the oracle asked for no DD product"
    predicted = sum(bf.predicted_calls(*k[1:5], k[7]) * n for k, n in dd.items())
    assert _calls(rec, "oracle")["matmul"] == predicted > 0
    threads = {k[5] for k in rec.counts if k[0] == "oracle" and k[2] == "matmul"}
    assert threads <= {1, None}  # every slice product on one BLAS thread, as ozaki runs them
    assert _calls(rec, "bound")["einsum"] > 0  # the bound's |A||B| products


def test_torch_fn_gemms_are_the_modules(recorded):
    """The user's module, run once: each nn.Linear one GEMM forward and two backward (input and
    weight), each layer's attention two batched products forward and four backward."""
    model, rec, _ = recorded
    net = native_gpt.GPT(model.gpt_config)
    linears = sum(isinstance(m, torch.nn.Linear) for m in net.modules())
    assert linears > 0
    got = _calls(rec, "torch_fn")
    assert got["mm"] + got["addmm"] == 3 * linears
    assert got["bmm"] == 6 * TINY["n_layers"]
    assert sum(_calls(rec, "torch").values()) > 0  # the derived gradient on torch's tables


@pytest.mark.parametrize("slices", [2, 3])
def test_a_dropped_product_changes_the_counts(slices):
    """S = 2 runs one GEMM fewer per output sub-tile than S = 3: the recorder sees it, and
    ``predicted_calls`` follows ``ozaki``'s tiling at either."""
    rng = np.random.default_rng(0)
    a = DD(rng.standard_normal((1, 300, 70)), rng.standard_normal((1, 300, 70)) * 1e-17)
    b = DD(rng.standard_normal((1, 70, 90)))
    rec = bf.Recorder()
    with bf.recording(rec):
        dd_matmul(a, b, OzakiConfig(slices=slices))
    calls = sum(n for k, n in rec.counts.items() if k[2] == "matmul")
    per_tile = bf.predicted_calls(1, 300, 70, 90, slices) // (slices + 1)
    assert calls == bf.predicted_calls(1, 300, 70, 90, slices) == per_tile * (slices + 1)
    assert per_tile == 2  # 300 rows: sub-tiles of at most 256 rows
    assert type(np.matmul).__name__ == "ufunc"  # the wrappers are gone once the block ends


def test_scaled_counts_are_fixed_plus_per_layer():
    one = {"gemms": [[["oracle", "numpy", "matmul"], 5], [["bound", "numpy", "einsum"], 2]]}
    two = {"gemms": [[["oracle", "numpy", "matmul"], 8], [["bound", "numpy", "einsum"], 2]]}
    got = bf.scaled(one, two, 12, "gemms")
    assert got[("oracle", "numpy", "matmul")] == 2 + 12 * 3
    assert got[("bound", "numpy", "einsum")] == 2


def test_flops_and_replay_of_a_recorded_signature():
    key = ("oracle", "numpy", "matmul", ((1, 32, 48), (1, 48, 16)), ((1536, 48, 1), (768, 1, 48)),
           1, ("out", "()"))
    assert bf.flops_of(key) == (2 * 32 * 48 * 16, True)
    row, = bf.replay({key: 7}, seconds=0.001)
    assert row["count"] == 7 and row["cpu_s"] >= 0.0
    assert bf._flops_einsum("zai,zai->zai", [(1, 4, 5), (1, 4, 5)]) == (40, False)


def test_recording_changes_no_answer(recorded):
    """The wrappers call the same functions with the same arguments: the recorded verify's
    result (its JSON, timings aside) is the unrecorded one's."""
    model, _, result = recorded
    plain = sg.verify(model, torch_fn=model.reference,
                      config=VerifyConfig(samples=1, seed=0, dtype="float64"))
    assert json.dumps(plain.as_dict(), sort_keys=True) == json.dumps(result.as_dict(),
                                                                      sort_keys=True)
