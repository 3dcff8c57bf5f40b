"""Real clients captured whole: a CNN (train and eval), an LLaMA-style block, nn.LSTM; and a
convolution whose backward flips the kernel (must be caught)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg


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
class RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


def rope(x, cos, sin):
    x1, x2 = x[..., :x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class LlamaBlock(nn.Module):
    """RMSNorm, RoPE, grouped-query causal SDPA (2 heads, 1 key/value head), SwiGLU."""

    def __init__(self, d: int = 8, heads: int = 2, kv: int = 1, T: int = 4) -> None:
        super().__init__()
        self.h, self.kv, self.hd = heads, kv, d // heads
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.k, self.v = (nn.Linear(d, kv * self.hd, bias=False) for _ in range(2))
        self.o = nn.Linear(d, d, bias=False)
        self.w1, self.w3 = (nn.Linear(d, 16, bias=False) for _ in range(2))
        self.w2 = nn.Linear(16, d, bias=False)
        pos = torch.arange(T)[:, None] * 10000 ** (-torch.arange(0, self.hd, 2) / self.hd)
        self.register_buffer("cos", torch.cat([pos, pos], -1).cos())
        self.register_buffer("sin", torch.cat([pos, pos], -1).sin())

    def forward(self, x):
        B, T, D = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k, v = (m(h).view(B, T, self.kv, self.hd).transpose(1, 2) for m in (self.k, self.v))
        q, k = rope(q, self.cos, self.sin), rope(k, self.cos, self.sin)
        k, v = (t.repeat_interleave(self.h // self.kv, 1) for t in (k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, D))
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


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
