"""The oracle's double-double products on torch (symgrad.precise.ozaki_torch), run here on torch's
CPU device (the CUDA path is the same code): the numpy path's bits wherever the scheme is exact,
i.e. everywhere but its one rounded GEMM (given numpy's rounded GEMM, every bit of hi and lo);
with torch's own GEMM within that GEMM's share; exact to DD accuracy (a dropped residual term is
seen); selected by ``VerifyConfig.oracle_device`` / ``--device cuda``: the same verify JSON."""

from __future__ import annotations

import inspect
import json
from fractions import Fraction

import numpy as np
import pytest
import torch

import symgrad as sg
from symgrad import VerifyConfig, zoo
from symgrad.cli import main
from symgrad.errors import SymgradError
from symgrad.precise import device_ops, ozaki_torch
from symgrad.precise.blas_threads import one_thread
from symgrad.precise.dd import DD
from symgrad.precise.device_ops import DeviceDDOps
from symgrad.precise.ozaki import OzakiConfig, _equilibration, _sub_tiles, dd_matmul
from symgrad.precise.ozaki_torch import dd_matmul_torch, ldexp
from symgrad.tensor import device_gemm
from symgrad.tensor.tables import oracle_ops

ROUNDED_SHARE = 2.0**-100  # of (|A||B|)_ij: two summation orders of the one rounded GEMM
#  (terms <= 2**(-S tau) = 2**-60 of the scale, K <= 2**10) differ by <= 2 K u of that
#  (tests/test_ozaki_chunks.py allows numpy's own sub-tiles the same)


def numpy_rounded(chunk: int):
    """numpy's rounded GEMM as ``ozaki._tile`` forms it: the same sub-tiles (``_sub_tiles``),
    B's slices in the same column-major layout, one BLAS thread."""
    def gemm(A: torch.Tensor, Br: torch.Tensor) -> torch.Tensor:
        a = A.numpy()
        bt, mt, _ = a.shape
        nt = Br.shape[2]
        br = np.ascontiguousarray(Br.numpy().swapaxes(1, 2)).swapaxes(1, 2)
        out = np.empty((bt, mt, nt))
        with one_thread():
            for rs, cs in _sub_tiles(bt, mt, nt, chunk):
                out[:, rs, cs] = np.matmul(a[:, rs], br[:, :, cs])
        return torch.from_numpy(out)
    return gemm


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    """Every bit: values, NaN places and the sign of zero."""
    return (np.array_equal(x, y, equal_nan=True)
            and np.array_equal(np.signbit(x), np.signbit(y)))


def _random(rng, bt: int, m: int, k: int, n: int, b_lo: bool) -> tuple[DD, DD]:
    scale = 2.0 ** rng.integers(-30, 30, (bt, m, 1))  # rows of very different sizes
    a = DD(rng.standard_normal((bt, m, k)) * scale, rng.standard_normal((bt, m, k)) * 2.0**-60)
    b = DD(rng.standard_normal((bt, k, n)),
           rng.standard_normal((bt, k, n)) * 2.0**-58 if b_lo else None)
    return a, b


def _adversarial():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((1, 20, 50)), rng.standard_normal((1, 50, 30))
    z = a.copy()
    z[:, :, ::3] = 0.0
    z[:, 5] = -0.0
    x, y = a.copy(), b.copy()
    x[0, 3, 7], x[0, 4, 2], y[0, 9, 4] = np.inf, np.nan, -np.inf
    return {
        "zeros": (DD(np.zeros_like(a)), DD(b)),
        "some zeros": (DD(z, z * 2.0**-55), DD(b)),
        "subnormal": (DD(a * 2.0**-1060), DD(b)),
        "tiny x tiny": (DD(a * 2.0**-600), DD(b * 2.0**-500)),
        "mixed 2**+-300": (DD(a * 2.0 ** rng.integers(-300, 300, a.shape)),
                           DD(b * 2.0 ** rng.integers(-300, 300, b.shape), b * 2.0**-70)),
        "near overflow": (DD(a * 2.0**1000), DD(b * 2.0**-10)),
        "overflowing": (DD(a * 2.0**600), DD(b * 2.0**500)),
        "shift past 2**1023": (DD(a * 2.0**-1040), DD(b * 2.0**1000)),
        "inf and nan": (DD(x, np.where(np.isfinite(x), x * 2.0**-54, 0.0)), DD(y)),
    }


