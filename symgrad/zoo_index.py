"""The built-in models: each one's line and kind, the one table the zoo reads (``ZOO``), known
without building a model or importing torch or sympy: ``symgrad list`` prints the lines, the
command line refuses an unknown name with them before any heavy import, its help names the
models that take ``--config`` / ``--tokens`` (``GPT``), and ``symgrad.zoo`` builds each model
with its line as the description.

>>> "neuron" in NAMES and "gpt2" in LARGE and "gpt2_medium" in GPT, unknown_model("nueron")[:46]
(True, "unknown model 'nueron'; did you mean 'neuron'?")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import did_you_mean


@dataclass(frozen=True)
class Entry:
    """One built-in model: ``description``, its line (``symgrad list``, the model's own
    description in reports); ``gpt``: built by the GPT builder (``symgrad.zoo.gpt2``), so it
    takes ``config=`` / ``--config`` and ``tokens=`` / ``--tokens``; ``default``: in the
    default run (``zoo.names()``, ``symgrad report``; GPT-2 124M and medium take minutes)."""

    description: str
    gpt: bool = False
    default: bool = True


ZOO: dict[str, Entry] = {  # in the order ``symgrad list`` prints them
    "chain_rule": Entry("chain rule: y = sin(u), u = x^2, dy/dx = cos(x^2) * 2x"),
    "neuron": Entry("sigmoid neuron with binary cross-entropy: L = BCE(sigmoid(x w + b), y)"),
    "simplenet": Entry("Linear(10,5) -> ReLU -> Linear(5,1) -> Sigmoid -> BCELoss"),
    "tensor_ops": Entry("tensor ops: mse(R @ R.T, X) with R = A.reshape(3, 2)"),
    "gpt_embedding": Entry("token + position embedding (integer token ids select rows)"),
    "gpt_layer_norm": Entry("LayerNorm with gain, bias, eps=1e-5 inside the square root "
                            "(biased variance)"),
    "gpt_gelu_tanh": Entry("GELU, GPT-2's tanh approximation (torch approximate='tanh')"),
    "gpt_gelu_erf": Entry("GELU, the exact erf form (torch approximate='none')"),
    "gpt_softmax": Entry("softmax and log-softmax over the last axis"),
    "gpt_attention": Entry("causal multi-head self-attention with fixed dropout masks"),
    "gpt_dropout": Entry("dropout with an explicit keep-mask and 1/(1-p) scaling"),
    "gpt_feed_forward": Entry("residual + Linear(C,4C) -> GELU(tanh) -> Linear(4C,C)"),
    "gpt_cross_entropy": Entry("mean cross-entropy over next-token targets"),
    "tiny_gpt": Entry("a whole small GPT from a GPT_CONFIG-shaped dict (default 7,136 "
                      "parameters), a tensor program: gpt2's builder at a small config", gpt=True),
    "gpt2": Entry("GPT_CONFIG_124M as a tensor program (163,009,536 parameters); --tokens N, "
                  "--config overrides", gpt=True, default=False),
    "gpt2_medium": Entry("GPT-2 medium: 24 layers, width 1024, 16 heads (406,212,608 "
                         "parameters, untied); --tokens N, --config overrides", gpt=True,
                         default=False),
}
NAMES: list[str] = [n for n, e in ZOO.items() if e.default]  # ``zoo.names()``, in its order
LARGE: list[str] = [n for n, e in ZOO.items() if not e.default]  # listed after NAMES
GPT: list[str] = [n for n, e in ZOO.items() if e.gpt]  # they take config / tokens


def describe(name: str) -> str:
    """A built-in model's line (``KeyError`` for any other name)."""
    return ZOO[name].description


def known(name: str) -> bool:
    """Whether ``name`` is a built-in model's (``module:attr``, a user's, is not)."""
    return name in ZOO


def unknown_model(name: str) -> str:
    """The one-line error for a model name that is neither built in nor ``module:attr`` (a
    ``.py`` path alone: name the model inside it)."""
    if name.endswith(".py"):
        what = "is a file" if Path(name).is_file() else "is no built-in model and no file here"
        return (f"{name!r} {what}: for a model in a file, name the model inside it, "
                f"{name}:attr (attr: an sg.Model, or a function of no arguments returning one)")
    builtin = list(ZOO)
    hint = f"{h} " if (h := did_you_mean(name, builtin)) else ""
    return (f"unknown model {name!r}; {hint}built-in models: {', '.join(builtin)}; or give "
            "module:attr for your own")
