"""Layout and resampling ops captured (issue 18, symgrad.capture.layout and index): repeat
(nn.InstanceNorm2d), constant padding, x[index] (F.unfold), nearest and bilinear upsampling,
pixel shuffle, embedding bags (sum, mean, max; padding ids left out). Correct torch code passes
in float64 and float32 (at ReLU kinks, a constant plane, an id twice in a bag); a planted wrong
backward is caught and named by the module's or the argument's own name; what is refused is
one line naming the op and the user's source line."""

from __future__ import annotations

import inspect

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


def _module(make, dtype, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().to(dtype)


# ------------------------------------------------------------------ InstanceNorm (aten.repeat)
def _instance_norm():
    m = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
    return m


@DTYPES
def test_instance_norm_without_affine_and_a_constant_plane_passes(dtype):
    """A constant (n, c) plane: variance 0, x - mean exactly 0, eps keeps it finite."""
    x = _x(2, 3, 3, 3, dtype=dtype, grad=False)
    x[1, 2] = 0.75
    assert sg.gradcheck(nn.InstanceNorm2d(3), (x.requires_grad_(),), samples=2)


class InstanceNormFn(torch.autograd.Function):
    """F.instance_norm with a hand-written backward; ``drop_mean``: the planted bug, the
    backward without its mean term (dx = (g - y mean(g y)) / sigma)."""

    drop_mean = False

    @staticmethod
    def forward(ctx, x):
        y = F.instance_norm(x)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        ctx.save_for_backward(y, var)
        return y

    @staticmethod
    def backward(ctx, g):
        y, var = ctx.saved_tensors
        mean_g = 0 if InstanceNormFn.drop_mean else g.mean(dim=(2, 3), keepdim=True)
        return (g - mean_g - y * (g * y).mean(dim=(2, 3), keepdim=True)) / torch.sqrt(var + 1e-5)


@DTYPES
@pytest.mark.parametrize("planted", [False, True], ids=["correct", "mean_term_dropped"])
def test_instance_norm_backward_without_its_mean_term_is_caught(planted, dtype, monkeypatch):
    monkeypatch.setattr(InstanceNormFn, "drop_mean", planted)
    x = _x(2, 2, 3, 3, dtype=dtype)
    assert sg.gradcheck(InstanceNormFn.apply, (x,), samples=2, raise_exception=False) is (
        not planted)
    if planted:
        with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to x\["):
            sg.gradcheck(InstanceNormFn.apply, (x,), samples=2)


def test_an_output_from_batch_norms_saved_mean_is_refused_not_dropped():
    """Batch norm's saved statistics are not captured (InstanceNorm's running update reads
    them, and is no output); a user output computed from them is one line, not a loss term
    silently left out."""
    def f(x):
        out, mean, _ = torch.native_batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
        return out.sum() + mean.sum()
    with pytest.raises(sg.SymgradError, match=r"^capture: output 0 is computed from a batch "
                       r"norm's saved mean or rstd"):
        capture(f, (_x(4, 3, 5),))


@DTYPES
def test_repeat_is_a_tile(dtype):
    """x.repeat with more repeats than axes (a leading axis added), against torch's own."""
    x = _x(2, 3, dtype=dtype)
    assert sg.gradcheck(lambda x: (x.repeat(2, 1, 3) ** 2 * torch.arange(
        36, dtype=dtype).reshape(2, 2, 9)).sum(), (x,), samples=2)


# --------------------------------------------------------------- padding, unfold, x[index]
class _Unfolded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = nn.Linear(2 * 4, 3)

    def forward(self, x):
        return self.l(F.unfold(x, 2, padding=1, stride=2).transpose(1, 2))


OPS = {  # name -> (module factory, input shape)
    "instance_norm_train": (lambda: _instance_norm().train(), (2, 3, 4, 4)),  # aten.repeat
    "instance_norm_eval": (lambda: _instance_norm().eval(), (2, 3, 4, 4)),
    "pad_value": (lambda: nn.Sequential(nn.Conv1d(2, 2, 1), nn.ConstantPad1d((2, -1), 0.5),
                                        nn.Tanh()), (2, 2, 5)),
    "pad_2d_zero": (lambda: nn.Sequential(nn.ZeroPad2d((1, 0, 2, 1)), nn.Conv2d(2, 1, 2)),
                    (1, 2, 3, 3)),
    "unfold": (_Unfolded, (2, 2, 4, 4)),
    "upsample_nearest": (lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(scale_factor=2),
                                               nn.ReLU()), (1, 2, 3, 3)),
    "upsample_nearest_size": (lambda: nn.Sequential(nn.Conv2d(2, 2, 1),
                                                    nn.Upsample(size=(5, 7))), (1, 2, 3, 4)),
    "upsample_bilinear": (lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(
        scale_factor=2, mode="bilinear")), (1, 2, 3, 3)),
    "upsample_bilinear_align_corners": (lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(
        size=(7, 5), mode="bilinear", align_corners=True)), (1, 2, 3, 4)),
    "upsample_bilinear_scale_3": (lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(
        scale_factor=3, mode="bilinear")), (1, 2, 2, 3)),
    "upsample_linear_1d": (lambda: nn.Sequential(nn.Conv1d(2, 2, 1), nn.Upsample(
        scale_factor=2.5, mode="linear")), (1, 2, 4)),
    "pixel_shuffle": (lambda: nn.Sequential(nn.Conv2d(1, 4, 1), nn.PixelShuffle(2),
                                            nn.PixelUnshuffle(2)), (1, 1, 3, 3)),
}


