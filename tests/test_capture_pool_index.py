"""Adaptive max pooling, index_put (x[idx] = v, x.index_add, nn.Fold) and advanced indexing on
axes that are not adjacent, captured (issue 18, capture22): the captured program's exact
derivative against one written out by hand (exact integer weights, mpmath); correct torch code
passes in float64 and float32 (at ties, overlapping windows, repeated indices); a planted wrong
backward is caught and named by the user's own parameter or argument name; the undefined case
(index_put without accumulate, an index twice) is refused in one line naming the op and the
source line."""

from __future__ import annotations

import inspect
import math

import mpmath
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.captured import capture

F64, F32 = torch.float64, torch.float32
DTYPES = pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])


def _x(*shape, dtype=F64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def _exact_grad(fn, *args, block: str = "x") -> dict[tuple, mpmath.mpf]:
    """The captured program's exact gradient of ``fn`` with respect to its argument ``block``
    (sg.exact_at), by entry index."""
    c = capture(fn, tuple(a.detach().requires_grad_() for a in args))
    g = sg.exact_at(c.model, c.example, dps=30)
    out = {}
    for k, v in g.items():
        if k.startswith(f"d/d{block}["):
            out[tuple(int(i) for i in k[len(block) + 4:-1].split(","))] = v
    return out


# ------------------------------------------------------------------ adaptive max pooling
def _windows(size: int, out: int) -> list[range]:
    """torch's adaptive windows along one axis, from its definition."""
    return [range(math.floor(i * size / out), math.ceil((i + 1) * size / out))
            for i in range(out)]


def test_adaptive_max_pool_exact_vjp_is_the_hand_written_one():
    """Weights 1..6 on the (3, 2) outputs of a (5, 3) plane (windows overlap on rows 1 and
    3... of 5 -> 3): each window's cotangent goes to its argmax, summed where one entry is
    the max of two windows. Integers, so the exact gradient is compared with ==."""
    x = _x(1, 1, 5, 3, seed=4)
    w = torch.arange(1.0, 7.0, dtype=F64).reshape(1, 1, 3, 2)
    exact = _exact_grad(lambda x: (F.adaptive_max_pool2d(x, (3, 2)) * w).sum(), x)
    want, hits = {idx: mpmath.mpf(0) for idx in exact}, {}
    v = x.detach()
    for i, rows in enumerate(_windows(5, 3)):
        for j, cols in enumerate(_windows(3, 2)):
            r, c = max(((r, c) for r in rows for c in cols), key=lambda rc: float(v[0, 0, *rc]))
            want[(0, 0, r, c)] += int(w[0, 0, i, j])
            hits[(r, c)] = hits.get((r, c), 0) + 1
    assert exact == want
    assert max(hits.values()) > 1  # this point has an entry that is the max of two windows


@DTYPES
@pytest.mark.parametrize("out", [(3, 2), (2, 5), (7, 5), (1, 1), (4, None)],
                         ids=["overlap", "upsample_w", "identity", "global", "none_axis"])
def test_adaptive_max_pool_modules_pass(out, dtype):
    m = nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveMaxPool2d(out), nn.Tanh())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = m.to(dtype)
    assert sg.gradcheck(m, (_x(2, 2, 7, 5, dtype=dtype),), samples=2)


@DTYPES
def test_adaptive_max_pool_ties_1d_3d_and_unbatched_pass(dtype):
    """Ties (integer values: torch gives the gradient to one of the tied entries, a valid
    subgradient), AdaptiveMaxPool1d (lowered through the 2-d op), 3-d and an unbatched
    input."""
    g = torch.Generator().manual_seed(1)
    ties = torch.randint(0, 3, (1, 2, 6, 5), generator=g).to(dtype).requires_grad_()
    assert sg.gradcheck(nn.AdaptiveMaxPool2d((4, 3)), (ties,))
    assert sg.gradcheck(nn.AdaptiveMaxPool1d(3), (_x(2, 3, 7, dtype=dtype),), samples=2)
    assert sg.gradcheck(nn.AdaptiveMaxPool3d((2, 3, 4)), (_x(1, 2, 5, 4, 6, dtype=dtype),),
                        samples=2)
    assert sg.gradcheck(nn.AdaptiveMaxPool2d((3, 2)), (_x(2, 7, 5, dtype=dtype),), samples=2)


