"""A GPT in the style of chapter 4 of "Build a Large Language Model (From Scratch)".

Written for symgrad's tests (same parameter names and structure as the book's GPTModel, own
code): config keys are GPT_CONFIG_124M's. Class attributes switch on the planted bugs used by
``scripts/planted_bugs.py`` and ``tests/test_modules.py``; all are off by default.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Bugs:
    """Planted bugs (all off by default); set on the class, restore after."""

    unbiased_var = False  # LayerNorm with the unbiased (n - 1) variance
    gelu_cubic = 0.044715  # GELU's cubic coefficient (bug: 0.0447)
    scale_by_emb = False  # attention scores scaled by sqrt(emb_dim) instead of sqrt(head_dim)
    mask_diagonal = 1  # causal mask: triu(diagonal=1); bug: 2 (each position sees the next)
    float32_constant = False  # sqrt(2/pi) computed as a float32 tensor inside a float64 model
    backward_hook = None  # f(tensor) -> tensor applied to the first Linear's output ...
    backward_layer = 0  # ... of this layer's feed-forward


class LayerNorm(nn.Module):
    def __init__(self, emb_dim: int) -> None:
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=Bugs.unbiased_var)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class GELU(nn.Module):
    def forward(self, x):
        c = (torch.sqrt(torch.tensor(2.0 / torch.pi)) if Bugs.float32_constant
             else math.sqrt(2.0 / math.pi))
        return 0.5 * x * (1 + torch.tanh(c * (x + Bugs.gelu_cubic * torch.pow(x, 3))))


class FeedForward(nn.Module):
    def __init__(self, cfg: dict, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer
        C = cfg["emb_dim"]
        self.layers = nn.Sequential(nn.Linear(C, 4 * C), GELU(), nn.Linear(4 * C, C))

    def forward(self, x):
        h = self.layers[0](x)
        if Bugs.backward_hook is not None and self.layer == Bugs.backward_layer:
            h = Bugs.backward_hook(h)
        return self.layers[2](self.layers[1](h))


class MultiHeadAttention(nn.Module):
    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float,
                 num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.d_out, self.num_heads, self.head_dim = d_out, num_heads, d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length),
                                                diagonal=1))

    def forward(self, x):
        b, T, _ = x.shape
        split = (b, T, self.num_heads, self.head_dim)
        q = self.W_query(x).view(split).transpose(1, 2)  # (b, H, T, hd)
        k = self.W_key(x).view(split).transpose(1, 2)
        v = self.W_value(x).view(split).transpose(1, 2)
        scores = q @ k.transpose(2, 3)  # (b, H, T, T)
        mask = self.mask if Bugs.mask_diagonal == 1 else torch.triu(
            torch.ones_like(self.mask), diagonal=Bugs.mask_diagonal)
        scores = scores.masked_fill(mask.bool()[:T, :T], -torch.inf)
        scale = self.d_out if Bugs.scale_by_emb else k.shape[-1]
        weights = self.dropout(torch.softmax(scores / scale**0.5, dim=-1))
        ctx = (weights @ v).transpose(1, 2).contiguous().view(b, T, self.d_out)
        return self.out_proj(ctx)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: dict, layer: int = 0) -> None:
        super().__init__()
        self.att = MultiHeadAttention(cfg["emb_dim"], cfg["emb_dim"], cfg["context_length"],
                                      cfg["drop_rate"], cfg["n_heads"], cfg["qkv_bias"])
        self.ff = FeedForward(cfg, layer)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg, l)
                                          for l in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        T = in_idx.shape[1]
        x = self.tok_emb(in_idx) + self.pos_emb(torch.arange(T, device=in_idx.device))
        x = self.trf_blocks(self.drop_emb(x))
        return self.out_head(self.final_norm(x))
