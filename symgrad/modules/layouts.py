"""The GPT-2 layouts people run, as tables: symgrad block -> module parameter and view.

A row is ``key: (parameter name template, view)``; ``{l}`` is the layer. Views are named in
``VIEWS`` (whole, transpose, a third of a fused q/k/v tensor), so a layout is data, and one
detection rule (most blocks found with the right shape) picks it from the module's own names.

>>> from symgrad.modules.layouts import LAYOUTS
>>> LAYOUTS["book"].source("h1_W1")
('trf_blocks.1.ff.layers.0.weight', '')
>>> LAYOUTS["hf-gpt2"].source("h0_Wk")
('transformer.h.0.attn.c_attn.weight', 'cols1/3.T')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

# view name -> f(parameter tensor) -> the block's tensor (a view: selection / transpose only)
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "": lambda t: t,  # the whole parameter
    "T": lambda t: t.T,  # Conv1D stores (in, out); symgrad's weights are (out, in)
    **{f"rows{i}/3": (lambda i: lambda t: t.chunk(3, dim=0)[i])(i) for i in range(3)},
    **{f"cols{i}/3.T": (lambda i: lambda t: t.chunk(3, dim=1)[i].T)(i) for i in range(3)},
}
QKV = ("q", "k", "v")

_LAYER = re.compile(r"^h(?P<l>\d+)_(?P<key>.+)$")


@dataclass(frozen=True)
class Layout:
    """One GPT layout: how each symgrad block is stored in the module."""

    name: str
    description: str
    top: dict  # block name -> (parameter name, view)
    layer: dict  # block key (after h{l}_) -> (parameter template with {l}, view)

    def source(self, block: str) -> tuple[str, str] | None:
        """(parameter name, view name) of a symgrad block, or None when the layout lacks it."""
        if block in self.top:
            return self.top[block]
        m = _LAYER.match(block)
        if m and m.group("key") in self.layer:
            template, view = self.layer[m.group("key")]
            return template.format(l=m.group("l")), view
        return None


def _fused(prefix: str, weight_view: str, bias_view: str = "rows{i}/3") -> dict:
    """Wq/Wk/Wv and bq/bk/bv as thirds of one fused c_attn weight and bias."""
    rows = {}
    for i, x in enumerate(QKV):
        rows[f"W{x}"] = (f"{prefix}.c_attn.weight", weight_view.format(i=i))
        rows[f"b{x}"] = (f"{prefix}.c_attn.bias", bias_view.format(i=i))
    return rows


def _transformer_h(conv1d: bool) -> dict:
    """nanoGPT's and Hugging Face's shared names; HF's Conv1D stores weights transposed."""
    t = "T" if conv1d else ""
    h = "transformer.h.{l}"
    return {"ln1_g": (f"{h}.ln_1.weight", ""), "ln1_b": (f"{h}.ln_1.bias", ""),
            **_fused(f"{h}.attn", "cols{i}/3.T" if conv1d else "rows{i}/3"),
            "Wo": (f"{h}.attn.c_proj.weight", t), "bo": (f"{h}.attn.c_proj.bias", ""),
            "ln2_g": (f"{h}.ln_2.weight", ""), "ln2_b": (f"{h}.ln_2.bias", ""),
            "W1": (f"{h}.mlp.c_fc.weight", t), "b1": (f"{h}.mlp.c_fc.bias", ""),
            "W2": (f"{h}.mlp.c_proj.weight", t), "b2": (f"{h}.mlp.c_proj.bias", "")}


_TRANSFORMER_TOP = {"tok_emb": ("transformer.wte.weight", ""),
                    "pos_emb": ("transformer.wpe.weight", ""),
                    "lnf_g": ("transformer.ln_f.weight", ""),
                    "lnf_b": ("transformer.ln_f.bias", ""), "out_head": ("lm_head.weight", "")}

LAYOUTS: dict[str, Layout] = {
    "symgrad": Layout(
        "symgrad", "symgrad's own torch.nn GPT (symgrad.zoo.native_gpt.GPT)",
        {"tok_emb": ("tok_emb.weight", ""), "pos_emb": ("pos_emb.weight", ""),
         "lnf_g": ("final_norm.weight", ""), "lnf_b": ("final_norm.bias", ""),
         "out_head": ("out_head.weight", "")},
        {"ln1_g": ("blocks.{l}.ln1.weight", ""), "ln1_b": ("blocks.{l}.ln1.bias", ""),
         **{f"W{x}": (f"blocks.{{l}}.att.W_{n}.weight", "") for x, n in
            zip(QKV, ("query", "key", "value"))},
         **{f"b{x}": (f"blocks.{{l}}.att.W_{n}.bias", "") for x, n in
            zip(QKV, ("query", "key", "value"))},
         "Wo": ("blocks.{l}.att.out_proj.weight", ""), "bo": ("blocks.{l}.att.out_proj.bias", ""),
         "ln2_g": ("blocks.{l}.ln2.weight", ""), "ln2_b": ("blocks.{l}.ln2.bias", ""),
         "W1": ("blocks.{l}.ff.0.weight", ""), "b1": ("blocks.{l}.ff.0.bias", ""),
         "W2": ("blocks.{l}.ff.2.weight", ""), "b2": ("blocks.{l}.ff.2.bias", "")}),
    "book": Layout(
        "book", "GPTModel of 'Build a Large Language Model (From Scratch)', chapter 4",
        {"tok_emb": ("tok_emb.weight", ""), "pos_emb": ("pos_emb.weight", ""),
         "lnf_g": ("final_norm.scale", ""), "lnf_b": ("final_norm.shift", ""),
         "out_head": ("out_head.weight", "")},
        {"ln1_g": ("trf_blocks.{l}.norm1.scale", ""), "ln1_b": ("trf_blocks.{l}.norm1.shift", ""),
         **{f"W{x}": (f"trf_blocks.{{l}}.att.W_{n}.weight", "") for x, n in
            zip(QKV, ("query", "key", "value"))},
         **{f"b{x}": (f"trf_blocks.{{l}}.att.W_{n}.bias", "") for x, n in
            zip(QKV, ("query", "key", "value"))},
         "Wo": ("trf_blocks.{l}.att.out_proj.weight", ""),
         "bo": ("trf_blocks.{l}.att.out_proj.bias", ""),
         "ln2_g": ("trf_blocks.{l}.norm2.scale", ""), "ln2_b": ("trf_blocks.{l}.norm2.shift", ""),
         "W1": ("trf_blocks.{l}.ff.layers.0.weight", ""),
         "b1": ("trf_blocks.{l}.ff.layers.0.bias", ""),
         "W2": ("trf_blocks.{l}.ff.layers.2.weight", ""),
         "b2": ("trf_blocks.{l}.ff.layers.2.bias", "")}),
    "nanogpt": Layout("nanogpt", "nanoGPT's GPT (fused c_attn as nn.Linear, lm_head tied to wte)",
                      _TRANSFORMER_TOP, _transformer_h(conv1d=False)),
    "hf-gpt2": Layout("hf-gpt2", "Hugging Face transformers.GPT2LMHeadModel (Conv1D weights "
                      "stored (in, out), fused c_attn, lm_head tied to wte)",
                      _TRANSFORMER_TOP, _transformer_h(conv1d=True)),
}
