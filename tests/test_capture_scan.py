"""sign (so nn.Softshrink), cumsum and sort through capture (issue 18, reports/newuser10.md §6):
correct torch code passes in float64 and float32, at the jump of sign (x = 0), at Softshrink's
kinks (|x| = lambda) and at ties in sort (equal entries); a planted wrong backward in a custom
Function around each is caught naming the input; what is not supported is refused in one line.
"""

import pytest
import torch
import torch.nn as nn

import symgrad as sg
from symgrad.capture.aten import TABLE
from symgrad.capture.gradcheck import GradcheckError
from symgrad.testing import scale_backward

aten = torch.ops.aten
DTYPES = [torch.float64, torch.float32]


def _x(dtype, seed=0, *, ties=False):
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x[0, 0] = 0.0  # sign's jump
    x[1, 1] = 0.5  # Softshrink's kink (lambda = 0.5)
    if ties:
        x[2, 1] = x[2, 3] = x[2, 0]  # three equal entries in one sorted row
    return x.to(dtype).requires_grad_()


def _w(dtype):  # a weight per sorted position, so a wrong order or a wrong gradient shows
    return torch.arange(1.0, 5.0, dtype=dtype)


CALLS = {
    "nn.Softshrink": lambda x: nn.Softshrink(0.5)(x).pow(2).sum(),
    "sign": lambda x: (x.sign() * x.exp()).sum(),
    "cumsum(-1)": lambda x: x.cumsum(-1).tanh().sum(),
    "cumsum(0, dtype)": lambda x: torch.cumsum(x, 0, dtype=x.dtype).exp().sum(),
    "sort": lambda x: (x.sort(-1).values * _w(x.dtype)).sum(),
    "sort(0)": lambda x: (x.sort(0).values * _w(x.dtype)[:3, None]).sum(),
    "sort(descending, stable)": lambda x: (torch.sort(x, dim=-1, descending=True, stable=True)
                                           .values.sin() * _w(x.dtype)).sum(),
}


