"""A backward pass whose gradients go straight into the flat (N, 1 + K) array the compare reads:
each leaf's gradient is copied into its columns as autograd's engine hands it over (a tensor
hook on the leaf, run on the gradient ``torch.autograd.grad`` captures) and released at once, so
the whole gradient is never held twice (GPT-2: 1.21 GiB of float64 per copy;
``torch.autograd.grad`` returns every block at once, and copying them into the flat array held
both). The hook hands the engine back a zero of no memory (an expanded scalar) to capture
instead. No ``.grad`` is accumulated: ``AccumulateGrad`` would first copy a gradient whose
strides differ from its leaf's (an einsum's weight gradient comes transposed from its batched
product: GPT-2's 50257 x 768 head weight, a fresh 309 MB array and a strided copy) before it
came here, and a copy into the flat array is one copy either way.

The numbers are torch's own: a leaf's gradient is what ``torch.autograd.grad`` returns for it
(the same accumulation in autograd's engine: every part summed before the hook), converted to
float64 exactly; a leaf the loss does not reach gets zeros (``allow_unused``); should the hook
run twice for a leaf in one backward, the second part is added in the leaf's dtype, as torch
adds into ``.grad``; a custom ``autograd.Function`` whose backward returns None for a leaf gives
it zeros, as in torch. Only the leaves asked for are differentiated: a user's module keeps no
``.grad``, and a user's own ``register_hook`` hooks, registered before, run first (what they
return is what is written).

>>> w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
>>> u = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # not reached
>>> out = np.full((1, 6), np.nan)
>>> backward_into((w * w).sum(), [w, u], out, [(1, 3), (3, 6)], row=0)
>>> out.tolist()
[[nan, 2.0, 4.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..heap import give_back

GIVE_BACK_FROM = 1 << 16  # entries: a released gradient this large hands freed heap back
#                          (``heap.give_back``, as the oracle's walk's blocks, ``tensor.views``);
#                          a trim costs 1-3 ms, per leaf per sample of a small model's loop


def backward_into(loss: torch.Tensor, leaves: Sequence[torch.Tensor], out: np.ndarray,
                  spans: Sequence[tuple[int, int]], *, row: int | None = None) -> None:
    """Backpropagate ``loss`` to ``leaves`` only, writing each leaf's gradient into its
    columns of ``out`` as soon as autograd has it, then releasing it.

    Arguments:
        loss: a scalar tensor that requires grad.
        leaves: the leaf tensors to differentiate by (each requires grad; no ``.grad`` yet).
        out: the float64 (N, 1 + K) array being filled (column 0, the loss value, untouched).
        spans: (first column, end column) of each leaf in ``out``.
        row: the sample the leaves are (each of the block's shape), or None: every row (each
            leaf (N, *shape) or broadcasting to it).
    Returns:
        None; ``out``'s columns of every leaf are written (zeros where ``loss`` does not reach
        the leaf).

    >>> a = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
    >>> out = np.zeros((2, 3))
    >>> backward_into((3 * a).sum(), [a], out, [(1, 3)])
    >>> out.tolist()
    [[0.0, 3.0, 3.0], [0.0, 3.0, 3.0]]
    """
    whole = torch.from_numpy(out)
    targets, done, handles = [], [False] * len(leaves), []
    released = [0]  # entries of the gradient the last hook released
    for k, (leaf, (a, b)) in enumerate(zip(leaves, spans)):
        cols = whole[row, a:b] if row is not None else whole[:, a:b]
        shape = tuple(leaf.shape) if row is not None else (out.shape[0],) + tuple(
            leaf.shape[1:])
        targets.append(cols.view(shape))

        def take(g: torch.Tensor | None, k: int = k) -> torch.Tensor | None:
            if g is None:  # a custom Function's backward returned None for it: torch reads
                return None  # that as a zero gradient (the columns zeroed below)
            if released[0] >= GIVE_BACK_FROM:  # the block released before, if it was in the
                give_back()  # heap, kept or not (gpt2 at 1024 tokens: the torch phase's peak
            #                  15.1 GiB untrimmed in a kept heap, 13.0 trimmed); a small one is
            #                  not worth a trim
            g = g.detach()
            if done[k]:  # a second part in this backward: torch's own sum, in its dtype
                g = targets[k].to(g.dtype).to(g.device) + g
            targets[k].copy_(g)
            done[k] = True
            released[0] = g.numel()
            zero = torch.zeros((), dtype=g.dtype, device=g.device).expand(g.shape)
            del g  # the engine's buffer is released once the hook returns
            return zero  # what autograd.grad captures: no memory
        handles.append(leaf.register_hook(take))
    try:
        got = torch.autograd.grad(loss, list(leaves), allow_unused=True)
        del got
    finally:
        for h in handles:
            h.remove()
    give_back()
    for k, target in enumerate(targets):
        if not done[k]:
            target.zero_()