class PoolOverwrite(torch.autograd.Function):
    """Adaptive max pooling with a hand-written backward; ``overwrite``: the planted bug, the
    cotangents written into the input's gradient (dx.view(-1)[idx] = g) instead of added, so
    an entry that is the max of two overlapping windows gets one window's share only."""

    overwrite = False

    @staticmethod
    def forward(ctx, x, size):
        y, idx = F.adaptive_max_pool2d(x, size, return_indices=True)
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        n, c = ctx.shape[:2]
        dx = g.new_zeros(n, c, ctx.shape[2] * ctx.shape[3])
        flat_idx, flat_g = idx.reshape(n, c, -1), g.reshape(n, c, -1)
        if PoolOverwrite.overwrite:
            dx.scatter_(2, flat_idx, flat_g)
        else:
            dx.scatter_add_(2, flat_idx, flat_g)
        return dx.reshape(ctx.shape), None


class PooledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)

    def forward(self, x):
        return torch.tanh(PoolOverwrite.apply(self.conv(x), (3, 2))).sum()


@DTYPES
@pytest.mark.parametrize("planted", [False, True], ids=["correct", "overwrite"])
def test_adaptive_pool_backward_overwriting_overlaps_is_caught(planted, dtype, monkeypatch):
    monkeypatch.setattr(PoolOverwrite, "overwrite", planted)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = PooledNet().to(dtype)
    x = _x(2, 1, 6, 4, dtype=dtype, seed=2, grad=False)  # the parameters only
    if not planted:
        assert sg.gradcheck(m, (x,), samples=2)
        return
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to conv[.]"
                       r"weight\["):
        sg.gradcheck(m, (x,), samples=2)


# ------------------------------------------ advanced indexing on axes that are not adjacent
I0, I2 = torch.tensor([2, 0, 2, 1]), torch.tensor([1, 3, 1, 0])  # the pair (2, 1) twice


def test_index_on_axes_that_are_not_adjacent_exact_vjp_and_value():
    """x[i, :, j] (axes 0 and 2): the picks lead the result (numpy's rule), (4, 3); weights
    1..12: the exact gradient is each weight added at its entry (twice at the repeated pair),
    the exact value torch's own."""
    x = _x(3, 3, 4, seed=5)
    w = torch.arange(1.0, 13.0, dtype=F64).reshape(4, 3)
    f = lambda x: (x[I0, :, I2] * w).sum()  # noqa: E731
    exact = _exact_grad(f, x)
    want = {idx: mpmath.mpf(0) for idx in exact}
    for p in range(4):
        for b in range(3):
            want[(int(I0[p]), b, int(I2[p]))] += int(w[p, b])
    assert exact == want and want[(2, 2, 1)] == 3 + 9  # w[0, 2] + w[2, 2]: the pair twice
    c = capture(f, (x,))
    value = sg.exact_at(c.model, c.example, dps=30)["value"]
    assert abs(float(value) - float(f(x.detach()))) <= 1e-13


@DTYPES
@pytest.mark.parametrize("case", ["axes_0_2", "axes_1_3", "broadcast_2d", "axes_0_1_3"])
def test_index_on_axes_that_are_not_adjacent_passes(case, dtype):
    idx = {"axes_0_2": lambda x: x[I0, :, I2 % 3],
           "axes_1_3": lambda x: x[:, I0, :, I2 % 2],
           "broadcast_2d": lambda x: x[I0.reshape(2, 2), :, torch.tensor([[0], [1]])],
           "axes_0_1_3": lambda x: x[I0 % 2, I0, :, I2 % 2]}[case]
    assert sg.gradcheck(lambda x: torch.tanh(idx(x)) * 2, (_x(3, 3, 3, 2, dtype=dtype),),
                        samples=2)


