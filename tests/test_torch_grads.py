"""backends.torch_grads.backward_into: each leaf's gradient written into the flat array as
autograd accumulates it must be bitwise torch's own (autograd.grad's, or .grad after a plain
backward), zeros where the loss does not reach a leaf, and nothing held afterwards."""

import numpy as np
import pytest
import torch
from torch.utils.checkpoint import checkpoint

from symgrad.backends.torch_grads import backward_into


def _leaves(dtype, gen):
    shapes = [(3, 4), (4,), (5,)]  # the last one is not reached by the loss
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_(True) for s in shapes]


def _loss(w, b, unused):
    return (torch.tanh(w @ b) ** 2).sum() + (w * w).sum() * b.sum()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_bits_as_autograd_grad(dtype):
    gen = torch.Generator().manual_seed(0)
    leaves = _leaves(dtype, gen)
    want = torch.autograd.grad(_loss(*leaves), leaves, allow_unused=True)
    out = np.full((1, 1 + 12 + 4 + 5), np.nan)
    backward_into(_loss(*leaves), leaves, out, [(1, 13), (13, 17), (17, 22)], row=0)
    assert np.isnan(out[0, 0])  # the value's column is the caller's
    assert np.array_equal(out[0, 1:13], want[0].to(torch.float64).reshape(-1).numpy())
    assert np.array_equal(out[0, 13:17], want[1].to(torch.float64).numpy())
    assert want[2] is None and np.array_equal(out[0, 17:], np.zeros(5))
    assert all(p.grad is None for p in leaves)  # released once copied
    assert all(not p._post_accumulate_grad_hooks for p in leaves)  # hooks removed


def test_batched_leaves_fill_every_row():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    out = np.zeros((3, 5))
    backward_into((w.sin() * w).sum(), [w], out, [(1, 5)])
    want = (w.cos() * w + w.sin()).detach().reshape(3, 4).numpy()
    assert np.array_equal(out[:, 1:], want)


def test_a_reentrant_checkpoint_gives_what_autograd_grad_gave():
    """torch_fn's loop read torch.autograd.grad before; a user's reentrant checkpoint (whose
    inner backward torch does not run for grad() or backward(inputs=)) must read the same."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(4, generator=gen, dtype=torch.float32, requires_grad=True)
    x = torch.randn(4, generator=gen, dtype=torch.float32, requires_grad=True)

    def loss():
        inner = checkpoint(lambda t: (t * w).exp().sum(), x, use_reentrant=True)
        return inner + (w * w * 1.1).sum()
    (want,) = torch.autograd.grad(loss(), [w])
    out = np.zeros((1, 5))
    backward_into(loss(), [w], out, [(1, 5)], row=0)
    assert np.array_equal(out[0, 1:], want.to(torch.float64).numpy())
    assert w.grad is None and x.grad is None  # only the leaves asked for; none kept


def test_a_second_accumulation_is_added_in_the_leafs_dtype(monkeypatch):
    """Should autograd accumulate a leaf twice in one backward, the sum is torch's own: the
    second part added to the first in the leaf's dtype (float32 here), as into .grad."""
    w = torch.tensor([1.0, 3.0], dtype=torch.float32, requires_grad=True)
    parts = [torch.tensor([0.1, 0.2]), torch.tensor([1e-8, 3e-8])]
    out = np.zeros((1, 3))
    calls = []

    def twice(loss, inputs, **kw):  # the engine handing over two parts, then nothing
        for g in parts:
            for hook in list(w._backward_hooks.values()):
                hook(g.clone())
        calls.append(inputs)
        return (None,) * len(inputs)
    monkeypatch.setattr(torch.autograd, "grad", twice)  # restored after the test
    backward_into(w.sum(), [w], out, [(1, 3)], row=0)
    assert calls and np.array_equal(out[0, 1:], (parts[0] + parts[1]).double().numpy())
    assert not np.array_equal(out[0, 1:], parts[0].double().numpy() + parts[1].double().numpy())


class _NoneForMask(torch.autograd.Function):
    """A masked sum whose backward returns None for the mask (torch: a zero gradient)."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return (x * mask).sum()

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None


def test_a_backward_returning_none_for_a_leaf_gives_it_zeros():
    """newuser6: a Function's backward returning None for an input that requires grad made
    the post-accumulate hook read ``None.detach()`` (an AttributeError blamed on the user's
    backward); torch reads None as zero, and so must the flat array."""
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    want = torch.autograd.grad(_NoneForMask.apply(x, mask), [x, mask], allow_unused=True,
                               materialize_grads=True)
    out = np.full((1, 7), np.nan)
    backward_into(_NoneForMask.apply(x, mask), [x, mask], out, [(1, 4), (4, 7)], row=0)
    assert out[0, 1:].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert np.array_equal(out[0, 1:4], want[0].numpy()) and not want[1].any()
