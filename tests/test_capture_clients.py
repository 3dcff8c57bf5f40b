"""Real clients captured whole: a CNN (train and eval), an LLaMA-style block, nn.LSTM; and a
convolution whose backward flips the kernel (must be caught)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture import export as export_mod
from tests.clients import LlamaBlock


def _x(*shape, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


# ------------------------------------------------------------------------ convolutional nets
class CNN(nn.Module):
    """conv (stride, padding) -> BatchNorm -> relu -> max-pool (padding) -> grouped conv with
    a residual -> avg-pool -> adaptive avg-pool -> linear -> cross-entropy; and a dilated
    Conv1d."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.bn, self.mp = nn.BatchNorm2d(4), nn.MaxPool2d(3, 2, 1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.ap, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(4, 3)
        self.c3 = nn.Conv1d(2, 3, 2, dilation=2)

    def forward(self, x):
        h = self.mp(F.relu(self.bn(self.c1(x))))
        h = F.avg_pool2d(h + self.c2(h), 2)
        logits = self.fc(torch.flatten(self.ap(h), 1))
        return F.cross_entropy(logits, torch.tensor([0, 2])) + self.c3(x[:, :2, 0]).pow(2).mean()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_cnn_passes_in_train_and_eval_mode(mode):
    torch.manual_seed(0)
    m = getattr(CNN().double(), mode)()
    m.bn.running_mean.uniform_(-0.5, 0.5)
    m.bn.running_var.uniform_(0.5, 2.0)
    c = sg.capture(m, (_x(2, 3, 7, 7, grad=False),))
    held = {b.name for b in c.model.input_blocks}  # eval: the running stats, at their values
    assert ("bn_running_mean" in held) is (mode == "eval")
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(2), backends=("torch_fn",))
    assert r.ok, r


class Conv(torch.autograd.Function):
    flip = False  # the planted bug: the input's gradient with the kernel flipped

    @staticmethod
    def forward(ctx, x, W):
        ctx.save_for_backward(x, W)
        return F.conv2d(x, W, padding=1)

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        Wt = W.flip(-1, -2) if Conv.flip else W
        return (F.conv_transpose2d(g, Wt, padding=1),
                torch.nn.grad.conv2d_weight(x, W.shape, g, padding=1))


@pytest.mark.parametrize("flip", [False, True])
def test_conv_backward_with_a_flipped_kernel_is_caught(flip, monkeypatch):
    monkeypatch.setattr(Conv, "flip", flip)
    args = (_x(1, 2, 5, 5, seed=1), _x(3, 2, 3, 3, seed=2))
    assert sg.gradcheck(Conv.apply, args, raise_exception=False) is (not flip)
    if flip:
        with pytest.raises(sg.GradcheckError, match=r"with respect to x\["):
            sg.gradcheck(Conv.apply, args)



# ------------------------------------------------------------------------ LLaMA-style, LSTM
def test_llama_block_passes():
    torch.manual_seed(0)
    c = sg.capture(LlamaBlock().double(), (_x(1, 4, 8, grad=False),))
    assert {"n1_w", "q_weight", "k_weight", "w3_weight"} <= {b.name for b in c.model.param_blocks}
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(2), backends=("torch_fn",))
    assert r.ok, r


def test_lstm_passes():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True).double()
    assert sg.gradcheck(lambda x, h0: lstm(x, (h0, h0))[0], (_x(1, 3, 3), _x(1, 1, 4, seed=1)))


class _Cache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = nn.Linear(3, 3)

    def forward(self, x):
        self.last = torch.tanh(self.l(x))  # the user's own tensor attribute, set in forward
        return self.last.sum()


def _export_warnings(m: nn.Module) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sg.capture(m, (_x(1, 3, 3, grad=False),))
    return [str(w.message) for w in caught if "assigned during export" in str(w.message)]


@pytest.mark.parametrize("where", ["top", "nested"])
def test_lstm_capture_prints_no_export_warning(where, monkeypatch):
    """nn.LSTM re-lists its own weights in forward (torch's ``_flat_weights``): export's
    'tensor attributes ... assigned during export' warning is torch's concern, not the
    user's, and is filtered (by its exact message) during the export call only; without the
    filter it is printed; a user's own attribute set in forward still warns."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    m = (lstm if where == "top" else nn.Sequential(nn.Linear(3, 3), lstm)).double()
    assert _export_warnings(m) == []
    monkeypatch.setattr(export_mod, "RNN_WEIGHTS", r"^(?!)")  # the filter off: it is printed
    assert any("_flat_weights" in w for w in _export_warnings(m))
    monkeypatch.undo()
    assert any("self.fn.last" in w for w in _export_warnings(_Cache().double()))