def _row_col_scale(a: DD, b: DD) -> np.ndarray:
    """rowmax_i |A| colmax_j |B| after the scheme's equilibration (finite parts): the scale its
    slices are cut on, so the rounded GEMM's (``ozaki``'s docstring: its error is a share of
    it); (|A||B|)_ij where rows and columns do not span many orders of magnitude."""
    ah = np.nan_to_num(a.hi, nan=0.0, posinf=0.0, neginf=0.0)
    bh = np.nan_to_num(b.hi, nan=0.0, posinf=0.0, neginf=0.0)
    d = _equilibration(DD(ah), DD(bh))
    d = np.zeros(ah.shape[2], dtype=int) if d is None else d
    rows = np.abs(np.ldexp(ah, d[None, None, :])).max(axis=2)
    cols = np.abs(np.ldexp(bh, -d[None, :, None])).max(axis=1)
    with np.errstate(over="ignore"):
        return rows[:, :, None] * cols[:, None, :]


CASES = [(1, 300, 70, 41, 16, False), (3, 17, 40, 290, 1024, True), (1, 5, 1, 600, 1024, False),
         (2, 260, 33, 19, 8, True), (1, 64, 768, 200, 1024, True)]


@pytest.mark.parametrize("bt,m,k,n,kb,b_lo", CASES)
@pytest.mark.parametrize("tile", [1 << 22, 3000])  # one tile; many row, column and K tiles
def test_same_bits_as_numpy_given_its_rounded_gemm(bt, m, k, n, kb, b_lo, tile):
    rng = np.random.default_rng(bt * 1000 + m + k + n)
    a, b = _random(rng, bt, m, k, n, b_lo)
    cfg = OzakiConfig(k_block=kb, tile_elems=tile)
    ref = dd_matmul(a, b, cfg)
    got = dd_matmul_torch(a, b, cfg, device="cpu", rounded=numpy_rounded(cfg.chunk_elems))
    assert _same(got.hi, ref.hi) and _same(got.lo, ref.lo)


@pytest.mark.parametrize("name", list(_adversarial()))
@pytest.mark.parametrize("kb", [1024, 16])
def test_adversarial_operands_give_numpys_bits(name, kb):
    a, b = _adversarial()[name]
    cfg = OzakiConfig(k_block=kb)
    with np.errstate(all="ignore"):
        ref = dd_matmul(a, b, cfg)
        got = dd_matmul_torch(a, b, cfg, device="cpu", rounded=numpy_rounded(cfg.chunk_elems))
        own = dd_matmul_torch(a, b, cfg, device="cpu")  # torch's own rounded GEMM
    assert _same(got.hi, ref.hi) and _same(got.lo, ref.lo)
    assert _same(np.isfinite(own.hi), np.isfinite(ref.hi))
    fin = np.isfinite(ref.hi)
    assert _same(own.hi[~fin], ref.hi[~fin])  # the IEEE product where not finite
    with np.errstate(all="ignore"):
        gap = np.abs((own.hi - ref.hi) + (own.lo - ref.lo))
    assert (gap[fin] <= ROUNDED_SHARE * _row_col_scale(a, b)[fin]).all()


@pytest.mark.parametrize("bt,m,k,n,kb,b_lo", CASES)
def test_torchs_own_gemm_within_the_rounded_share(bt, m, k, n, kb, b_lo):
    rng = np.random.default_rng(bt * 1000 + m + k + n)
    a, b = _random(rng, bt, m, k, n, b_lo)
    cfg = OzakiConfig(k_block=kb)
    ref, got = dd_matmul(a, b, cfg), dd_matmul_torch(a, b, cfg, device="cpu")
    scale = np.abs(a.hi) @ np.abs(b.hi)
    assert (np.abs((got.hi - ref.hi) + (got.lo - ref.lo)) <= ROUNDED_SHARE * scale).all()
    few = DD(np.round(a.hi * 2.0**10)), DD(np.round(b.hi * 2.0**12))  # residuals all 0: the
    assert _same(dd_matmul_torch(*few, cfg).lo, dd_matmul(*few, cfg).lo)  # rounded GEMM exact


