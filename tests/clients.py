"""Real clients of symgrad's capture path, shared by the tests and ``scripts/sweep_clients.py``:
a small CNN (conv, BatchNorm, relu, max-pool, linear), an LLaMA-style block (RMSNorm, RoPE,
grouped-query causal SDPA, SwiGLU), a top-2 mixture of experts, a module with a custom
``autograd.Function``, and loss wrappers for nanoGPT and Hugging Face GPT-2. Each has a knob
that plants a wrong backward (``wrong``, ``router_grad``, ``Gain.factor``), so the tests that
use a client can also show the bug caught.

>>> with seeded(0):
...     m = LlamaBlock().double()
>>> tuple(m(torch.zeros(1, 4, 8, dtype=torch.float64)).shape)
(1, 4, 8)
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from symgrad import zoo
from symgrad.testing import scale_backward


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a module's construction (which draws from torch's global generator) at ``seed``,
    restoring the global generator afterwards.

    Arguments:
        seed: the seed of the construction.
    Returns:
        A context manager.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------ CNN
class CNN(nn.Module):
    """conv -> BatchNorm -> relu -> max-pool (or average pool) -> linear; ``wrong`` scales
    conv1.weight's gradient (the planted bug)."""

    def __init__(self, wrong: float = 1.0, pool: Callable = F.max_pool2d) -> None:
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 2 * 2, 3)
        self.wrong = wrong

    def forward(self, x):
        w = self.conv1.weight if self.wrong == 1.0 else scale_backward(self.conv1.weight,
                                                                        self.wrong)
        h = self.pool(F.relu(self.bn(F.conv2d(x, w, self.conv1.bias, padding=1))), 2)
        return self.fc(h.flatten(1))



