"""What is left of the scalar pipeline's stages (issue 17 deleted the rest): a plain model's
derived scalar program with its torch view (``derive``: explain's torch column), its seeded
samples (``draw``: the report's reproduction note), and the exact value of every step at one
point (``steps_at``, ``certified``: ``exact_steps``, explain's step values), certified by the
scalar oracle (``symgrad.oracle``). Verification runs on the tensor program
(``symgrad.tensor.verify``).

>>> import symgrad as sg
>>> from symgrad import zoo
>>> m, cfg = zoo.get("neuron"), sg.VerifyConfig(samples=4)
>>> compiled = derive(m, cfg)
>>> batch = draw(m, cfg)
>>> len(compiled.program.gradient), batch.X.shape
(2, (4, 4))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import mpmath
import numpy as np

from . import oracle
from .backends import torch as torch_backend
from .backends.arb import Imprecise
from .config import VerifyConfig
from .derive import Program, reverse_accumulation
from .errors import SymgradError
from .model import Model
from .progress import phase


@dataclass
class Compiled:
    """A plain model's derived scalar program and its torch view (cached on the model)."""

    program: Program
    torch: Callable  # f(leaves) -> [value]: the program's forward in torch (autograd's input)


def derive(model: Model, cfg: VerifyConfig, timings: dict | None = None) -> Compiled:
    """The exact gradient program of ``model`` (scalar reverse accumulation) and its torch
    forward, cached per model.

    Arguments:
        model: a plain ``sg.Model``.
        cfg: the run (its ``progress``).
        timings: filled with ``derive_s`` and ``compile_s`` when given.
    Returns:
        A ``Compiled``.
    """
    key = ("compiled",)
    if key not in model._cache:
        t0 = time.perf_counter()
        with phase(f"deriving {model.name} ({len(model.graph.nodes)} steps)",
                   enabled=cfg.progress):
            program = model._cache.get("program") or reverse_accumulation(model)
        model._cache["program"] = program
        t1 = time.perf_counter()
        model._cache[key] = Compiled(program, torch_backend.compile_forward(program))
        model._cache[key + ("times",)] = {"derive_s": t1 - t0,
                                          "compile_s": time.perf_counter() - t1}
    if timings is not None:
        timings.update(model._cache[key + ("times",)])
    return model._cache[key]


@dataclass
class Batch:
    """The samples of one run: per block, and as the program's flat leaves."""

    values: dict[str, np.ndarray]  # block name -> (N, *shape)
    X: np.ndarray  # (n_leaves, N): every scalar leaf, parameters first


def draw(model: Model, cfg: VerifyConfig) -> Batch:
    """Samples of every block from one seeded generator, rounded to the run's dtype (the same
    samples ``sg.verify`` draws for the model's tensor program).

    Arguments:
        model: a plain ``sg.Model``.
        cfg: the run (its samples, seed and dtype).
    Returns:
        A ``Batch``.
    """
    values = model.draw(cfg.samples, np.random.default_rng(cfg.seed), cfg.dtype)
    X = np.concatenate([values[b.name].reshape(cfg.samples, -1) for b in model.blocks], axis=1).T
    return Batch(values, np.ascontiguousarray(X))


def steps_at(model: Model, args: list, dps: int) -> dict:
    """The exact value of every leaf and every step of the model's textbook (display) program
    at one point, certified to ``dps`` digits.

    Arguments:
        model: the model.
        args: the program's arguments (``symgrad.verify``'s checked point, as mpmath numbers).
        dps: significant digits.
    Returns:
        ``{symbol: mpf}`` for every leaf and step.
    """
    nodes = model.display_graph.nodes
    key = ("steps",)
    if key not in model._cache:
        model._cache[key] = oracle.compile_scalar([(n.symbol, n.expr) for n in nodes],
                                                  model.leaves, [n.symbol for n in nodes],
                                                  fname="steps")
    values = certified(model._cache[key], args, dps, "exact_steps")
    return {**dict(zip(model.leaves, args)), **{n.symbol: v for n, v in zip(nodes, values)}}


def certified(fn: Callable, args: list, dps: int, what: str) -> list:
    """The certified values of a compiled scalar oracle at one point.

    Arguments:
        fn: an ``oracle.compile_scalar`` / ``compile_oracle`` function.
        args: its arguments (mpmath numbers).
        dps: significant digits.
        what: the caller's name, for the error.
    Returns:
        the outputs as mpmath numbers.
    """
    try:
        return oracle.at_point(fn, args, digits=dps)
    except Imprecise:
        raise SymgradError(f"{what}: the exact value could not be certified within 4096 bits "
                           "(a branch or domain boundary sits exactly at this point)") from None