def test_exact_to_dd_accuracy_and_a_dropped_residual_is_seen():
    rng = np.random.default_rng(11)
    a, b = _random(rng, 1, 9, 30, 7, True)
    cfg = OzakiConfig(k_block=8, tile_elems=40)  # many K-blocks, row tiles and column tiles
    fa = [[Fraction(float(h)) + Fraction(float(lo)) for h, lo in zip(rh, rl)]
          for rh, rl in zip(a.hi[0], a.lo[0])]
    fb = [[Fraction(float(h)) + Fraction(float(lo)) for h, lo in zip(rh, rl)]
          for rh, rl in zip(b.hi[0], b.lo[0])]
    scale = np.abs(a.hi[0]) @ np.abs(b.hi[0])

    def worst(c: DD) -> float:
        return max(abs(float(Fraction(float(c.hi[0, i, j])) + Fraction(float(c.lo[0, i, j]))
                             - sum(fa[i][t] * fb[t][j] for t in range(30)))) / scale[i, j]
                   for i in range(9) for j in range(7))
    assert worst(dd_matmul_torch(a, b, cfg)) <= 1e-30
    dropped = dd_matmul_torch(a, b, cfg, rounded=lambda x, y: torch.zeros(
        x.shape[0], x.shape[1], y.shape[2], dtype=torch.float64))  # the residual terms lost
    assert worst(dropped) > 1e-30


def test_ldexp_rounds_once_as_numpy():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(400) * 2.0 ** rng.integers(-1074, 1023, 400),
                        [0.0, -0.0, 5e-324, -5e-324, 1.0, 3.0, 2.0**1023, 0.75]])
    for e in (-2000, -1100, -1075, -1074, -1060, -1022, -1, 0, 1, 52, 1023, 1057, 1100, 2000):
        with np.errstate(over="ignore"):
            want = np.ldexp(x, e)
        got = ldexp(torch.from_numpy(x), torch.full(x.shape, e)).numpy()
        assert _same(got, want), e


def test_the_oracle_table_dispatches_its_products(monkeypatch):
    calls = []
    monkeypatch.setattr(device_ops, "FROM", 0)
    monkeypatch.setattr("symgrad.precise.device_ops.dd_matmul_torch",
                        lambda *a, **k: calls.append(k["device"]) or dd_matmul(a[0], a[1]))
    t = oracle_ops(products="cpu").per_sample(2)
    assert isinstance(t, DeviceDDOps) and t.samples == 2
    rng = np.random.default_rng(0)
    t.matmul3(DD(rng.standard_normal((2, 3, 4))), DD(rng.standard_normal((2, 4, 5))))
    assert calls == ["cpu", "cpu"]  # each sample's product apart, on the device
    monkeypatch.setattr(device_ops, "FROM", 2 * 3 * 4 * 5 + 1)
    t.matmul3(DD(rng.standard_normal((1, 3, 4))), DD(rng.standard_normal((1, 4, 5))))
    assert len(calls) == 2  # a small one stays on numpy
    assert oracle_ops() is not t and not isinstance(oracle_ops(), DeviceDDOps)


def test_the_bounds_large_products_on_a_device():
    rng = np.random.default_rng(5)
    a, b = np.abs(rng.standard_normal((2, 200, 300))), np.abs(rng.standard_normal((2, 300, 100)))
    assert device_gemm.einsum("zij,zjk->zik", a, b) is None  # no device chosen
    with device_gemm.using("cpu"):
        got = device_gemm.einsum("zij,zjk->zik", a, b)
        assert device_gemm.einsum("zij,zjk->zik", a[:, :2, :3], b[:, :3]) is None  # small
        assert device_gemm.einsum("zij,zjk->zik", a[:1], b) is None  # broadcast: numpy's
        with device_gemm.using("numpy"):
            assert device_gemm.einsum("zij,zjk->zik", a, b) is None
        assert device_gemm._DEVICE[0] == "cpu"  # restored
    assert device_gemm._DEVICE[0] is None
    want = np.einsum("zij,zjk->zik", a, b)
    assert np.all(np.abs(got - want) <= 300 * 2.0**-53 * want)  # the same sums, any order


