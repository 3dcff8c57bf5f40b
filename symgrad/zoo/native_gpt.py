"""Native torch.nn references for the GPT blocks and the whole GPT (used as ``torch_fn``).

Written the way a user writes GPT-2 in torch (nn.Embedding, nn.LayerNorm, nn.Linear,
nn.GELU(approximate="tanh"), causal attention, F.cross_entropy), independent of symgrad's sympy
description; parameters are loaded by name through torch.func.functional_call. Dropout takes the
model's explicit keep-masks so that both sides drop the same entries.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SymgradError


class CausalSelfAttention(nn.Module):
    weights_hook = None  # optional f(weights) -> weights, e.g. a planted backward bug in tests

    def __init__(self, C: int, n_heads: int, qkv_bias: bool, bias: bool = True) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.W_query = nn.Linear(C, C, bias=qkv_bias)
        self.W_key = nn.Linear(C, C, bias=qkv_bias)
        self.W_value = nn.Linear(C, C, bias=qkv_bias)
        self.out_proj = nn.Linear(C, C, bias=bias)

    def forward(self, x, keep=None, p=0.0):  # x: (T, C); keep: (H, T, T) or None
        T, C = x.shape
        hd = C // self.n_heads
        q = self.W_query(x).view(T, self.n_heads, hd).transpose(0, 1)  # (H, T, hd)
        k = self.W_key(x).view(T, self.n_heads, hd).transpose(0, 1)
        v = self.W_value(x).view(T, self.n_heads, hd).transpose(0, 1)
        scores = q @ k.transpose(1, 2) / math.sqrt(hd)  # (H, T, T)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        if self.weights_hook is not None:
            weights = self.weights_hook(weights)
        if keep is not None:
            weights = weights * keep / (1 - p)
        ctx = (weights @ v).transpose(0, 1).reshape(T, C)  # (T, C)
        return self.out_proj(ctx)


class Block(nn.Module):
    def __init__(self, C: int, n_heads: int, qkv_bias: bool, bias: bool = True,
                 gelu: str = "tanh") -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(C, eps=1e-5, bias=bias)
        self.att = CausalSelfAttention(C, n_heads, qkv_bias, bias)
        self.ln2 = nn.LayerNorm(C, eps=1e-5, bias=bias)
        self.ff = nn.Sequential(nn.Linear(C, 4 * C, bias=bias),
                                nn.GELU(approximate="tanh" if gelu == "tanh" else "none"),
                                nn.Linear(4 * C, C, bias=bias))

    def forward(self, x, masks, p):
        a = self.att(self.ln1(x), masks.get("attn"), p)
        x = x + (a * masks["drop1"] / (1 - p) if "drop1" in masks else a)
        f = self.ff(self.ln2(x))
        return x + (f * masks["drop2"] / (1 - p) if "drop2" in masks else f)


class GPT(nn.Module):
    """symgrad's own GPT layout in torch.nn (the ``symgrad`` layout of symgrad.modules)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        C = cfg.emb_dim
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, C)
        self.pos_emb = nn.Embedding(cfg.context_length, C)
        self.blocks = nn.ModuleList([Block(C, cfg.n_heads, cfg.qkv_bias, cfg.bias, cfg.gelu)
                                     for _ in range(cfg.n_layers)])
        self.final_norm = nn.LayerNorm(C, eps=1e-5, bias=cfg.bias)
        self.out_head = nn.Linear(C, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight

    def forward(self, ids, masks=None):
        """Logits (T, V) for ids (T,), or (1, T, V) for (1, T); ``masks`` are dropout
        keep-masks by site (none: no dropout)."""
        if ids.dim() == 2:
            return self.forward(ids[0], masks)[None]
        masks = masks or {}
        p = self.cfg.drop_rate
        T = ids.shape[0]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))  # (T, C)
        if "emb" in masks:
            x = x * masks["emb"] / (1 - p)
        for l, block in enumerate(self.blocks):
            x = block(x, masks.get(l, {}), p)
        return self.out_head(self.final_norm(x))  # (T, V)


_PARAM_NAMES = {"ln1_g": "ln1.weight", "ln1_b": "ln1.bias", "Wq": "att.W_query.weight",
                "bq": "att.W_query.bias", "Wk": "att.W_key.weight", "bk": "att.W_key.bias",
                "Wv": "att.W_value.weight", "bv": "att.W_value.bias",
                "Wo": "att.out_proj.weight", "bo": "att.out_proj.bias", "ln2_g": "ln2.weight",
                "ln2_b": "ln2.bias", "W1": "ff.0.weight", "b1": "ff.0.bias",
                "W2": "ff.2.weight", "b2": "ff.2.bias"}