def batchnorm_bias_case() -> tuple[nn.Module, torch.Tensor]:
    """Linear(3, 4) -> BatchNorm1d(4) -> Tanh in float64, drawn from seed 0, and its input x
    (5, 3): in train mode the Linear's bias has an exact gradient of 0 (BatchNorm removes the
    mean), so its entries are exact zeros measured against their terms' scale."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh()).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net, torch.randn(5, 3, generator=g, dtype=torch.float64)

def cnn(dtype: torch.dtype = torch.float64, wrong: float = 1.0, pool: Callable = F.max_pool2d,
        *, seed: int = 0) -> CNN:
    """A ``CNN`` built at ``seed`` with BatchNorm running statistics away from 0 / 1.

    Arguments:
        dtype: its parameters' dtype.
        wrong, pool: as ``CNN``.
        seed: the construction's seed (torch's global generator is restored).
    Returns:
        The module (train mode, as constructed).
    """
    with seeded(seed):
        m = CNN(wrong, pool).to(dtype)
        with torch.no_grad():
            m.bn.running_mean.uniform_(-0.5, 0.5)
            m.bn.running_var.uniform_(0.5, 2.0)
    return m


# ------------------------------------------------------------------------ LLaMA-style block
class RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


def rope(x, cos, sin):
    x1, x2 = x[..., :x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rope_tables(T: int, hd: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """RoPE's cos and sin tables (T, hd) computed in ``dtype`` from ``torch.arange``, as Hugging
    Face's LlamaRotaryEmbedding does in its forward.

    Arguments:
        T: positions; hd: the head dimension (even); dtype: the dtype they are computed in.
    Returns:
        ``(cos, sin)``.
    """
    pos = (torch.arange(T, dtype=dtype)[:, None]
           * 10000 ** (-torch.arange(0, hd, 2, dtype=dtype) / hd))
    pos = torch.cat([pos, pos], -1)
    return pos.cos(), pos.sin()


class LlamaBlock(nn.Module):
    """RMSNorm, RoPE, grouped-query causal SDPA (2 heads, 1 key/value head), SwiGLU.
    ``tables="buffer"``: the RoPE tables are float32 buffers; ``"forward"``: computed inside
    forward in the input's dtype (Hugging Face's LlamaRotaryEmbedding; in float64 they are not
    float32-exact)."""

    def __init__(self, d: int = 8, heads: int = 2, kv: int = 1, T: int = 4, *,
                 tables: str = "buffer") -> None:
        super().__init__()
        self.h, self.kv, self.hd = heads, kv, d // heads
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.k, self.v = (nn.Linear(d, kv * self.hd, bias=False) for _ in range(2))
        self.o = nn.Linear(d, d, bias=False)
        self.w1, self.w3 = (nn.Linear(d, 16, bias=False) for _ in range(2))
        self.w2 = nn.Linear(16, d, bias=False)
        self.tables = tables
        if tables == "buffer":
            cos, sin = rope_tables(T, self.hd)
            self.register_buffer("cos", cos)
            self.register_buffer("sin", sin)

    def _tables(self, T: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tables == "buffer":
            return self.cos, self.sin
        return rope_tables(T, self.hd, dtype)

    def forward(self, x):
        B, T, D = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k, v = (m(h).view(B, T, self.kv, self.hd).transpose(1, 2) for m in (self.k, self.v))
        cos, sin = self._tables(T, x.dtype)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k, v = (t.repeat_interleave(self.h // self.kv, 1) for t in (k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, D))
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


# ------------------------------------------------------------------------ mixture of experts
class MoE(nn.Module):
    """Top-2 of ``n`` SiLU experts; the router's gradient scaled by ``router_grad`` (0: the
    planted bug, a router whose gradient is dropped)."""

    def __init__(self, d: int = 4, n: int = 4, h: int = 6, router_grad: float = 1.0, *,
                 generator: torch.Generator | None = None) -> None:
        """``generator``: draw every weight from it (the router's as randn/2, then ``w1``,
        ``w2``), the same module every run (scripts/capture_planted.py); None: the router's
        default init and the global generator (``seeded``)."""
        super().__init__()
        self.router = nn.Linear(d, n, bias=False)
        if generator is not None:
            with torch.no_grad():
                self.router.weight.copy_(torch.randn(n, d, generator=generator) / 2)
        self.w1 = nn.Parameter(torch.randn(n, d, h, generator=generator) / 2)
        self.w2 = nn.Parameter(torch.randn(n, h, d, generator=generator) / 2)
        self.router_grad = router_grad

    def forward(self, x):
        logits = self.router(x)
        if self.router_grad != 1.0:
            logits = scale_backward(logits, self.router_grad)
        return route(logits, torch.einsum(
            "bnh,nhd->bnd", F.silu(torch.einsum("bd,ndh->bnh", x, self.w1)), self.w2))


def route(logits, E):
    """Top-2 gates (softmax of the two largest logits) scattered dense, times the experts."""
    vals, idx = logits.topk(2, -1)
    gates = torch.zeros_like(logits).scatter(-1, idx, F.softmax(vals, -1))
    return torch.einsum("bn,bnd->bd", gates, E)


# ------------------------------------------------------------------------ custom Function
class Gain(torch.autograd.Function):
    """x * g, its backward for g scaled by ``factor`` (1: correct)."""

    factor = 1.0

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return x * g

    @staticmethod
    def backward(ctx, grad):
        x, g = ctx.saved_tensors
        return grad * g, (grad * x).sum(0) * Gain.factor


@contextmanager
def gain_factor(factor: float) -> Iterator[None]:
    """``Gain``'s backward for its gain scaled by ``factor`` inside the block (restored on exit).

    Arguments:
        factor: the planted factor (1: correct).
    Returns:
        A context manager.
    """
    old, Gain.factor = Gain.factor, factor
    try:
        yield
    finally:
        Gain.factor = old


def planted_hook(m: nn.Module, param: str, factor: float) -> nn.Module:
    """``m`` with its parameter ``param``'s gradient scaled by ``factor`` by a tensor hook: the
    gradient an optimizer reads is wrong, the forward untouched (a planted bug of any module).

    Arguments:
        m: the module; param: a name of ``m.named_parameters()``; factor: the planted factor.
    Returns:
        ``m`` itself.

    >>> m = planted_hook(nn.Linear(2, 1), "bias", 2.0)
    >>> m(torch.zeros(1, 2)).sum().backward(); float(m.bias.grad)
    2.0
    """
    names = dict(m.named_parameters())
    if param not in names:
        raise ValueError(f"planted parameter {param!r} is not in {type(m).__name__}; choose "
                         f"from {sorted(names)[:6]}...")
    names[param].register_hook(lambda g: g * factor)
    return m


class Scaled(nn.Module):
    """tanh(Gain(linear(x), gain)): a module whose ``gain`` goes through a custom Function."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.gain = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))

    def forward(self, x):
        return torch.tanh(Gain.apply(self.lin(x), self.gain))