def test_oracle_device_option():
    assert VerifyConfig().oracle_products == "numpy"
    assert VerifyConfig(device="cuda").oracle_products == "cuda"
    assert VerifyConfig(device="cuda", oracle_device="numpy").oracle_products == "numpy"
    assert VerifyConfig(oracle_device="cpu").oracle_products == "cpu"
    assert "oracle_device" not in VerifyConfig(oracle_device="cpu").as_dict()
    for bad in ("mps", "tpu", "numpy:0", 3):
        with pytest.raises(SymgradError, match="oracle_device=.*choose 'numpy'"):
            VerifyConfig(oracle_device=bad)
    kind = inspect.signature(VerifyConfig).parameters["oracle_device"].kind
    assert kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_oracle_without_cuda_is_one_line(capsys):
    assert main(["verify", "neuron", "--samples", "2", "--oracle-device", "cuda"]) == 2
    assert main(["verify", "neuron", "--samples", "2", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["symgrad: error: device 'cuda' is not available on this machine; "
                   "available: cpu"] * 2


def _json(model, cfg: VerifyConfig) -> str:
    return json.dumps(sg.verify(model, config=cfg).as_dict(), sort_keys=True)


def _numbers(x, out: list) -> list:
    if isinstance(x, dict):
        for k in sorted(x):
            _numbers(x[k], out)
    elif isinstance(x, list):
        for v in x:
            _numbers(v, out)
    else:
        out.append(x)
    return out


def _verify_both(model, monkeypatch, **kw) -> None:
    """The torch oracle's JSON: byte-identical to numpy's given numpy's rounded GEMM (and the
    bound on numpy); with torch's own GEMMs, the bound's too, every field but a float's last
    digits (the rounded GEMM's lo bits, the bound's sums in another order)."""
    calls, bound = [], []
    own, own_einsum = ozaki_torch._torch_gemm, device_gemm.einsum
    numpy_json = _json(model, VerifyConfig(**kw))
    monkeypatch.setattr(device_ops, "FROM", 0)  # every product on torch, however small

    def spy(gemm):
        return lambda a, b: calls.append(1) or gemm(a, b)
    monkeypatch.setattr(ozaki_torch, "_torch_gemm", spy(numpy_rounded(OzakiConfig().chunk_elems)))
    monkeypatch.setattr(device_gemm, "FROM", 1 << 62)  # no bound einsum large enough
    assert _json(model, VerifyConfig(oracle_device="cpu", **kw)) == numpy_json
    assert calls  # the products did run on torch
    monkeypatch.setattr(ozaki_torch, "_torch_gemm", spy(own))
    monkeypatch.setattr(device_gemm, "FROM", 1)  # every two-operand one on torch
    monkeypatch.setattr(device_gemm, "einsum", lambda *a: (lambda r: bound.append(r is not None)
                                                         or r)(own_einsum(*a)))
    theirs = _json(model, VerifyConfig(oracle_device="cpu", **kw))
    assert any(bound) and device_gemm._DEVICE[0] is None  # it ran there; and was reset
    a, b = _numbers(json.loads(numpy_json), []), _numbers(json.loads(theirs), [])
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float) and x != y:
            assert abs(x - y) <= 1e-13 * abs(x)
        else:
            assert x == y


def test_tiny_gpt_through_the_torch_oracle_gives_the_same_json(monkeypatch):
    _verify_both(zoo.get("tiny_gpt"), monkeypatch, samples=3, seed=0)


@pytest.mark.slow  # ~20 CPU s: three verifies of a 1-layer width-64 GPT
def test_a_width_64_gpt_through_the_torch_oracle_gives_the_same_json(monkeypatch):
    m = zoo.get("tiny_gpt", config={"vocab_size": 1024, "context_length": 32, "emb_dim": 64,
                                    "n_heads": 4, "n_layers": 1, "drop_rate": 0.0})
    _verify_both(m, monkeypatch, samples=2, seed=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_products_within_the_rounded_share():
    for bt, m, k, n, kb, b_lo in CASES:
        a, b = _random(np.random.default_rng(m), bt, m, k, n, b_lo)
        cfg = OzakiConfig(k_block=kb)
        ref, got = dd_matmul(a, b, cfg), dd_matmul_torch(a, b, cfg, device="cuda")
        scale = np.abs(a.hi) @ np.abs(b.hi)
        assert (np.abs((got.hi - ref.hi) + (got.lo - ref.lo)) <= ROUNDED_SHARE * scale).all()
    for name, (a, b) in _adversarial().items():
        with np.errstate(all="ignore"):
            ref, got = dd_matmul(a, b), dd_matmul_torch(a, b, device="cuda")
        assert _same(np.isfinite(got.hi), np.isfinite(ref.hi)), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_verify_gives_numpys_verdicts():
    m = zoo.get("tiny_gpt")
    cpu = sg.verify(m, config=VerifyConfig(samples=3, seed=0))
    gpu = sg.verify(m, config=VerifyConfig(samples=3, seed=0, device="cuda"))
    assert gpu.verdict == cpu.verdict == "pass"
