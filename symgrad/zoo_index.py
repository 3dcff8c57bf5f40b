"""The built-in models' names and one-line descriptions, known without building a model or
importing torch or sympy: ``symgrad list`` prints them and the command line refuses an unknown
name with them before any heavy import (``symgrad.zoo`` builds the models by these names).

>>> "neuron" in NAMES and "gpt2" in TENSOR_ONLY, unknown_model("nueron")[:46]
(True, "unknown model 'nueron'; did you mean 'neuron'?")
"""

from __future__ import annotations

from pathlib import Path

from .errors import did_you_mean

DESCRIPTIONS: dict[str, str] = {  # the built-in models ``zoo.names()`` lists, in its order
    "chain_rule": "chain rule: y = sin(u), u = x^2, dy/dx = cos(x^2) * 2x",
    "neuron": "sigmoid neuron with binary cross-entropy: L = BCE(sigmoid(x w + b), y)",
    "simplenet": "Linear(10,5) -> ReLU -> Linear(5,1) -> Sigmoid -> BCELoss",
    "tensor_ops": "tensor ops: mse(R @ R.T, X) with R = A.reshape(3, 2)",
    "gpt_embedding": "token + position embedding (integer token ids select rows)",
    "gpt_layer_norm": "LayerNorm with gain, bias, eps=1e-5 inside the square root",
    "gpt_gelu_tanh": "GELU, GPT-2's tanh approximation (torch approximate='tanh')",
    "gpt_gelu_erf": "GELU, the exact erf form (torch approximate='none')",
    "gpt_softmax": "softmax and log-softmax over the last axis",
    "gpt_attention": "causal multi-head self-attention with qkv bias and fixed dropout masks",
    "gpt_dropout": "dropout with an explicit keep-mask and 1/(1-p) scaling",
    "gpt_feed_forward": "residual + Linear(C,4C) -> GELU(tanh) -> Linear(4C,C)",
    "gpt_cross_entropy": "mean cross-entropy over next-token targets",
    "tiny_gpt": "a whole small GPT from a GPT_CONFIG-shaped dict (default 7,136 parameters), "
                "a tensor program: gpt2's builder at a small config",
}
NAMES: list[str] = list(DESCRIPTIONS)

# models only built as tensor programs (``symgrad list`` shows them after ``NAMES``; gpt2 and
# gpt2_medium are not in the default report run: GPT-2 124M takes minutes)
TENSOR_ONLY: dict[str, str] = {
    "gpt2": "GPT_CONFIG_124M as a tensor program (163,009,536 parameters); --tokens N, "
            "--config overrides",
    "gpt2_medium": "GPT-2 medium: 24 layers, width 1024, 16 heads (406,212,608 parameters, "
                   "untied); --tokens N, --config overrides"}


def known(name: str) -> bool:
    """Whether ``name`` is a built-in model's (``module:attr``, a user's, is not)."""
    return name in DESCRIPTIONS or name in TENSOR_ONLY


def unknown_model(name: str) -> str:
    """The one-line error for a model name that is neither built in nor ``module:attr`` (a
    ``.py`` path alone: name the model inside it)."""
    if name.endswith(".py"):
        what = "is a file" if Path(name).is_file() else "is no built-in model and no file here"
        return (f"{name!r} {what}: for a model in a file, name the model inside it, "
                f"{name}:attr (attr: an sg.Model, or a function of no arguments returning one)")
    builtin = NAMES + list(TENSOR_ONLY)
    hint = f"{h} " if (h := did_you_mean(name, builtin)) else ""
    return (f"unknown model {name!r}; {hint}built-in models: {', '.join(builtin)}; or give "
            "module:attr for your own")
