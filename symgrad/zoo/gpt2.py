"""The GPT-2 family as tensor programs, one builder: ``gpt2`` is GPT_CONFIG_124M exactly
(163,009,536 parameters), ``gpt2_medium`` GPT_CONFIG_355M (24 layers, width 1024, 16 heads;
406,212,608 parameters untied), ``tiny_gpt`` the same builder at the small config (7,136
parameters); any ``GPTConfig`` builds the same model at other sizes.

Semantics as in the book: token + position embeddings, ``n_layers`` pre-LayerNorm blocks
(causal multi-head attention with qkv_bias, out_proj with bias; Linear(C, 4C) -> tanh GELU ->
Linear(4C, C)), final LayerNorm (eps 1e-5, biased variance), an untied ``out_head`` without
bias, mean cross-entropy over next-token targets. Dropout is explicit keep-mask inputs with
1/(1-p) scaling, off by default (``dropout=False``; ``tiny_gpt`` has them when drop_rate > 0).
Block names: tok_emb, pos_emb, h{l}_Wq, ..., lnf_g, lnf_b, out_head. Each model
carries its ``GPTConfig`` (``model.gpt_config``) and whether it has keep-masks
(``model.dropout``), which ``symgrad.modules`` reads.

>>> m = gpt({"vocab_size": 11, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1})
>>> m.n_parameters, [b.name for b in m.input_blocks]
(1072, ['ids', 'targets'])
"""

from __future__ import annotations

import numpy as np

from .. import tensor as st
from ..domains import Bernoulli, Integers, Normal
from ..errors import SymgradError
from ..tensor.model import TensorModel
from .gpt import GPT_CONFIG_124M, GPT_CONFIG_355M, GPTConfig
from . import native_gpt


def _init(name: str) -> Normal:
    """GPT-2's regime: LayerNorm gains around 1, weights and biases small (std 0.02)."""
    return Normal(1.0, 0.1) if name.endswith("_g") else Normal(0.0, 0.02)


def _p(name: str, shape) -> st.Node:
    return st.param(name, shape, _init(name))


def _keep(name: str, shape, cfg: GPTConfig, dropout: bool):
    if not dropout or cfg.drop_rate == 0:
        return None
    return st.input(name, shape, Bernoulli(1 - cfg.drop_rate))


def _site(node: st.Node, name: str) -> st.Node:
    """Label an intermediate (``h0.ln1``, ``h0.attn``...): the node a user module's submodule
    output is compared with when locating where a forward departs (symgrad.tensor.departure)."""
    node.name = name
    return node


SITES = ("emb", "h{l}.ln1", "h{l}.attn", "h{l}.ln2", "h{l}.fc1", "h{l}.gelu", "h{l}.ff",
         "h{l}.out", "lnf", "logits")  # the labelled intermediates, in execution order


def block(x: st.Node, l: int, cfg: GPTConfig, *, dropout: bool = False) -> st.Node:
    """x + drop(attn(ln1(x))), then + drop(ff(ln2(.))): GPT-2's pre-LayerNorm block."""
    T, C = x.shape
    b = cfg.bias

    def bias(name, n):
        return _p(f"h{l}_{name}", (n,)) if b else None
    g1, b1_ = _p(f"h{l}_ln1_g", (C,)), bias("ln1_b", C)
    Wq, Wk, Wv, Wo = (_p(f"h{l}_{n}", (C, C)) for n in ("Wq", "Wk", "Wv", "Wo"))
    bo = bias("bo", C)
    qkv = {k: _p(f"h{l}_{k}", (C,)) for k in ("bq", "bk", "bv")} if cfg.qkv_bias else {}
    g2, b2_ = _p(f"h{l}_ln2_g", (C,)), bias("ln2_b", C)
    W1, bb1 = _p(f"h{l}_W1", (4 * C, C)), bias("b1", 4 * C)
    W2, bb2 = _p(f"h{l}_W2", (C, 4 * C)), bias("b2", C)
    attn_keep = None  # one (T, T) keep-mask input per head, as the scalar tiny_gpt names them
    if dropout and cfg.drop_rate:
        attn_keep = st.stack([_keep(f"h{l}_attn_keep{h}", (T, T), cfg, dropout)
                              for h in range(cfg.n_heads)])
    a = st.causal_self_attention(_site(st.layer_norm(x, g1, b1_), f"h{l}.ln1"), Wq, Wk, Wv, Wo,
                                 bo, n_heads=cfg.n_heads, attn_keep=attn_keep, p=cfg.drop_rate,
                                 **qkv)
    x = x + st.dropout(_site(a, f"h{l}.attn"), _keep(f"h{l}_drop1", (T, C), cfg, dropout),
                       cfg.drop_rate)
    h = _site(st.dense(_site(st.layer_norm(x, g2, b2_), f"h{l}.ln2"), W1, bb1), f"h{l}.fc1")
    f = _site(st.dense(_site(st.gelu(h, cfg.gelu), f"h{l}.gelu"), W2, bb2), f"h{l}.ff")
    return _site(x + st.dropout(f, _keep(f"h{l}_drop2", (T, C), cfg, dropout), cfg.drop_rate),
                 f"h{l}.out")


