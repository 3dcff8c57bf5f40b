"""Capture of norms, distances and the ops the false-FAIL hunt found refused (issue 18):
batch norm without running stats, group norm, vector norms (F.normalize, cosine similarity),
pdist, cdist, kl_div with a probability target. Correct torch code passes in float64 and
float32, at the kinks too (a norm at 0, equal points, ties, a 0 target); a planted wrong
backward is caught and named by the input's own name; other orders are refused in one line;
a capture error names the user's own source line."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.testing import scale_backward

F64, F32 = torch.float64, torch.float32


def _randn(*shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _t(values, dtype):
    return torch.tensor(values, dtype=dtype)


Y = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.5, -1.0, 2.0], [-2.0, 0.0, 1.0]]  # cdist's other side
P = [[0.25, 0.5, 0.25], [0.125, 0.375, 0.5]]  # a probability target
OPS = {  # name -> (the op of one differentiated tensor, its generic point (shape))
    "batch_norm_no_stats": (lambda x: F.batch_norm(x, None, None, training=True), (4, 3, 5)),
    "group_norm": (lambda x: F.group_norm(x, 2), (2, 6, 5)),
    "normalize": (lambda x: F.normalize(x, dim=-1), (3, 5)),
    "cosine_similarity": (lambda x: F.cosine_similarity(x[:2], x[1:], dim=-1), (3, 5)),
    "vector_norm_2": (lambda x: torch.linalg.vector_norm(x, dim=-1), (3, 5)),
    "vector_norm_1": (lambda x: torch.linalg.vector_norm(x, 1, dim=(0, 1)), (3, 5)),
    "vector_norm_inf": (lambda x: torch.linalg.vector_norm(x, math.inf, dim=0), (3, 5)),
    "vector_norm_-inf": (lambda x: torch.linalg.vector_norm(x, -math.inf, dim=-1), (3, 5)),
    "norm": (lambda x: x.norm(), (3, 5)),
    "pdist": (lambda x: F.pdist(x), (4, 3)),
    "cdist_2": (lambda x: torch.cdist(x, _t(Y, x.dtype)), (3, 3)),
    "cdist_1": (lambda x: torch.cdist(x, _t(Y, x.dtype), p=1), (3, 3)),
    "cdist_inf": (lambda x: torch.cdist(x, _t(Y, x.dtype), p=math.inf), (3, 3)),
    "cdist_batched": (lambda x: torch.cdist(x, _t(Y, x.dtype).expand(2, 4, 3)), (2, 3, 3)),
    "kl_div": (lambda x: F.kl_div(F.log_softmax(x, -1), _t(P, x.dtype),
                                  reduction="batchmean"), (2, 3)),
}
KINKS = {  # name -> (the op, a point at its kink / tie)
    "normalize_zero_row": ("normalize", [[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]]),
    "cosine_zero_vector": ("cosine_similarity", [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0],
                                                 [0.0, 0.0, 0.0]]),
    "norm_at_zero": ("vector_norm_2", [[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]]),
    "norm_1_zero_entries": ("vector_norm_1", [[0.0, 0.0, 1.0], [1.0, 0.0, -0.5]]),
    "norm_inf_ties": ("vector_norm_inf", [[1.0, -1.0, 0.5], [-1.0, 2.0, -0.5]]),
    "pdist_equal_rows": ("pdist", [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]),
    "cdist_equal_points": ("cdist_2", [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [7.0, 0.0, 1.0]]),
    "cdist_1_equal_coordinates": ("cdist_1", [[1.0, 5.0, 3.0], [0.5, 0.0, 2.0]]),
}
UNDECIDED = {  # interacting kinks a backend's choice may leave undecided: never a FAIL
    "cdist_inf_equal_points": ("cdist_inf", [[2.0, 3.0, 5.0], [0.5, -1.0, 2.0]]),
}


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_correct_torch_code_passes(name, dtype):
    op, shape = OPS[name]
    x = _randn(*shape, dtype=dtype).requires_grad_()
    assert sg.gradcheck(op, (x,))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(KINKS))
def test_correct_torch_code_passes_at_its_kink(name, dtype):
    op_name, point = KINKS[name]
    assert sg.gradcheck(OPS[op_name][0], (_t(point, dtype).requires_grad_(),))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_the_modules_pass_with_their_parameters(dtype):
    bn = nn.BatchNorm2d(3, track_running_stats=False).to(dtype)
    gn = nn.GroupNorm(2, 4).to(dtype)
    with torch.no_grad():
        for p in (bn.weight, bn.bias, gn.weight, gn.bias):
            p.copy_(_randn(*p.shape, dtype=dtype, seed=3))
    assert sg.gradcheck(bn, (_randn(2, 3, 2, 2, dtype=dtype).requires_grad_(),))
    assert sg.gradcheck(gn, (_randn(2, 4, 3, dtype=dtype).requires_grad_(),))


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_a_constant_channel_or_group_passes(dtype):
    """Batch / group statistics of equal values: variance 0, x - mean exactly 0 (eps keeps
    the derivative finite)."""
    x = _randn(4, 3, 5, dtype=dtype)
    x[:, 1, :] = 0.5
    assert sg.gradcheck(OPS["batch_norm_no_stats"][0], (x.requires_grad_(),))
    x = _randn(2, 6, 5, dtype=dtype)
    x[0, :3, :] = -1.25
    assert sg.gradcheck(OPS["group_norm"][0], (x.requires_grad_(),))


@pytest.mark.parametrize("name", sorted(n for n in OPS if "dist" not in n))
def test_bfloat16_is_never_failed(name):
    """What bfloat16's 8 bits cannot resolve is inconclusive, never a FAIL (torch has no
    bfloat16 pdist / cdist)."""
    op, shape = OPS[name]
    x = _randn(*shape, dtype=F64).to(torch.bfloat16).requires_grad_()
    try:
        assert sg.gradcheck(op, (x,))
    except sg.GradcheckError as err:
        assert "inconclusive" in str(err) and "disagrees" not in str(err)


def test_kl_div_target_with_zeros_and_the_target_held():
    x = _t([[1.0, 2.0, 3.0], [0.5, 1.0, -1.0]], F64).requires_grad_()
    t = _t([[0.0, 0.5, 0.5], [0.25, 0.25, 0.5]], F64)
    for dtype in (F64, F32):
        assert sg.gradcheck(lambda x, t: F.kl_div(F.log_softmax(x, -1), t, reduction="sum"),
                            (x.to(dtype).detach().requires_grad_(), t.to(dtype)))


def _planted(op, scale):
    """A custom Function whose forward is ``op`` and whose backward is torch's times
    ``scale``; its differentiated argument is called ``feats``."""
    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, feats):
            ctx.save_for_backward(feats)
            return op(feats)

        @staticmethod
        def backward(ctx, grad):
            (feats,) = ctx.saved_tensors
            with torch.enable_grad():
                f = feats.detach().requires_grad_()
                (g,) = torch.autograd.grad(op(f), f, grad)
            return g * scale
    return Planted


@pytest.mark.parametrize("dtype,scale", [(F64, 1 + 1e-9), (F32, -1.0)],
                         ids=["float64_scaled_1e-9", "float32_sign_flip"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_a_planted_wrong_backward_is_caught_and_named(name, dtype, scale):
    op, shape = OPS[name]
    x = _randn(*shape, dtype=dtype).requires_grad_()
    assert sg.gradcheck(_planted(op, 1.0).apply, (x,))  # the same Function, unplanted
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees .*with respect to feats\["):
        sg.gradcheck(_planted(op, scale).apply, (x,))


@pytest.mark.parametrize("name", ["pdist_equal_rows", "cdist_equal_points", "norm_at_zero"])
def test_a_planted_wrong_backward_is_caught_at_the_kink(name):
    op_name, point = KINKS[name]
    x = _t(point, F64).requires_grad_()
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees .*with respect to feats\["):
        sg.gradcheck(_planted(OPS[op_name][0], 1 + 1e-9).apply, (x,))


class _TipDirection(torch.autograd.Function):
    """cdist(feats, y) whose backward takes the unit vector (0.6, 0.8, 0) at equal points:
    a valid subgradient of the cone ||feats - y|| there (torch takes 0)."""

    @staticmethod
    def forward(ctx, feats, y):
        ctx.save_for_backward(feats, y)
        return torch.cdist(feats, y)

    @staticmethod
    def backward(ctx, grad):
        feats, y = ctx.saved_tensors
        d = feats[:, None, :] - y[None, :, :]
        n = d.norm(dim=-1, keepdim=True)
        u = torch.where(n > 0, d / n.clamp_min(1e-300), _t([0.6, 0.8, 0.0], feats.dtype))
        return (grad[..., None] * u).sum(1), None


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(UNDECIDED))
def test_correct_torch_code_at_interacting_kinks_is_never_failed(name, dtype):
    op_name, point = UNDECIDED[name]
    try:
        assert sg.gradcheck(OPS[op_name][0], (_t(point, dtype).requires_grad_(),))
    except sg.GradcheckError as err:
        assert "inconclusive" in str(err) and "disagrees" not in str(err)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_torchs_cdist_inf_at_a_tie_is_a_real_finding(dtype):
    """torch's cdist(p=inf) backward hands the whole gradient to every tied coordinate
    (sign(d) * (|d| == dist)): twice a subgradient, which symgrad proves (a max of |d| splits
    it: vector_norm(inf) at the same ties passes)."""
    x = _t([[2.0, 3.0, 5.0], [0.5, 1.0, 2.0]], dtype).requires_grad_()
    with pytest.raises(sg.GradcheckError, match="(?s)disagrees.*no convex combination"):
        sg.gradcheck(OPS["cdist_inf"][0], (x,))
    assert sg.gradcheck(lambda x: torch.linalg.vector_norm(
        x[:, None, :] - _t(Y, dtype), math.inf, dim=-1), (x,))


def test_torchs_cosine_similarity_below_eps_is_a_real_finding():
    """torch clamps the norms in place under no_grad (cosine_similarity's C++), so below
    eps = 1e-8 its backward still differentiates the unclamped norm: not the derivative of
    its own forward x1 / eps . x2 / |x2| (here 32% off), which symgrad proves; F.normalize
    clamps with autograd and passes at the same point."""
    x1 = _t([[3e-9, -4e-9, 1e-9]], F64).requires_grad_()
    x2 = _t([[1.0, 2.0, -0.5]], F64)
    F.cosine_similarity(x1, x2).sum().backward()
    exact = x2 / x2.norm() / 1e-8
    assert not torch.allclose(x1.grad, exact, rtol=0.1)  # torch's own, far from it
    with pytest.raises(sg.GradcheckError, match="(?s)disagrees.*proven") as err:
        sg.gradcheck(F.cosine_similarity, (x1.detach().requires_grad_(), x2))
    assert sg.gradcheck(lambda a: F.normalize(a, dim=-1, eps=1e-8),
                        (x1.detach().requires_grad_(),))
    # named (it read "derivative wrong: real derivative error"): the clamp, the norm and eps
    lines = str(err.value).splitlines()[1:]
    assert all("[cause: derivative wrong: norm's eps clamp not differentiated]" in line
               and "< eps = 1e-08" in line and "F.cosine_similarity clamps its norms in place"
               in line for line in lines
               if "… and" not in line and not line.startswith("  note:")), lines


def test_a_wrong_backward_where_the_norms_clamp_is_inactive_is_not_blamed_on_it():
    """Meant to fail if the clamp were blamed by its presence alone: a planted 1e-6 scale of
    cosine_similarity's backward at norms ~1 (the eps clamp inactive) is a real derivative
    error."""
    x1 = _t([[0.3, -0.4, 0.1]], F64).requires_grad_()
    x2 = _t([[1.0, 2.0, -0.5]], F64)
    with pytest.raises(sg.GradcheckError, match="(?s)disagrees") as err:
        sg.gradcheck(lambda a, b: F.cosine_similarity(scale_backward(a, 1 + 1e-6), b),
                     (x1, x2))
    assert "real derivative error" in str(err.value) and "eps clamp" not in str(err.value)


def test_another_valid_subgradient_at_equal_points_is_not_failed():
    x = _t([[1.0, 2.0, 3.0], [0.5, 1.0, -1.0]], F64).requires_grad_()
    y = _t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], F64)
    with pytest.raises(sg.GradcheckError, match="inconclusive") as err:
        sg.gradcheck(_TipDirection.apply, (x, y))
    assert "disagrees" not in str(err.value)


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("fn,what", [
    (lambda x: torch.linalg.vector_norm(x, 3), "linalg_vector_norm with ord/p=3"),
    (lambda x: F.normalize(x, p=0.5), "linalg_vector_norm with ord/p=0.5"),
    (lambda x: torch.cdist(x, x.detach() + 1, p=3), "cdist with ord/p=3"),
    (lambda x: F.pdist(x, p=1.5), "pdist with ord/p=1.5"),
])
def test_an_unsupported_order_is_refused_in_one_line(fn, what):
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (_randn(3, 4, dtype=F64).requires_grad_(),))
    msg = str(err.value)
    assert "\n" not in msg and what in msg and "ord 1, 2, inf and -inf are" in msg


def test_kl_div_of_a_differentiated_probability_target_is_refused_in_one_line():
    x, t = _randn(2, 3, dtype=F64).requires_grad_(), _t(P, F64).requires_grad_()
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(lambda x, t: F.kl_div(x, t, reduction="sum"), (x, t))
    msg = str(err.value)
    assert "\n" not in msg and "a target that requires grad" in msg
    assert "requires_grad=False" in msg and "aten.eq" in msg


# ------------------------------------------------------------------ the source line named
def _cumprod_fn(x):
    y = x * 2
    return torch.cumprod(y, 0).sum()


class _CumsumModule(nn.Module):
    def forward(self, x):
        y = x + 1
        return torch.cumprod(y, 0).sum()


def _line_of(obj, text: str) -> str:
    """``file:line: code`` of the line of ``obj``'s source holding ``text``."""
    lines, first = inspect.getsourcelines(obj)
    k = next(i for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(obj)}:{first + k}: {lines[k].strip()}"


def test_a_capture_error_names_the_line_of_a_loss_callable():
    def loss(out, target):
        return torch.cumprod(out - target, 0).sum()

    x = _randn(3, 2, dtype=F64)
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(module=nn.Linear(2, 2).double(), inputs=(x,), targets=(x,), loss=loss)
    assert f" at {_line_of(loss, 'torch.cumprod')} is not supported" in str(err.value)


@pytest.mark.parametrize("fn,obj", [(_cumprod_fn, _cumprod_fn),
                                    (_CumsumModule(), _CumsumModule.forward)],
                         ids=["function", "module_forward"])
def test_a_capture_error_names_the_users_own_line(fn, obj):
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (_randn(4, dtype=F64).requires_grad_(),))
    msg = str(err.value)
    assert "\n" not in msg and "aten.cumprod" in msg
    assert f" at {_line_of(obj, 'torch.cumprod')} is not supported" in msg
