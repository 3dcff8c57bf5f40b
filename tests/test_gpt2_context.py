"""GPT-2 at long context (issue 19, item 3): the blocked steps give the whole steps' values, and
a long sequence keeps detection: a x(1 + 1e-10) backward bug in the attention weights at 256
tokens is caught and named by parameter, the correct code passes. Full width at 1024 tokens is
scripts/benchmark_context.py (reports/benchmark_context.md)."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.precise import DD_OPS, ddsum, walk
from symgrad.precise.dd import DD
from symgrad.tensor import mapbound
from symgrad.tensor.program import X
from symgrad.testing import scale_backward
from symgrad.zoo import gpt, native_gpt
from symgrad.zoo.gpt2 import gpt as build

LONG = {"vocab_size": 97, "context_length": 256, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
        "drop_rate": 0.0, "qkv_bias": True}


def _same(a: DD, b: DD) -> bool:
    return (a.hi.shape == b.hi.shape and np.array_equal(a.hi, b.hi, equal_nan=True)
            and np.array_equal(a.lo, b.lo, equal_nan=True))


@pytest.mark.parametrize("shape, axes", [((1, 37, 501), (2,)), ((1, 37, 501), (1,)),
                                         ((3, 5, 7, 11), (1, 3)), ((2, 300, 7), (0, 2))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_dd_sum_in_blocks_is_the_whole_sum_bitwise(monkeypatch, shape, axes, keepdims):
    rng = np.random.default_rng(0)
    x = DD(rng.standard_normal(shape), rng.standard_normal(shape) * 1e-17)
    rest = [i for i in range(len(shape)) if i not in axes]
    whole = ddsum._whole(x, axes, rest, keepdims)
    monkeypatch.setattr(ddsum, "SUM_BLOCK", 50)
    assert ddsum._split_axis(shape, rest) is not None  # it does run in blocks
    assert _same(DD_OPS.sum(x, axes, keepdims), whole)


def test_dd_map_in_blocks_is_the_whole_map_bitwise(monkeypatch):
    """A softmax row's exp(x - max) over broadcast (T, 1) shifts and a masked exp over a causal
    mask: blocks of any size (slices of the last axis too) give the bits of one whole pass."""
    rng = np.random.default_rng(1)
    T, V = 37, 1001
    cases = [(sp.exp(X[0] - X[1]), [DD(rng.standard_normal((1, T, V)),
                                       rng.standard_normal((1, T, V)) * 1e-17),
                                    DD(rng.standard_normal((1, T, 1)))]),
             (X[2] * sp.exp(X[2] * (X[0] - X[1])),
              [DD(rng.standard_normal((1, T, T))), DD(rng.standard_normal((1, T, 1))),
               DD(np.broadcast_to(np.tril(np.ones((T, T)))[None], (1, T, T)))])]
    kernels = type(DD_OPS.kernels)
    for expr, args in cases:
        monkeypatch.setattr(kernels, "chunk", 1 << 40, raising=False)
        whole = DD_OPS.map(expr, dict(zip(X, args)))
        for chunk in (100, 1000, 1 << 15):
            monkeypatch.setattr(kernels, "chunk", chunk, raising=False)
            assert _same(DD_OPS.map(expr, dict(zip(X, args))), whole), chunk


def test_blocks_cover_the_array_in_order():
    a = np.arange(2 * 3 * 7).reshape(2, 3, 7)
    for chunk in (1, 4, 7, 15, 21, 100):
        got = np.concatenate([a[i].reshape(-1) for i in walk.blocks(a.shape, chunk)])
        assert got.tolist() == list(range(a.size))
        assert all(a[i].size <= max(chunk, 1) for i in walk.blocks(a.shape, chunk))


def test_map_bound_in_blocks_matches_the_whole(monkeypatch):
    """The bound of a large map formed in blocks: each entry the whole pass's, to its last bit
    or one rounding of E (a block's views may take other numpy loops); NaN as inf in both."""
    rng = np.random.default_rng(2)
    vals = [rng.standard_normal((1, 40, 2000)), rng.standard_normal((1, 40, 1))]
    vals[0][0, 3, 5] = np.nan
    errs = [np.abs(rng.standard_normal((1, 40, 2000))), np.zeros((1, 40, 1))]
    node = type("N", (), {"attrs": {"expr": sp.exp(X[0] - X[1]) * X[0]}})()
    value = np.empty((1, 40, 2000))  # past STACK_UP_TO: s_map in blocks too
    whole = mapbound.b_map(node, vals, errs, value, None)
    sig = mapbound.s_map(node, vals, errs, value, None, 1024)
    monkeypatch.setattr(mapbound, "MAP_BLOCK", 1000)  # slices of rows
    got = mapbound.b_map(node, vals, errs, value, None)
    got_sig = mapbound.s_map(node, vals, errs, value, None, 1024)
    assert np.isinf(got[0, 3, 5]) and np.isinf(whole[0, 3, 5])
    np.testing.assert_allclose(got, whole, rtol=4e-16)
    np.testing.assert_allclose(got_sig, sig, rtol=4e-16)


@pytest.fixture(scope="module")
def long_gpt():
    return build(LONG, tokens=256, name="gpt_256")


def test_long_context_correct_code_passes(long_gpt):
    r = sg.verify(long_gpt, torch_fn=long_gpt.reference, samples=1, seed=0)
    assert r.verdict == "pass", str(r)
    assert r.counts("torch_fn")["mismatch"] == 0 and r.counts("torch")["mismatch"] == 0


@pytest.mark.slow
def test_long_context_attention_backward_bug_is_caught_and_named(long_gpt):
    """x(1 + 1e-10) on the attention weights' backward, every head, at 256 tokens (66 s of CPU:
    the confirmation's 32 fresh samples)."""
    mutant = native_gpt.reference(gpt.GPTConfig.from_dict(LONG),
                                  weights_hook=lambda t: scale_backward(t, 1 + 1e-10))
    r = sg.verify(long_gpt, torch_fn=mutant, samples=1, seed=0)
    assert r.verdict == "fail" and r.comparisons["torch"].ok
    assert r.failures and all(f.backend == "torch_fn" for f in r.failures)
    named = {f.output.split("[")[0] for f in r.failures}
    assert named & {"d/dh0_Wq", "d/dh0_Wk", "d/dh0_Wv", "d/dh0_bq", "d/dh0_bk", "d/dh0_bv"}, named