class PickOverwrite(torch.autograd.Function):
    """x[i, :, j] with a hand-written backward; ``overwrite``: the planted bug, the cotangent
    written (dx[i, :, j] = g) instead of added, so the repeated pair gets one of its two."""

    overwrite = False

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x[I0, :, I2]

    @staticmethod
    def backward(ctx, g):
        dx = g.new_zeros(ctx.shape)
        if PickOverwrite.overwrite:
            dx[I0, :, I2] = g
        else:  # (n0, n2, n1) view: the indexed axes adjacent, the picks added in place
            dx.permute(0, 2, 1).index_put_((I0, I2), g, accumulate=True)
        return dx


class Picked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(3, 2, 4))

    def forward(self, x):
        return (PickOverwrite.apply(self.table) * x).sum()


@DTYPES
@pytest.mark.parametrize("planted", [False, True], ids=["correct", "overwrite"])
def test_a_pick_backward_overwriting_a_repeated_pair_is_caught(planted, dtype, monkeypatch):
    monkeypatch.setattr(PickOverwrite, "overwrite", planted)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = Picked().to(dtype)
    x = _x(4, 2, dtype=dtype, grad=False)
    if not planted:
        assert sg.gradcheck(m, (x,), samples=2)
        return
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to table\[2, "
                       r"[01], 1\]"):
        sg.gradcheck(m, (x,), samples=2)


# ------------------------------------------------ index_put: x[idx] = v, index_add, nn.Fold
IDX = torch.tensor([3, 0, 3, 1])  # row 3 twice


@pytest.mark.parametrize("accumulate", [True, False], ids=["accumulate", "overwrite"])
def test_index_put_exact_vjp_is_the_hand_written_one(accumulate):
    """(x.index_put((i,), v, accumulate) * w).sum(), weights 1..15 on (5, 3): with accumulate,
    d/dx = w and d/dv[p] = w[i[p]] (row 3 read twice); without (ids 3, 0, 1, each once), the
    overwritten rows of x get 0."""
    ids = IDX if accumulate else IDX[[0, 1, 3]]
    x, v = _x(5, 3, seed=6), _x(len(ids), 3, seed=7)
    w = torch.arange(1.0, 16.0, dtype=F64).reshape(5, 3)
    f = lambda x, v: (x.index_put((ids,), v, accumulate=accumulate) * w).sum()  # noqa: E731
    dx, dv = _exact_grad(f, x, v), _exact_grad(f, x, v, block="v")
    hit = set(ids.tolist())
    assert dx == {(r, c): (0 if r in hit and not accumulate else int(w[r, c]))
                  for r in range(5) for c in range(3)}
    assert dv == {(p, c): int(w[ids[p], c]) for p in range(len(ids)) for c in range(3)}


MASK = torch.tensor([[True, False, True], [False, False, True], [True, True, False]])
PUTS = {  # name -> (function, input shapes)
    "setitem_rows": (lambda x, v: _put(x, (IDX[[0, 1, 3]],), v), ((5, 3), (3, 3))),
    "setitem_fill": (lambda x, v: _put(x * v.sum(), (IDX[[0, 1]], 1), 0.5), ((5, 3), (2,))),
    "index_add_repeats": (lambda x, v: x.index_add(0, IDX, v), ((5, 3), (4, 3))),
    "index_add_dim1_alpha": (lambda x, v: x.index_add(1, IDX % 3, v, alpha=2.5),
                             ((2, 3), (2, 4))),
    "put_not_adjacent": (lambda x, v: _put(x, (IDX[[0, 1]], slice(None), IDX[[1, 3]]), v),
                         ((4, 2, 3), (2, 2))),
    "const_mask_put": (lambda x, v: _put(x, (MASK,), v), ((3, 3), (5,))),
    "const_mask_read": (lambda x, v: x[MASK] * v.sum(), ((3, 3), (2,))),
    "computed_mask_fill": (lambda x, v: _put(x * v.sum(), (x > 0.5,), 0.25), ((3, 3), (2,))),
    "fold": (lambda x, v: F.fold(x, (4, 5), 2) * v.sum(), ((1, 3 * 4, 12), (2,))),
    "fold_stride_padding": (lambda x, v: F.fold(x, (5, 5), 3, padding=1, stride=2) * v.sum(),
                            ((2, 2 * 9, 9), (2,))),
}


