"""backends.flat: inside ``reused_flat`` a backend's flat (N, 1 + K) array is the last one
handed out once nothing else holds it (the torch view's, for torch_fn), and what a backend
writes into a reused array is bit for bit what it writes into a fresh one: every entry, the
zeros of a parameter the loss does not reach too (the reused array is poisoned with NaN
first). An array still held anywhere (a view, a kept comparison) is never handed out again."""

import gc
import weakref

import numpy as np
import torch

import symgrad.tensor as st
from symgrad.backends.flat import flat_empty, reused_flat
from symgrad.backends.torch import run_torch_fn
from symgrad.tensor.model import TensorModel
from symgrad.tensor.views import torch_view


def test_outside_a_block_every_array_is_fresh():
    a = flat_empty((2, 3))
    p = a.ctypes.data
    a[:] = 7.0
    b = flat_empty((2, 3))
    assert b is not a and b.ctypes.data != p


def test_reused_only_when_free_and_of_the_same_shape():
    with reused_flat():
        a = flat_empty((3, 4))
        assert flat_empty((3, 4)) is not a  # ``a`` is held: a fresh one
        b = flat_empty((3, 4))
        view = b[:, 1:]
        assert flat_empty((3, 4)) is not b  # a view of it is held
        c = flat_empty((3, 4))
        where = c.ctypes.data
        del view, b, c
        d = flat_empty((3, 4))
        assert d.ctypes.data == where  # nothing held it: the same array again
        where = d.ctypes.data
        del d
        e = flat_empty((3, 5))  # another shape: fresh, and the old one is let go
        assert e.shape == (3, 5) and e.ctypes.data != where


def test_a_tensor_made_from_it_keeps_it_from_reuse():
    with reused_flat():
        a = flat_empty((1, 6))
        t = torch.from_numpy(a)
        where = a.ctypes.data
        del a
        b = flat_empty((1, 6))
        assert b.ctypes.data != where
        t.zero_()  # still the old array, untouched by the new one's owner
        assert t.data_ptr() == where


def test_the_block_lets_its_array_go_at_its_end():
    with reused_flat():
        a = flat_empty((2, 2))
        gone = weakref.ref(a)
        del a
    gc.collect()
    assert gone() is None


def test_nested_blocks_keep_their_own():
    with reused_flat():
        a = flat_empty((1, 2))
        where = a.ctypes.data
        del a
        with reused_flat():
            assert flat_empty((1, 2)).ctypes.data != where  # the outer one's is not lent
        assert flat_empty((1, 2)).ctypes.data == where


def _model():
    W, x, unused = st.param("W", (3, 4)), st.param("x", (4,)), st.param("u", (5,))
    h = st.einsum("ij,j->i", W, x)
    loss = st.sum_(st.map_(st.X[0] * st.X[0], h))

    def reference(W, x, u):
        return ((W @ x) ** 2).sum()
    return TensorModel("flat_reuse", loss, reference=reference, params=[W, x, unused])


def test_torch_fn_into_the_torch_views_array_gives_the_same_bits():
    model = _model()
    values = model.draw(3, np.random.default_rng(0), "float64")
    fresh_view = torch_view(model, values, dtype="float64", device="cpu")
    fresh_fn, _ = run_torch_fn(model.reference, model.blocks, values, device="cpu",
                               dtype="float64")
    assert np.array_equal(fresh_fn[:, -5:], np.zeros((3, 5)))  # u: not reached
    with reused_flat():
        got = torch_view(model, values, dtype="float64", device="cpu")
        assert np.array_equal(got, fresh_view)
        got[:] = np.nan  # what a reused array holds before the next backend writes it
        where = got.ctypes.data
        del got
        again, _ = run_torch_fn(model.reference, model.blocks, values, device="cpu",
                                dtype="float64")
        assert again.ctypes.data == where  # the torch view's array, reused
        assert np.array_equal(again, fresh_fn)  # every entry written: the same bits
        again[:] = np.nan
        del again
        vmapped, mode = run_torch_fn(model.reference, model.blocks, values, device="cpu",
                                     dtype="float64", batching="vmap")
        assert vmapped.ctypes.data == where and mode == "vmap"
        assert np.array_equal(vmapped, fresh_fn)