# ------------------------------------------------------------------------ GPT loss wrappers
class NanoLoss(nn.Module):
    """nanoGPT's own loss: ``model(idx, targets)[1]``."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, idx, targets):
        return self.m(idx, targets)[1]


class HFLoss(nn.Module):
    """Cross-entropy on GPT-2's logits (as the layout path's loss)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, idx, targets):
        return F.cross_entropy(self.m(input_ids=idx).logits.flatten(0, 1), targets.flatten())


# ------------------------------------------------------------------------ LSTM
class LSTMOut(nn.Module):
    """``nn.LSTM(3, 4)`` (batch first), its output sequence only."""

    def __init__(self, d: int = 3, h: int = 4) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d, h, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


_TINY_GPTS: dict = {}


def tiny_gpt(cfg: dict):
    """symgrad's tiny_gpt description of a GPT config, built once per process (its derivation
    is cached on it): the module path's twin of the book, nanoGPT and HF GPT-2 modules."""
    key = json.dumps(cfg, sort_keys=True)
    if key not in _TINY_GPTS:
        _TINY_GPTS[key] = zoo.get("tiny_gpt", config=cfg)
    return _TINY_GPTS[key]


class Square(torch.autograd.Function):
    """u**2 with a backward 2 u (1 + ERR): ERR = 0 is correct, and twice differentiable (the
    planted second-order bugs of test_kink_fallback and test_singular_rounding set ERR)."""

    ERR = 0.0

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return u * u

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * 2 * u * (1 + Square.ERR)


def scaled_tanh(factor: float) -> type[torch.autograd.Function]:
    """tanh as a custom autograd.Function whose backward is (1 - y**2) times ``factor``: 1.0 is
    correct, 1 + eps a planted relative error (test_capture_gradcheck_samples, test_torch_form)."""

    class ScaledTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * (1 - y * y) * factor

    return ScaledTanh



def scaled_square(factor: float) -> type[torch.autograd.Function]:
    """x -> x^2 as a custom autograd.Function whose backward is 2 x g times ``factor``: 1.0 is
    correct, 1 + eps a planted relative error (test_rerun_floor, test_capture)."""

    class ScaledSquare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2 * x * factor

    return ScaledSquare

class MaskedMean(torch.autograd.Function):
    """The mean of the rows of x (N, D) where mask (N,) is 1."""

    @staticmethod
    def forward(ctx, x, mask):
        m = mask.to(x.dtype)
        count = m.sum().clamp_min(1.0)
        ctx.save_for_backward(m, count)
        return (x * m[:, None]).sum(0) / count

    @staticmethod
    def backward(ctx, g):
        m, count = ctx.saved_tensors
        return g[None, :] * m[:, None] / count, None


class LeakyMaskedMean(MaskedMean):
    """The planted bug (newuser6's BuggyMaskedMean): a clamp in the backward only, so masked rows
    get 1e-7, not 0."""

    @staticmethod
    def backward(ctx, g):
        m, count = ctx.saved_tensors
        return g[None, :] * m.clamp_min(1e-7)[:, None] / count, None
