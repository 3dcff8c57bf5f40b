"""A large model's entry bound E stored in float32, rounded away from zero (issue 19: GPT-2 at
64 tokens in <= 5 GB; ``symgrad.tensor.upward``): every stored entry is the nearest float32 at
or beyond the float64 bound, the allowance formed from it (in float64) is at least the float64
bound's, and a verify with the float32 storage forced on a small GPT gives the same verdicts and
statuses as with float64 storage, a planted wrong backward still caught. A plain float32 cast
(round to nearest) is shown to fail the bound property, so the tests can fail."""

import numpy as np
import pytest

import symgrad as sg
import symgrad.tensor as st
import torch
import symgrad.tensor.upward as upward
from symgrad.compare import Tolerance, allowance
from symgrad.config import VerifyConfig
from symgrad.testing import scale_block_backward
from symgrad.tensor.model import TensorModel
from symgrad.tensor.upward import bound_kind, store_away
from symgrad.tensor.verify import entry_bounds
from symgrad.zoo.gpt2 import tiny_gpt


def _draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 values over float32's whole range and past it: subnormal, huge, signed, exact."""
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-60, 50, n)
    x[:8] = [0.0, -0.0, 1e-320, -1e-300, 3.5e38, 1e39, 1.0, -2.0**-149]
    return x


def test_each_stored_entry_is_the_nearest_float32_at_or_beyond_the_bound():
    x = _draws(np.random.default_rng(0), 50_000)
    out = np.empty(x.shape, np.float32)
    store_away(out, x)
    wide = np.abs(out.astype(np.float64))
    assert np.all(wide >= np.abs(x))  # a bound still
    toward = np.abs(np.nextafter(out, np.float32(0)).astype(np.float64))  # one step back
    tight = (toward < np.abs(x)) | (out == 0)
    assert tight.all(), x[~tight][:5]  # the nearest such float32: no more than needed
    assert np.array_equal(np.signbit(out), np.signbit(x))


def test_the_step_away_is_nextafter_bit_for_bit(monkeypatch):
    """The stored float32 (one bit-pattern step up where rounding fell short) equals the
    nearest float32 moved by ``np.nextafter`` towards +-inf with x's sign, bit for bit:
    signed zeros, subnormals, float32's largest finite and beyond, NaN and inf included."""
    monkeypatch.setattr(upward, "CHUNK", 4096)
    x = _draws(np.random.default_rng(5), 20_000)
    x[8:14] = [np.nan, np.inf, -np.inf, -1e-50, 1e-50, float(np.finfo(np.float32).max)]
    out = np.empty(x.shape, np.float32)
    store_away(out, x)
    with np.errstate(over="ignore", invalid="ignore"):
        near = x.astype(np.float32)
        short = np.abs(near.astype(np.float64)) < np.abs(x)
        near[short] = np.nextafter(near[short], np.copysign(np.inf, x[short]).astype(
            np.float32))
    assert short.mean() > 0.3 and out.tobytes() == near.tobytes()


def test_a_cast_to_nearest_would_not_be_a_bound():
    """The property the storage needs, failed by the obvious float32 cast: about half of the
    entries round down (so the test above can fail)."""
    x = np.abs(_draws(np.random.default_rng(1), 10_000))
    with np.errstate(over="ignore"):  # the draws reach beyond float32's range on purpose
        near = x.astype(np.float32).astype(np.float64)
    assert (near < x).mean() > 0.3


def test_nan_and_inf_stay_and_chunks_write_through_a_view(monkeypatch):
    monkeypatch.setattr(upward, "CHUNK", 7)  # many chunks, rows and columns
    rng = np.random.default_rng(2)
    x = _draws(rng, 5 * 40).reshape(5, 40)
    x[1, 3], x[2, 5] = np.nan, -np.inf
    E = np.full((5, 100), -1.0, np.float32)
    store_away(E[:, 30:70], x)  # a block's columns of the whole E: a strided view
    assert np.all(E[:, :30] == -1) and np.all(E[:, 70:] == -1)
    block = E[:, 30:70]
    assert np.isnan(block[1, 3]) and block[2, 5] == -np.inf
    seen = ~np.isnan(x)
    assert np.all(np.abs(block[seen].astype(np.float64)) >= np.abs(x[seen]))
    whole = np.empty_like(block)
    monkeypatch.setattr(upward, "CHUNK", 1 << 20)
    store_away(whole, x)
    assert np.array_equal(whole, block, equal_nan=True)  # chunking changes no entry


