"""GPT-2's building blocks as built-in models (``BLOCKS``: small shapes, each with a native
torch.nn reference) and the GPT config (``GPTConfig``, ``GPT_CONFIG_124M``, ``GPT_CONFIG_355M``,
``load_config``), read by the tensor builder ``symgrad.zoo.gpt2`` (the zoo's ``gpt2``,
``gpt2_medium`` and ``tiny_gpt``).

The config has exactly GPT_CONFIG_124M's keys (vocab_size, context_length, emb_dim, n_heads,
n_layers, drop_rate, qkv_bias) plus three extensions (tie_weights, bias, gelu). Dropout uses
explicit keep-mask inputs with 1/(1-p) scaling, so it is deterministic and verifiable.

>>> GPTConfig.from_dict({"n_layers": 1}).n_layers, sorted(BLOCKS)[:2]
(1, ['gpt_attention', 'gpt_cross_entropy'])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from .. import ops
from ..domains import Bernoulli, Integers, Normal
from ..entries import matrix
from ..errors import SymgradError
from ..model import Model
from ..zoo_index import describe
from . import native_gpt

GPT_CONFIG_124M = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
                   "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}
# GPT-2 medium, the book's "gpt2-medium (355M)": GPT_CONFIG_124M at 24 layers of width 1024 with
# 16 heads (head size 64, as in 124M). 355M is Hugging Face's count (out_head tied to tok_emb,
# qkv biases); untied and without qkv biases, as the zoo builds it: 406,212,608 parameters
GPT_CONFIG_355M = {**GPT_CONFIG_124M, "emb_dim": 1024, "n_heads": 16, "n_layers": 24}
CONFIG_EXTENSIONS = {"tie_weights": False, "bias": True, "gelu": "tanh"}
TINY_CONFIG = {"vocab_size": 16, "context_length": 8, "emb_dim": 16, "n_heads": 2,
               "n_layers": 2, "drop_rate": 0.1, "qkv_bias": False}


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 16  # tokens
    context_length: int = 8  # positions; the sequence verified has this length
    emb_dim: int = 16  # C
    n_heads: int = 2  # attention heads; emb_dim must divide evenly
    n_layers: int = 2  # transformer blocks
    drop_rate: float = 0.1  # dropout rate of every dropout site (keep-masks are inputs)
    qkv_bias: bool = False  # biases on the query, key and value projections
    # extensions beyond GPT_CONFIG_124M's keys, for the layouts people run (nanoGPT, HF GPT-2):
    tie_weights: bool = False  # out_head shares tok_emb (nanoGPT, HF); the book unties them
    bias: bool = True  # biases of out_proj, the feed-forward Linears and LayerNorm shifts
    gelu: str = "tanh"  # "tanh" (GPT-2, HF gelu_new, the book) or "erf" (nanoGPT's nn.GELU())

    @staticmethod
    def from_dict(d: dict) -> "GPTConfig":
        if not isinstance(d, dict):
            raise SymgradError(f"GPT config must be a dict with keys {sorted(GPT_CONFIG_124M)}")
        unknown = set(d) - set(GPT_CONFIG_124M) - set(CONFIG_EXTENSIONS)
        if unknown:
            raise SymgradError(f"GPT config: unknown key(s) {sorted(unknown)}; the keys are "
                               f"{sorted(GPT_CONFIG_124M)} and the extensions "
                               f"{sorted(CONFIG_EXTENSIONS)}")
        cfg = GPTConfig(**{**TINY_CONFIG, **d})
        for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            if not isinstance(getattr(cfg, key), int) or getattr(cfg, key) < 1:
                raise SymgradError(f"GPT config: {key} must be a positive integer, "
                                   f"got {getattr(cfg, key)!r}")
        if cfg.vocab_size < 2:
            raise SymgradError("GPT config: vocab_size must be at least 2")
        if cfg.emb_dim % cfg.n_heads:
            raise SymgradError(f"GPT config: emb_dim {cfg.emb_dim} is not divisible by n_heads "
                               f"{cfg.n_heads}")
        for key in ("qkv_bias", "tie_weights", "bias"):
            if not isinstance(getattr(cfg, key), bool):
                raise SymgradError(f"GPT config: {key} must be true or false, "
                                   f"got {getattr(cfg, key)!r}")
        if cfg.gelu not in ("tanh", "erf"):
            raise SymgradError(f"GPT config: gelu must be \"tanh\" or \"erf\", got {cfg.gelu!r}")
        if not 0 <= cfg.drop_rate < 1:
            raise SymgradError(f"GPT config: drop_rate must be in [0, 1), got {cfg.drop_rate}")
        return cfg


def load_config(text_or_path: str) -> dict:
    """A JSON object, or the path of a JSON file (the CLI's --config)."""
    path = Path(text_or_path)
    if path.suffix == ".json" and not path.exists():
        raise SymgradError(f"--config: no such file {text_or_path!r}; give an existing .json "
                           "file or the JSON itself (e.g. --config '{\"n_layers\": 1}')")
    try:
        text = path.read_text() if path.suffix == ".json" and path.exists() else text_or_path
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SymgradError(f"--config: not a JSON object or a .json file: {exc}") from None


# ------------------------------------------------------------------ single blocks (small shapes)
def _rowsum_of_squares(Y, label="L"):
    """A scalar loss that depends on every output entry: sum of y * w with fixed random weights
    would hide sign errors less; sum of squares is simple and sensitive."""
    return ops.total(sp.ImmutableMatrix(Y.shape[0], Y.shape[1], [y**2 for y in Y]), label=label)


def block_embedding() -> Model:
    ids, tok, pos = matrix("ids", 3), matrix("tok_emb", 5, 4), matrix("pos_emb", 3, 4)
    X = ops.add(ops.embedding(ids, tok), pos)
    return Model("gpt_embedding", _rowsum_of_squares(X), params=[tok, pos],
                 inputs={ids: Integers(0, 4)}, description=describe("gpt_embedding"),
                 reference=native_gpt.embedding_block)


def block_layer_norm() -> Model:
    X, g, b = matrix("X", 3, 6), matrix("g", 6), matrix("b", 6)
    W = matrix("R", 3, 6)  # fixed random read-out (an input)
    Y = ops.layer_norm(X, g, b)
    loss = ops.total(sp.ImmutableMatrix(3, 6, [y * w for y, w in zip(Y, W)]))
    return Model("gpt_layer_norm", loss, params=[X, g, b], inputs={W: Normal()},
                 description=describe("gpt_layer_norm"),
                 reference=native_gpt.layer_norm_block)


def block_gelu(approximate: str = "tanh") -> Model:
    X, R = matrix("X", 2, 3), matrix("R", 2, 3)
    Y = ops.gelu(X, approximate=approximate)
    loss = ops.total(sp.ImmutableMatrix(2, 3, [y * r for y, r in zip(Y, R)]))
    name = "gpt_gelu_tanh" if approximate == "tanh" else "gpt_gelu_erf"
    return Model(name, loss, params={X: Normal(0, 3)}, inputs={R: Normal()},
                 description=describe(name),
                 reference=native_gpt.gelu_block(approximate))


def block_softmax() -> Model:
    X, R = matrix("X", 2, 4), matrix("R", 2, 4)
    Y, Z = ops.softmax(X), ops.log_softmax(X)
    loss = ops.total(sp.ImmutableMatrix(2, 4, [y * r + z * r / 3 for y, z, r in zip(Y, Z, R)]))
    return Model("gpt_softmax", loss, params={X: Normal(0, 2)}, inputs={R: Normal()},
                 description=describe("gpt_softmax"),
                 reference=native_gpt.softmax_block)


def block_attention(qkv_bias: bool = True) -> Model:
    T, C, H = 3, 4, 2
    X = matrix("X", T, C)
    Wq, Wk, Wv, Wo = (matrix(n, C, C) for n in ("Wq", "Wk", "Wv", "Wo"))
    bo = matrix("bo", C)
    params = [Wq, Wk, Wv, Wo, bo]
    biases = {}
    if qkv_bias:
        biases = {k: matrix(k, C) for k in ("bq", "bk", "bv")}
        params += list(biases.values())
    keep = [matrix(f"attn_keep{h}", T, T) for h in range(H)]
    inputs = {X: Normal(), **{k: Bernoulli(0.9) for k in keep}}
    Y = ops.causal_self_attention(X, Wq, Wk, Wv, Wo, bo, n_heads=H, attn_keep=keep, p=0.1,
                                  **biases)
    model = Model("gpt_attention", _rowsum_of_squares(Y), params=params, inputs=inputs,
                  description=f"{describe('gpt_attention')} (T {T}, C {C}, {H} heads, "
                              f"qkv_bias {qkv_bias}, attention dropout 0.1)",
                  reference=native_gpt.attention_block(H, qkv_bias))
    # head h's keep-mask and the steps ops.causal_self_attention labels per head: score^(h)
    model.layer_names = frozenset(f"{stem}{h}" for h in range(H)
                                  for stem in ("attn_keep", "score", "attn", "attnd", "lse"))
    return model


def block_dropout() -> Model:
    X, keep = matrix("X", 2, 3), matrix("keep", 2, 3)
    return Model("gpt_dropout", _rowsum_of_squares(ops.dropout(X, keep, 0.1)), params=[X],
                 inputs={keep: Bernoulli(0.9)},
                 description=describe("gpt_dropout"),
                 reference=native_gpt.dropout_block)


def block_feed_forward() -> Model:
    C = 3
    X = matrix("X", 2, C)
    W1, b1, W2, b2 = matrix("W1", 4 * C, C), matrix("b1", 4 * C), matrix("W2", C, 4 * C), \
        matrix("b2", C)
    Y = ops.add(X, ops.feed_forward(X, W1, b1, W2, b2))
    model = Model("gpt_feed_forward", _rowsum_of_squares(Y), params=[W1, b1, W2, b2, X],
                  description=describe("gpt_feed_forward"),
                  reference=native_gpt.feed_forward_block)
    model.layer_names = frozenset({"W1", "b1", "W2", "b2"})  # the two layers' W^(1), b^(2)
    return model


def block_cross_entropy() -> Model:
    logits, targets = matrix("logits", 3, 5), matrix("targets", 3)
    return Model("gpt_cross_entropy", ops.cross_entropy(logits, targets), params=[logits],
                 inputs={targets: Integers(0, 4)},
                 description=describe("gpt_cross_entropy"),
                 reference=native_gpt.cross_entropy_block)


BLOCKS = {
    "gpt_embedding": block_embedding, "gpt_layer_norm": block_layer_norm,
    "gpt_gelu_tanh": lambda: block_gelu("tanh"), "gpt_gelu_erf": lambda: block_gelu("none"),
    "gpt_softmax": block_softmax, "gpt_attention": block_attention,
    "gpt_dropout": block_dropout, "gpt_feed_forward": block_feed_forward,
    "gpt_cross_entropy": block_cross_entropy,
}