def test_rows_are_in_the_table():
    assert {aten.sign.default, aten.cumsum.default, aten.sort.default,
            aten.sort.stable} <= set(TABLE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("call", list(CALLS))
def test_gradcheck_passes(call, dtype):
    assert sg.gradcheck(CALLS[call], (_x(dtype, ties=True),), samples=3, seed=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softshrink_module_verifies(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Softshrink(0.3), nn.Linear(4, 1)).to(dtype)
    x = torch.randn(5, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    assert sg.gradcheck(lambda x: net(x).sum(), (x.requires_grad_(),), samples=3, seed=0)


class StraightThroughSign(torch.autograd.Function):
    """sign with a straight-through backward (gradient g, not 0): wrong for sign itself."""

    @staticmethod
    def forward(ctx, x):
        return x.sign()

    @staticmethod
    def backward(ctx, g):
        return g


class ReversedCumsum(torch.autograd.Function):
    """cumsum whose backward sums the wrong way (g.cumsum, not the reversed cumsum)."""

    @staticmethod
    def forward(ctx, x):
        return x.cumsum(-1)

    @staticmethod
    def backward(ctx, g):
        return g.cumsum(-1)


class ScaledSort(torch.autograd.Function):
    """sort's values, the gradient scattered back through the indices off by 1 + 1e-9."""

    @staticmethod
    def forward(ctx, x):
        values, idx = x.sort(-1)
        ctx.save_for_backward(idx)
        ctx.mark_non_differentiable(idx)
        return values

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        return torch.zeros_like(g).scatter(-1, idx, g) * (1 + 1e-9)


PLANTED = {
    "sign": lambda x: (StraightThroughSign.apply(x) * x.exp()).sum(),
    "cumsum": lambda x: ReversedCumsum.apply(x).tanh().sum(),
    "sort": lambda x: (ScaledSort.apply(x) * _w(x.dtype)).sum(),
}


@pytest.mark.parametrize("call", list(PLANTED))
def test_planted_wrong_backward_is_caught_naming_the_input(call):
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(PLANTED[call], (_x(torch.float64),), samples=3, seed=0)
    text = str(err.value)
    assert "disagrees" in text.splitlines()[0] and "respect to x[" in text, text


def test_the_planted_sort_backward_without_its_bug_passes():
    """the custom Function's backward itself is right: the 1e-9 is all that was caught"""
    class Sort(ScaledSort):
        @staticmethod
        def backward(ctx, g):
            (idx,) = ctx.saved_tensors
            return torch.zeros_like(g).scatter(-1, idx, g)
    assert sg.gradcheck(lambda x: (Sort.apply(x) * _w(x.dtype)).sum(),
                        (_x(torch.float64, ties=True),), samples=3, seed=0)


@pytest.mark.parametrize("fn, match", [
    (lambda x, y: (torch.zeros_like(x).scatter(0, x.sort(0).indices, y) * x).sum(),
     r"scatter of sort\(dim=0\)'s indices is not supported"),
    # y is held (no grad), so it is captured, and an integer cumsum of it has no derivative
    (lambda x, y: (x * y.cumsum(-1, dtype=torch.int64)).sum(), "cumsum .* dtype=torch.int64"),
])
def test_refused_in_one_line(fn, match):
    y = _x(torch.float64, seed=1).detach()
    with pytest.raises(sg.SymgradError, match=match) as err:
        sg.capture(fn, (_x(torch.float64), y))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sort_indices_scatter_back_to_the_input_order(dtype):
    """sort's indices as scatter's index (topk's dense-gate path): the inverse permutation"""
    def unsort(x):
        v, i = x.sort(-1, descending=True)
        return (torch.zeros_like(x).scatter(-1, i, v.exp() * _w(x.dtype)) * x).sum()
    assert sg.gradcheck(unsort, (_x(dtype, ties=True),), samples=3, seed=0)


def test_other_uses_of_sort_indices_are_refused_naming_sort():
    with pytest.raises(sg.SymgradError, match="sort's indices are used by") as err:
        sg.capture(lambda x: x.sort(-1).values.sum() + x.sort(-1).indices.double().sum(),
                   (_x(torch.float64),))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sort_along_a_middle_axis_of_a_3d_tensor(dtype):
    x = torch.randn(2, 3, 4, dtype=dtype, generator=torch.Generator().manual_seed(2))
    x[1, 0, 2] = x[1, 2, 2]  # a tie along the sorted axis
    w = torch.arange(1.0, 4.0, dtype=dtype).reshape(3, 1)
    assert sg.gradcheck(lambda x: (x.sort(1, descending=True).values.tanh() * w).sum(),
                        (x.requires_grad_(),), samples=3, seed=0)


def test_planted_wrong_backward_through_a_dim0_sort_is_caught():
    def fn(x):
        return (scale_backward(x, 1 + 1e-9).sort(0).values * _w(x.dtype)[:3, None]).sum()
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(fn, (_x(torch.float64, ties=True),), samples=3, seed=0)
    assert "disagrees" in str(err.value).splitlines()[0] and "respect to x[" in str(err.value)


# ------------------------------------------- stop-34 follow-up: one-entry sorts, ranked gathers
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("call", [
    lambda x: x[:, :1].sort(-1).values.exp().sum(),
    lambda x: x[:1].sort(0, descending=True).values.sin().sum(),
    lambda x: torch.zeros_like(x[:, :1]).scatter(-1, x[:, :1].sort(-1).indices,
                                                 x[:, :1].exp()).sum(),
])
def test_a_sort_along_an_axis_of_one_entry_is_the_identity(call, dtype):
    """Meant to fail on main: refused ("sort of a single entry ...; drop the sort")."""
    assert sg.gradcheck(call, (_x(dtype),), samples=3, seed=0)


RANKED = {
    "gather(sort.indices)": lambda x, y: (torch.gather(x, -1, x.sort(-1).indices)
                                          * _w(x.dtype)).sum(),
    "take_along_dim(argsort)": lambda x, y: (torch.take_along_dim(y.exp(), x.argsort(-1), -1)
                                             * _w(x.dtype)).sum(),
    "take_along_dim(argsort, dim 0)": lambda x, y: (torch.take_along_dim(
        y.tanh(), x.argsort(0, descending=True), 0) * _w(x.dtype)).sum(),
    "gather(topk.indices)": lambda x, y: (torch.gather(y.sin(), -1, x.topk(2, -1).indices)
                                          * _w(x.dtype)[:2]).sum(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("call", list(RANKED))
def test_a_gather_by_ranked_indices_passes(call, dtype):
    """Meant to fail on main: gather / take_along_dim with the indices sort, argsort or topk
    returned was refused. Sorted by x, gathered from x or another input y; ties in x (one sorted
    row holds three equal entries) are kinks (topk's test has none: a tie inside its top 2 is
    a kink a sample there is inconclusive at, as at any kink)."""
    ties = call != "gather(topk.indices)"
    assert sg.gradcheck(RANKED[call], (_x(dtype, ties=ties), _x(dtype, seed=3)), samples=3,
                        seed=0)


@pytest.mark.parametrize("call", list(RANKED))
def test_a_planted_wrong_backward_through_a_ranked_gather_is_caught(call):
    def fn(x, y):  # the gathered tensor's backward x(1 + 1e-9)
        s = 1 + 1e-9
        if call == "gather(sort.indices)":  # gathers from x itself
            return RANKED[call](scale_backward(x, s), y)
        return RANKED[call](x, scale_backward(y, s)) + (x * y).sum()
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(fn, (_x(torch.float64), _x(torch.float64, seed=3)), samples=3, seed=0)
    text = str(err.value)
    which = "x[" if call == "gather(sort.indices)" else "y["
    assert "disagrees" in text.splitlines()[0] and f"respect to {which}" in text, text


def test_a_gather_along_another_axis_than_the_ranked_one_is_refused_in_one_line():
    with pytest.raises(sg.SymgradError, match=r"gather along dim 1 of sort\(dim=0\)'s indices, "
                       "taken along dim 0") as err:
        sg.capture(lambda x: torch.gather(x, 1, x.sort(0).indices).sum(), (_x(torch.float64),))
    assert "\n" not in str(err.value)
