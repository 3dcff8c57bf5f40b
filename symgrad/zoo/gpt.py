"""GPT-2's building blocks as built-in models, the GPT config, and an independent scalar
builder of a small GPT (``tiny_gpt`` here): the zoo's ``tiny_gpt`` is the tensor program of
``symgrad.zoo.gpt2``; this one is kept as the tests' cross-check (tensor gradient = scalar
gradient to 40 digits).

The config has exactly GPT_CONFIG_124M's keys (vocab_size, context_length, emb_dim, n_heads,
n_layers, drop_rate, qkv_bias). Dropout uses explicit keep-mask inputs with 1/(1-p) scaling, so
it is deterministic and verifiable. Each model carries a native torch.nn reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from .. import ops
from ..domains import Bernoulli, Integers, Normal
from ..errors import SymgradError
from ..model import Model, matrix
from . import native_gpt

GPT_CONFIG_124M = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
                   "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}
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
    try:
        text = path.read_text() if path.suffix == ".json" and path.exists() else text_or_path
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SymgradError(f"--config: not a JSON object or a .json file: {exc}") from None


def _keep(name: str, rows: int, cols: int, cfg: GPTConfig, inputs: dict):
    if cfg.drop_rate == 0:
        return None
    m = matrix(name, rows, cols)
    inputs[m] = Bernoulli(1 - cfg.drop_rate)
    return m


def _block_params(l: int, cfg: GPTConfig, params: list) -> dict:
    """Layer l's parameters by short name; biases only where the config has them."""
    C = cfg.emb_dim
    names = {"ln1_g": (C,), "ln1_b": (C,), "Wq": (C, C), "Wk": (C, C), "Wv": (C, C),
             "Wo": (C, C), "bo": (C,), "ln2_g": (C,), "ln2_b": (C,), "W1": (4 * C, C),
             "b1": (4 * C,), "W2": (C, 4 * C), "b2": (C,)}
    if cfg.qkv_bias:
        names.update({"bq": (C,), "bk": (C,), "bv": (C,)})
    if not cfg.bias:
        names = {k: v for k, v in names.items() if k not in BIASES}
    out = {k: matrix(f"h{l}_{k}", *shape) for k, shape in names.items()}
    params.extend(out.values())
    return out


BIASES = ("ln1_b", "ln2_b", "bo", "b1", "b2")  # what bias=False removes (and lnf_b)


def _layer_norm(X, g, b):
    """LayerNorm with gain g and, where the config has biases, shift b (else none)."""
    return ops.layer_norm(X, g, b if b is not None else sp.zeros(len(g), 1))


def _gelu_kind(cfg: GPTConfig) -> str:
    return "tanh" if cfg.gelu == "tanh" else "none"


def transformer_block(X, l: int, cfg: GPTConfig, params: list, inputs: dict):
    """x + drop(attn(ln1(x))), then + drop(ff(ln2(.))): GPT-2's pre-LayerNorm block."""
    T, C = X.shape
    P = _block_params(l, cfg, params)
    attn_keep = None
    if cfg.drop_rate:
        attn_keep = [_keep(f"h{l}_attn_keep{h}", T, T, cfg, inputs) for h in range(cfg.n_heads)]
    a = ops.causal_self_attention(_layer_norm(X, P["ln1_g"], P.get("ln1_b")), P["Wq"], P["Wk"],
                                  P["Wv"], P["Wo"], P.get("bo"), n_heads=cfg.n_heads,
                                  bq=P.get("bq"), bk=P.get("bk"), bv=P.get("bv"),
                                  attn_keep=attn_keep, p=cfg.drop_rate)
    keep = _keep(f"h{l}_drop1", T, C, cfg, inputs)
    X = ops.add(X, ops.dropout(a, keep, cfg.drop_rate) if keep is not None else a)
    hidden = ops.dense(_layer_norm(X, P["ln2_g"], P.get("ln2_b")), P["W1"], P.get("b1"))
    f = ops.dense(ops.gelu(hidden, approximate=_gelu_kind(cfg)), P["W2"], P.get("b2"))
    keep = _keep(f"h{l}_drop2", T, C, cfg, inputs)
    return ops.add(X, ops.dropout(f, keep, cfg.drop_rate) if keep is not None else f)