_TOP = {"tok_emb": "tok_emb.weight", "pos_emb": "pos_emb.weight", "lnf_g": "final_norm.weight",
        "lnf_b": "final_norm.bias", "out_head": "out_head.weight"}


def param_names(l: int | None = None) -> dict[str, str]:
    """symgrad block name -> GPT parameter name (top level, or layer ``l``'s)."""
    if l is None:
        return dict(_TOP)
    return {f"h{l}_{k}": f"blocks.{l}.{v}" for k, v in _PARAM_NAMES.items()}


def reference(cfg, *, weights_hook=None, hook_layers=None):
    """torch_fn for a GPT of this config: takes every block by name (``**blocks``).
    ``weights_hook`` (e.g. a planted backward bug) goes on the attention weights of every
    layer, or of the layers in ``hook_layers`` only."""
    if hook_layers is not None and not set(hook_layers) <= set(range(cfg.n_layers)):
        raise SymgradError(f"hook_layers {sorted(hook_layers)}: this GPT has layers "
                           f"0..{cfg.n_layers - 1}; name those the hook goes on")
    with torch.random.fork_rng(devices=[]):  # its initial draw is never read: torch's global
        net = GPT(cfg)  # generator left as the caller had it
    for l, block in enumerate(net.blocks):
        if hook_layers is None or l in hook_layers:
            block.att.weights_hook = weights_hook
    for p in net.parameters():  # functional_call below supplies every parameter: the module's
        p.data = torch.empty(0, dtype=p.dtype)  # own are never read (GPT-2: 0.65 GB freed)

    def gpt_torch(**blocks):
        params, masks = {}, {}
        for name, value in blocks.items():
            if name in _TOP:
                params[_TOP[name]] = value
            elif name.startswith("h") and "_" in name:
                layer, _, key = name[1:].partition("_")
                l = int(layer)
                if key in _PARAM_NAMES:
                    params[f"blocks.{l}.{_PARAM_NAMES[key]}"] = value
                elif key.startswith("attn_keep"):
                    masks.setdefault(l, {}).setdefault("heads", {})[int(key[9:])] = value
                elif key in ("drop1", "drop2"):
                    masks.setdefault(l, {})[key] = value
            elif name == "emb_keep":
                masks["emb"] = value
        for l, m in masks.items():
            if isinstance(l, int) and "heads" in m:
                heads = m.pop("heads")
                m["attn"] = torch.stack([heads[h] for h in sorted(heads)])  # (H, T, T)
        logits = torch.func.functional_call(net, params, (blocks["ids"], masks))
        return F.cross_entropy(logits, blocks["targets"])
    return gpt_torch


# ------------------------------------------------------------------ single blocks
def embedding_block(tok_emb, pos_emb, ids):
    x = F.embedding(ids, tok_emb) + pos_emb[: ids.shape[0]]
    return (x**2).sum()


def layer_norm_block(X, g, b, R):
    return (F.layer_norm(X, (X.shape[-1],), g, b, eps=1e-5) * R).sum()


def gelu_block(approximate: str):
    act = nn.GELU(approximate=approximate)

    def fn(X, R):
        return (act(X) * R).sum()
    return fn


def softmax_block(X, R):
    return (torch.softmax(X, dim=-1) * R + torch.log_softmax(X, dim=-1) * R / 3).sum()


def attention_block(n_heads: int, qkv_bias: bool):
    def fn(**b):
        X = b["X"]
        att = CausalSelfAttention(X.shape[1], n_heads, qkv_bias)
        params = {"W_query.weight": b["Wq"], "W_key.weight": b["Wk"], "W_value.weight": b["Wv"],
                  "out_proj.weight": b["Wo"], "out_proj.bias": b["bo"]}
        if qkv_bias:
            params.update({"W_query.bias": b["bq"], "W_key.bias": b["bk"],
                           "W_value.bias": b["bv"]})
        keep = torch.stack([b[f"attn_keep{h}"] for h in range(n_heads)])
        y = torch.func.functional_call(att, params, (X, keep, 0.1))
        return (y**2).sum()
    return fn


def dropout_block(X, keep):
    return ((X * keep / (1 - 0.1)) ** 2).sum()


def feed_forward_block(W1, b1, W2, b2, X):
    h = F.gelu(X @ W1.T + b1, approximate="tanh")
    return ((X + h @ W2.T + b2) ** 2).sum()


def cross_entropy_block(logits, targets):
    return F.cross_entropy(logits, targets)