def gpt(config: dict | GPTConfig | None = None, *, tokens: int | None = None,
        dropout: bool = False, name: str = "gpt") -> TensorModel:
    """A GPT of ``config`` as a tensor model.

    Arguments:
        config: GPT_CONFIG-shaped dict (or ``GPTConfig``); missing keys: the small defaults.
        tokens: the sequence length of a sample (default: context_length); <= context_length.
        dropout: keep-mask inputs at every dropout site (rate ``drop_rate``); off by default.
        name: the model's name in reports.
    Returns:
        A ``TensorModel`` (parameters first: tok_emb, pos_emb, each layer's, lnf_g, lnf_b, out_head).
    """
    cfg = config if isinstance(config, GPTConfig) else GPTConfig.from_dict(config or {})
    V, C, ctx = cfg.vocab_size, cfg.emb_dim, cfg.context_length
    T = ctx if tokens is None else tokens
    if not isinstance(T, int) or not 1 <= T <= ctx:
        raise SymgradError(f"--tokens {tokens!r}: the sequence length must be an integer in "
                           f"1..context_length ({ctx})")
    tok, pos = _p("tok_emb", (V, C)), _p("pos_emb", (ctx, C))
    ids = st.input("ids", (T,), Integers(0, V - 1))
    targets = st.input("targets", (T,), Integers(0, V - 1))
    # positions 0..T-1: all rows of pos_emb, or a 0/1 selection of the first T (exact)
    p = pos if T == ctx else st.einsum("tp,pc->tc", st.const(np.eye(T, ctx), "first_rows"), pos)
    x = st.embedding(ids, tok) + p
    x = _site(st.dropout(x, _keep("emb_keep", (T, C), cfg, dropout), cfg.drop_rate), "emb")
    for l in range(cfg.n_layers):
        x = block(x, l, cfg, dropout=dropout)
    fg, fb = _p("lnf_g", (C,)), (_p("lnf_b", (C,)) if cfg.bias else None)
    head = tok if cfg.tie_weights else _p("out_head", (V, C))
    logits = _site(st.dense(_site(st.layer_norm(x, fg, fb), "lnf"), head), "logits")  # no bias
    loss = st.cross_entropy(logits, targets)
    params = _order(loss)
    desc = (f"GPT (tensor program): vocab {V}, context {ctx}, {T} tokens, emb {C}, "
            f"{cfg.n_heads} heads, {cfg.n_layers} layers, qkv_bias {cfg.qkv_bias}, bias "
            f"{cfg.bias}, tie_weights {cfg.tie_weights}, gelu {cfg.gelu}, dropout "
            f"{cfg.drop_rate if dropout else 'off'}")
    model = TensorModel(name, loss, description=desc, reference=_reference(cfg), params=params)
    model.gpt_config, model.dropout = cfg, bool(dropout and cfg.drop_rate)
    model.textbook = TEXTBOOK_OPS
    return model


# the ops of a GPT, in order of the forward pass: the report's textbook backward rules
# (``symgrad.present.formulas.INDEX_RULES``, one row per op)
TEXTBOOK_OPS = ("embedding", "dropout", "layer_norm", "score", "attention", "context",
                "residual", "gelu", "nll")