def tiny_gpt(config: dict | None = None, *, name: str = "tiny_gpt") -> Model:
    """A whole GPT (embeddings, n_layers blocks, final LayerNorm, output head, mean
    cross-entropy over next-token targets) from a GPT_CONFIG-shaped dict, as a scalar program:
    the independent cross-check of ``symgrad.zoo.gpt2.tiny_gpt`` (the zoo's ``tiny_gpt``).

    The extensions: ``tie_weights`` (the output head is ``tok_emb`` itself, so its gradient
    sums both uses), ``bias`` (False: no LayerNorm shifts, no out_proj / feed-forward biases,
    as nanoGPT's ``bias=False``), ``gelu`` ("erf": nn.GELU()'s exact form).
    The config is kept as ``model.gpt_config`` (a ``GPTConfig``).

    >>> m = tiny_gpt({"vocab_size": 5, "context_length": 2, "emb_dim": 4, "n_heads": 1,
    ...               "n_layers": 1, "drop_rate": 0.0, "tie_weights": True, "bias": False})
    >>> [b.name for b in m.param_blocks]
    ['tok_emb', 'pos_emb', 'h0_ln1_g', 'h0_Wq', 'h0_Wk', 'h0_Wv', 'h0_Wo', 'h0_ln2_g', 'h0_W1', 'h0_W2', 'lnf_g']
    """
    cfg = GPTConfig.from_dict(config or {})
    V, T, C = cfg.vocab_size, cfg.context_length, cfg.emb_dim
    params: list = []
    inputs: dict = {}
    tok, pos = matrix("tok_emb", V, C), matrix("pos_emb", T, C)
    params += [tok, pos]
    ids, targets = matrix("ids", T), matrix("targets", T)
    inputs[ids] = Integers(0, V - 1)
    inputs[targets] = Integers(0, V - 1)
    X = ops.add(ops.embedding(ids, tok), pos)  # (T, C)
    keep = _keep("emb_keep", T, C, cfg, inputs)
    if keep is not None:
        X = ops.dropout(X, keep, cfg.drop_rate)
    for l in range(cfg.n_layers):
        X = transformer_block(X, l, cfg, params, inputs)
    fg = matrix("lnf_g", C)
    fb = matrix("lnf_b", C) if cfg.bias else None
    head = tok if cfg.tie_weights else matrix("out_head", V, C)
    params += [p for p in (fg, fb) if p is not None] + ([] if cfg.tie_weights else [head])
    logits = ops.dense(_layer_norm(X, fg, fb), head)  # (T, V)
    loss = ops.cross_entropy(logits, targets, label="L")
    desc = (f"GPT: vocab {V}, context {T}, emb {C}, {cfg.n_heads} heads, {cfg.n_layers} layers, "
            f"drop {cfg.drop_rate}, qkv_bias {cfg.qkv_bias}"
            + "".join(f", {k} {getattr(cfg, k)}" for k, d in CONFIG_EXTENSIONS.items()
                      if getattr(cfg, k) != d))
    model = Model(name, loss, params={p: _init(p) for p in params}, inputs=inputs,
                  description=desc, reference=native_gpt.reference(cfg))
    model.gpt_config = cfg
    return model


def _init(block) -> Normal:
    """GPT-like parameter scales (LayerNorm gains around 1, weights small): the model in the
    regime GPT-2 initialises and trains it in (std 0.02), where its gradients are well-conditioned."""
    name = block[0].name.split("_{")[0]
    if name.endswith("_g"):
        return Normal(1.0, 0.1)
    return Normal(0.0, 0.02)


# ------------------------------------------------------------------ single blocks (small shapes)
def _rowsum_of_squares(Y, label="L"):
    """A scalar loss that depends on every output entry: sum of y * w with fixed random weights
    would hide sign errors less; sum of squares is simple and sensitive."""
    return ops.total(sp.ImmutableMatrix(Y.shape[0], Y.shape[1], [y**2 for y in Y]), label=label)