@DTYPES
@pytest.mark.parametrize("name", sorted(OPS))
def test_layout_modules_pass(name, dtype):
    make, shape = OPS[name]
    assert sg.gradcheck(_module(make, dtype), (_x(*shape, dtype=dtype),), samples=2)


@pytest.mark.parametrize("name", ["upsample_nearest", "upsample_bilinear", "unfold",
                                  "pad_value", "instance_norm_train"])
def test_a_planted_parameter_gradient_is_caught_by_its_name(name):
    """A hook scaling the first layer's weight gradient by 1 + 1e-9 (float64)."""
    make, shape = OPS[name]
    m = _module(make, F64)
    first, weight = next((n, p) for n, p in m.named_parameters() if n.endswith("weight"))
    weight.register_hook(lambda g: g * (1 + 1e-9))
    with pytest.raises(sg.GradcheckError, match=rf"(?s)disagrees.*with respect to "
                       rf"{first.replace('.', '[.]')}\["):
        sg.gradcheck(m, (_x(*shape),), samples=2)


@pytest.mark.parametrize("kw", [{"size": (7, 4)}, {"scale_factor": 1.7},
                                {"size": (3, 2), "mode": "nearest-exact"},
                                {"size": (7, 2), "mode": "bilinear", "align_corners": True},
                                {"scale_factor": 3, "mode": "bilinear"}],
                         ids=["nearest_size", "nearest_scale_1.7", "nearest_exact",
                              "bilinear_align_corners", "bilinear_scale_3"])
def test_the_captured_forward_is_torchs_on_odd_sizes(kw):
    """The captured program's exact value (sg.exact_at) against torch's float64 forward
    (the gradient check compares backwards; this compares the forward): the nearest picks
    are torch's indices, the bilinear weights torch's formula."""
    x = _x(1, 1, 5, 3)
    c = capture(lambda x: F.interpolate(x, **kw), (x,))
    exact = float(sg.exact_at(c.model, c.example, dps=30)["value"])
    got = float(c.torch_fn()(x=x.detach()))
    assert abs(exact - got) <= 1e-14 * (1 + abs(exact)), (exact, got)


# ------------------------------------------------------------------------- embedding bags
class _Bags(nn.Module):
    def __init__(self, mode: str, weighted: bool = False) -> None:
        super().__init__()
        self.bag, self.weighted = nn.EmbeddingBag(10, 4, mode=mode), weighted

    def forward(self, ids, offsets, w):
        return self.bag(ids, offsets, per_sample_weights=w if self.weighted else None)