def test_the_allowance_of_a_float32_bound_is_at_least_the_float64_ones():
    x = np.abs(_draws(np.random.default_rng(3), 20_000))
    out = np.empty(x.shape, np.float32)
    store_away(out, x)
    for dtype in ("float64", "float32", "bfloat16"):
        a32, a64 = allowance(out, dtype, Tolerance()), allowance(x, dtype, Tolerance())
        assert a32.dtype == np.float64  # formed in float64: float32's tiny floor would vanish
        assert np.all(a32 >= a64), dtype
        normal = (x >= np.finfo(np.float32).tiny) & (x <= np.finfo(np.float32).max)
        assert np.all(a32[normal] <= a64[normal] * (1 + 2.0**-22))  # a float32 step at most


def test_the_bound_is_float32_from_the_threshold_only():
    assert bound_kind(upward.FLOAT32_FROM - 1) is np.float64
    assert bound_kind(upward.FLOAT32_FROM) is np.float32
    with pytest.raises(TypeError, match="float64 or float32"):
        store_away(np.empty(3, np.float16), np.ones(3))


def test_entry_bounds_in_float32_bound_the_float64_ones(monkeypatch):
    model = tiny_gpt()
    values = model.draw(2, np.random.default_rng(0), "float64")
    tol = Tolerance()
    E64 = entry_bounds(model, values, tol, 2, dtypes=("float64",))
    monkeypatch.setattr(upward, "FLOAT32_FROM", 0)
    E32 = entry_bounds(model, values, tol, 2, dtypes=("float64",))
    assert E64.dtype == np.float64 and E32.dtype == np.float32
    assert np.array_equal(np.isnan(E32), np.isnan(E64))
    seen = ~np.isnan(E64)
    assert np.all(E32[seen].astype(np.float64) >= E64[seen])
    back = np.nextafter(E32, np.float32(0)).astype(np.float64)  # one float32 step back
    assert np.all((back < E64)[seen] | (E64[seen] == 0))  # the nearest float32 bound


def _verify(torch_fn, float32_bound: bool, monkeypatch):
    monkeypatch.setattr(upward, "FLOAT32_FROM", 0 if float32_bound else upward.FLOAT32_FROM)
    model = tiny_gpt()
    return sg.verify(model, torch_fn=torch_fn(model),
                     config=VerifyConfig(samples=2, seed=0, progress=False))


def _statuses(result) -> dict:
    return {b: np.bincount(c.status.reshape(-1), minlength=16).tolist()
            for b, c in result.comparisons.items()}


def _layer() -> TensorModel:
    W, x = st.param("W", (6, 5)), st.input("x", (5,))
    return TensorModel("layer", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))


def _layer_torch(W, x):
    return torch.sum(torch.tanh(W @ x))


@pytest.mark.parametrize("float32_bound", [False, True])
def test_a_small_layer_passes_and_its_planted_backward_fails(monkeypatch, float32_bound):
    """The float32 storage forced on a 31-parameter layer (the end-to-end certificate and its
    doubt read E too): correct code passes, a x1.5 backward on W fails, named, in both."""
    monkeypatch.setattr(upward, "FLOAT32_FROM", 0 if float32_bound else upward.FLOAT32_FROM)
    cfg = VerifyConfig(samples=20, seed=0, progress=False)
    assert sg.verify(_layer(), torch_fn=_layer_torch, config=cfg).verdict == "pass"
    bad = sg.verify(_layer(), torch_fn=scale_block_backward(_layer_torch, "W", 1.5),
                    config=cfg)
    assert bad.verdict == "fail"
    assert {f.output.split("[")[0] for f in bad.failures if f.backend == "torch_fn"} == {"d/dW"}


@pytest.mark.slow
def test_same_verdicts_and_statuses_with_the_float32_bound(monkeypatch):
    """Correct code: the same verdict and every backend's status counts as with float64 E."""
    ref = _verify(lambda m: m.reference, False, monkeypatch)
    got = _verify(lambda m: m.reference, True, monkeypatch)
    assert got.verdict == ref.verdict
    assert _statuses(got) == _statuses(ref)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [1.5, 1 + 1e-10])
def test_a_planted_backward_is_still_caught_with_the_float32_bound(monkeypatch, factor):
    result = _verify(lambda m: scale_block_backward(m.reference, "h0_Wq", factor), True,
                     monkeypatch)
    assert result.verdict == "fail"
    named = {f.output.split("[")[0] for f in result.failures if f.backend == "torch_fn"}
    assert "d/dh0_Wq" in named, named