def _order(loss: st.Node) -> list[st.Node]:
    """tok_emb, pos_emb, the blocks' parameters layer by layer, then lnf_g, lnf_b, out_head."""
    found = [n for n in st.topological([loss]) if n.op == "param"]
    top = ["tok_emb", "pos_emb"]
    tail = ["lnf_g", "lnf_b", "out_head"]
    first = [n for k in top for n in found if n.name == k]
    last = [n for k in tail for n in found if n.name == k]
    middle = [n for n in found if n.name not in top + tail]
    return first + middle + last


def gpt2(config: dict | None = None, *, tokens: int | None = 64,
         dropout: bool = False) -> TensorModel:
    """GPT_CONFIG_124M (optionally overridden by ``config`` keys) at ``tokens`` tokens
    (default 64, or context_length if smaller)."""
    return _released(GPT_CONFIG_124M, config, tokens=tokens, dropout=dropout, name="gpt2")


def gpt2_medium(config: dict | None = None, *, tokens: int | None = 64,
                dropout: bool = False) -> TensorModel:
    """GPT-2 medium, ``GPT_CONFIG_355M`` (24 layers, width 1024, 16 heads; untied:
    406,212,608 parameters), optionally overridden by ``config`` keys, at ``tokens`` tokens
    (default 64, or context_length if smaller): ``gpt2`` at the larger size.

    Arguments:
        config: GPT_CONFIG-shaped overrides (e.g. ``{"n_layers": 2}``).
        tokens: the sequence length of a sample (<= context_length, 1024).
        dropout: keep-mask inputs at every dropout site; off by default.
    Returns:
        A ``TensorModel`` named ``gpt2_medium``.

    >>> m = gpt2_medium({"n_layers": 1, "vocab_size": 64}, tokens=4)
    >>> m.gpt_config.emb_dim, m.gpt_config.n_heads, m.n_parameters
    (1024, 16, 13774848)
    """
    return _released(GPT_CONFIG_355M, config, tokens=tokens, dropout=dropout,
                     name="gpt2_medium")


def _released(base: dict, config: dict | None, *, tokens: int | None, dropout: bool,
              name: str) -> TensorModel:
    """A released GPT-2 size (``base``, overridden by ``config``) at ``tokens`` tokens (None:
    64, or context_length if smaller)."""
    merged = {**base, **(config or {})}
    if tokens is None:
        tokens = min(64, merged["context_length"]) if isinstance(
            merged["context_length"], int) else 64
    return gpt(merged, tokens=tokens, dropout=dropout, name=name)


def tiny_gpt(config: dict | None = None, *, tokens: int | None = None,
             name: str = "tiny_gpt") -> TensorModel:
    """The zoo's ``tiny_gpt``: ``gpt`` at the small config (``TINY_CONFIG``, overridden by
    ``config``), with dropout keep-mask inputs when drop_rate > 0.

    >>> m = tiny_gpt()
    >>> m.n_parameters, m.gpt_config.n_layers, m.dropout
    (7136, 2, True)
    """
    cfg = GPTConfig.from_dict(config or {})
    return gpt(cfg, tokens=tokens, dropout=cfg.drop_rate > 0, name=name)


def eval_twin(model: TensorModel) -> TensorModel:
    """The same GPT without dropout keep-masks (a module in eval mode is verified against it);
    built once and cached on the model."""
    if not getattr(model, "dropout", False):
        return model
    if "eval_twin" not in model._cache:
        T = next(b.shape[0] for b in model.input_blocks if b.name == "ids")
        twin = gpt(model.gpt_config, tokens=T, dropout=False, name=model.name)
        twin.description = model.description + " (eval mode: dropout off)"
        model._cache["eval_twin"] = twin
    return model._cache["eval_twin"]


def _reference(cfg: GPTConfig):
    """The native torch.nn GPT (symgrad.zoo.native_gpt): it takes the same block names. Built
    on first call (GPT-2's module allocates 163M parameters)."""
    built: list = []

    def gpt_torch(**blocks):
        if not built:
            built.append(native_gpt.reference(cfg))
        return built[0](**blocks)
    return gpt_torch