def _put(x, index, v):
    y = x.clone()
    y[index] = v
    return y


@DTYPES
@pytest.mark.parametrize("name", sorted(PUTS))
def test_index_put_clients_pass(name, dtype):
    fn, shapes = PUTS[name]
    args = tuple(_x(*s, dtype=dtype, seed=i) for i, s in enumerate(shapes))
    assert sg.gradcheck(fn, args, samples=2)


def test_a_computed_mask_fill_at_its_boundary_passes():
    """y[x > 0.5] = 0.25 with an entry exactly at 0.5: the Piecewise's boundary (a kink of
    the captured function), where torch's gradient (2, the unfilled side) is one side's."""
    x = _x(3, 3, seed=1).detach()
    x[1, 1] = 0.5
    assert sg.gradcheck(lambda x: _put(x * 2, (x > 0.5,), 0.25), (x.requires_grad_(),))


class PutForgetful(torch.autograd.Function):
    """table.index_put((i,), v) (each row once) with a hand-written backward; ``forget``: the
    planted bug, the cotangent handed to ``table`` whole, without zeroing the rows that v
    overwrote (they do not reach the output)."""

    forget = False

    @staticmethod
    def forward(ctx, table, v):
        return table.index_put((IDX[[0, 1, 3]],), v)

    @staticmethod
    def backward(ctx, g):
        dt = g.clone()
        if not PutForgetful.forget:
            dt[IDX[[0, 1, 3]]] = 0
        return dt, g[IDX[[0, 1, 3]]]


class Overwritten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(5, 3))

    def forward(self, v):
        return torch.tanh(PutForgetful.apply(self.table, v)).sum()


@DTYPES
@pytest.mark.parametrize("planted", [False, True], ids=["correct", "forgets_overwritten"])
def test_a_put_backward_that_forgets_the_overwritten_rows_is_caught(planted, dtype,
                                                                    monkeypatch):
    monkeypatch.setattr(PutForgetful, "forget", planted)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = Overwritten().to(dtype)
    v = _x(3, 3, dtype=dtype, seed=3)
    if not planted:
        assert sg.gradcheck(m, (v,), samples=2)
        return
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to table\[[013], "):
        sg.gradcheck(m, (v,), samples=2)


def test_index_put_of_one_entry_twice_without_accumulate_is_refused_in_one_line():
    """torch leaves which value an entry named twice keeps undefined (its docs): refused,
    naming the op and the line, before anything is derived."""
    def f(x, v):
        y = x.clone()
        y[IDX] = v
        return y
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(f, (_x(5, 3), _x(4, 3)))
    text = str(err.value)
    line = inspect.getsourcelines(f)[1] + 2
    assert "\n" not in text and "aten.index_put" in text and "twice" in text, text
    assert f"test_capture_pool_index.py:{line}" in text and "accumulate=True" in text, text


# ----------------------------------------- max pooling with padding: no entry is its own tie
@DTYPES
@pytest.mark.parametrize("kw", [{"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2},
                                {"kernel_size": 3, "stride": 2, "padding": 1,
                                 "ceil_mode": True}],
                         ids=["pad", "pad_dilation", "pad_ceil_mode"])
def test_max_pool_with_padding_passes(kw, dtype):
    m = nn.Sequential(nn.Conv2d(1, 2, 2), nn.MaxPool2d(**kw), nn.Tanh())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = m.to(dtype)
    assert sg.gradcheck(m, (_x(2, 1, 6, 7, dtype=dtype),), samples=2)


def test_a_weight_bug_behind_a_padded_max_pool_is_proven():
    """The padding was an edge entry's copy: an edge entry that was its window's max tied
    with itself, a kink that flagged every entry behind it, and a 1e-6 weight-gradient bug
    read inconclusive (5.8e9 ULPs over an allowance of 316). The windows now hold the entries
    inside the input only: proven."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 2, 2), nn.MaxPool2d(3, 2, 1), nn.Tanh()).double()
    m[0].weight.register_hook(lambda g: g * (1 + 1e-6))
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to 0[.]weight\["):
        sg.gradcheck(m, (_x(2, 1, 6, 6, grad=False),), samples=2)