IDS, OFFSETS = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9, 1]), torch.tensor([0, 4, 4, 7])


@DTYPES
@pytest.mark.parametrize("mode,weighted", [("sum", False), ("mean", False), ("sum", True)],
                         ids=["sum", "mean", "sum_weighted"])
def test_embedding_bag_passes_with_an_empty_bag_and_a_repeated_id(mode, weighted, dtype):
    m = _module(lambda: _Bags(mode, weighted), dtype)
    w = _x(len(IDS), dtype=dtype, seed=3, grad=weighted)
    assert sg.gradcheck(m, (IDS, OFFSETS, w), samples=2)


def test_embedding_bag_with_a_planted_weight_gradient_is_caught():
    m = _module(lambda: _Bags("mean"), F64)
    m.bag.weight.register_hook(lambda g: g * (1 + 1e-9))
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to bag\.weight\["):
        sg.gradcheck(m, (IDS, OFFSETS, _x(len(IDS), grad=False)), samples=2)


@DTYPES
def test_embedding_bag_max_passes_with_an_id_twice_in_a_bag_and_an_empty_bag(dtype):
    """mode='max': a bag's max over its rows; the same id twice in a bag ties two copies of
    one entry (one derivative: torch's index choice is right); an empty bag is 0."""
    ids = torch.tensor([1, 2, 1, 5, 4, 3, 2, 9, 9])
    m = _module(lambda: _Bags("max"), dtype)
    assert sg.gradcheck(m, (ids, OFFSETS, _x(len(ids), dtype=dtype, grad=False)), samples=2)
    m.bag.weight.register_hook(lambda g: g * 2)  # the planted bug: twice the gradient
    with pytest.raises(sg.GradcheckError, match=r"(?s)disagrees.*with respect to bag\.weight\["):
        sg.gradcheck(m, (ids, OFFSETS, _x(len(ids), dtype=dtype, grad=False)), samples=2)


class _PaddedBags(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode=mode, padding_idx=0)

    def forward(self, ids, offsets):
        return self.bag(ids, offsets)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_leaves_padding_ids_out(mode):
    """Ids equal to padding_idx are out of their bags (and of the mean's count; a bag of
    padding only is 0): were they in, the exact derivative of weight[0] would not be 0,
    torch's is."""
    m = _module(lambda: _PaddedBags(mode), F64)
    ids = torch.tensor([1, 0, 4, 0, 0, 3, 2, 9, 1])
    offsets = torch.tensor([0, 3, 5, 7])  # bag 1: padding only
    assert sg.gradcheck(m, (ids, offsets), samples=2)


def test_a_bag_index_computed_from_a_float_input_is_refused_in_one_line_naming_the_line():
    class Computed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bag = nn.EmbeddingBag(10, 4)

        def forward(self, x, offsets):
            return self.bag((x.abs() * 3).long(), offsets)

    line = inspect.getsourcelines(Computed.forward)[1] + 1
    with pytest.raises(sg.SymgradError) as err:
        capture(_module(Computed, F64), (_x(6), torch.tensor([0, 3])))
    text = str(err.value)
    assert "\n" not in text and f"test_capture_layout.py:{line}" in text, text


def test_an_index_symgrad_cannot_lower_is_one_line_naming_the_users_line():
    """A selection matrix over PICKS_MAX entries is refused in one line, with the line that
    indexed (index tensors on axes that are not adjacent are lowered since capture22:
    test_capture_pool_index)."""
    def f(x):
        return x[torch.arange(4000) % 5000].sum()
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(f, (_x(5000),))
    text = str(err.value)
    line = inspect.getsourcelines(f)[1] + 1
    assert "\n" not in text and "aten.index.Tensor" in text, text
    assert f"test_capture_layout.py:{line}" in text, text
    assert "selection matrix" in text