def block_embedding() -> Model:
    ids, tok, pos = matrix("ids", 3), matrix("tok_emb", 5, 4), matrix("pos_emb", 3, 4)
    X = ops.add(ops.embedding(ids, tok), pos)
    return Model("gpt_embedding", _rowsum_of_squares(X), params=[tok, pos],
                 inputs={ids: Integers(0, 4)}, description="token + position embedding",
                 reference=native_gpt.embedding_block)


def block_layer_norm() -> Model:
    X, g, b = matrix("X", 3, 6), matrix("g", 6), matrix("b", 6)
    W = matrix("R", 3, 6)  # fixed random read-out (an input)
    Y = ops.layer_norm(X, g, b)
    loss = ops.total(sp.ImmutableMatrix(3, 6, [y * w for y, w in zip(Y, W)]))
    return Model("gpt_layer_norm", loss, params=[X, g, b], inputs={W: Normal()},
                 description="LayerNorm(6) with gain, bias, eps=1e-5 (biased variance)",
                 reference=native_gpt.layer_norm_block)


def block_gelu(approximate: str = "tanh") -> Model:
    X, R = matrix("X", 2, 3), matrix("R", 2, 3)
    Y = ops.gelu(X, approximate=approximate)
    loss = ops.total(sp.ImmutableMatrix(2, 3, [y * r for y, r in zip(Y, R)]))
    name = "gpt_gelu_tanh" if approximate == "tanh" else "gpt_gelu_erf"
    return Model(name, loss, params={X: Normal(0, 3)}, inputs={R: Normal()},
                 description=f"GELU(approximate={approximate!r})",
                 reference=native_gpt.gelu_block(approximate))


def block_softmax() -> Model:
    X, R = matrix("X", 2, 4), matrix("R", 2, 4)
    Y, Z = ops.softmax(X), ops.log_softmax(X)
    loss = ops.total(sp.ImmutableMatrix(2, 4, [y * r + z * r / 3 for y, z, r in zip(Y, Z, R)]))
    return Model("gpt_softmax", loss, params={X: Normal(0, 2)}, inputs={R: Normal()},
                 description="softmax and log-softmax over the last axis",
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
    return Model("gpt_attention", _rowsum_of_squares(Y), params=params, inputs=inputs,
                 description=f"causal multi-head self-attention: T {T}, C {C}, {H} heads, "
                             f"qkv_bias {qkv_bias}, attention dropout 0.1 (fixed masks)",
                 reference=native_gpt.attention_block(H, qkv_bias))


def block_dropout() -> Model:
    X, keep = matrix("X", 2, 3), matrix("keep", 2, 3)
    return Model("gpt_dropout", _rowsum_of_squares(ops.dropout(X, keep, 0.1)), params=[X],
                 inputs={keep: Bernoulli(0.9)},
                 description="dropout with an explicit keep-mask and 1/(1-p) scaling",
                 reference=native_gpt.dropout_block)


def block_feed_forward() -> Model:
    C = 3
    X = matrix("X", 2, C)
    W1, b1, W2, b2 = matrix("W1", 4 * C, C), matrix("b1", 4 * C), matrix("W2", C, 4 * C), \
        matrix("b2", C)
    Y = ops.add(X, ops.feed_forward(X, W1, b1, W2, b2))
    return Model("gpt_feed_forward", _rowsum_of_squares(Y), params=[W1, b1, W2, b2, X],
                 description="residual + Linear(C,4C) -> GELU(tanh) -> Linear(4C,C)",
                 reference=native_gpt.feed_forward_block)


def block_cross_entropy() -> Model:
    logits, targets = matrix("logits", 3, 5), matrix("targets", 3)
    return Model("gpt_cross_entropy", ops.cross_entropy(logits, targets), params=[logits],
                 inputs={targets: Integers(0, 4)},
                 description="mean cross-entropy over next-token targets",
                 reference=native_gpt.cross_entropy_block)


BLOCKS = {
    "gpt_embedding": block_embedding, "gpt_layer_norm": block_layer_norm,
    "gpt_gelu_tanh": lambda: block_gelu("tanh"), "gpt_gelu_erf": lambda: block_gelu("none"),
    "gpt_softmax": block_softmax, "gpt_attention": block_attention,
    "gpt_dropout": block_dropout, "gpt_feed_forward": block_feed_forward,
    "gpt_cross_entropy": block_cross_entropy,
}
