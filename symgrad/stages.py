"""The scalar pipeline's stages: derive (the exact program and its compiled numpy / torch /
oracle / bound views, cached on the model), draw the samples, execute the backends, and the
exact values with each backend's running error bound (``exact``); the exact value of every step
at one point (``steps_at``). ``symgrad.judge`` turns their output into a Result and
``symgrad.verify`` runs them in order.

>>> import symgrad as sg
>>> from symgrad import zoo
>>> m, cfg = zoo.get("neuron"), sg.VerifyConfig(samples=4)
>>> compiled = derive(m, cfg)
>>> batch = draw(m, cfg)
>>> runs, outputs = execute(m, compiled, batch, None, cfg)
>>> sorted(runs), outputs["numpy"].shape
(['numpy', 'torch'], (4, 3))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import mpmath
import numpy as np

from . import oracle
from .backends import numpy as np_backend
from .backends import torch as torch_backend
from .backends.arb import Imprecise
from .bounds import compile_bound
from .cluster import map_ordered
from .compare import allowance
from .config import VerifyConfig
from .derive import Program, reverse_accumulation
from .errors import SymgradError
from .model import Model
from .precise.ladder import LIMIT_OFFSET
from .progress import phase
from .result import BackendRun


def param_columns(model: Model) -> list[tuple[str, int, int]]:
    """(block name, first column, last column + 1) of each parameter block; column 0 is the
    loss value."""
    blocks, col = [], 1
    for b in model.param_blocks:
        width = int(np.prod(b.shape)) if b.shape else 1
        blocks.append((b.name, col, col + width))
        col += width
    return blocks


@dataclass
class Compiled:
    """A model's derived program and its compiled views (cached on the model)."""

    program: Program
    numpy: Callable
    bound: Callable  # E of value, gradient, then of every kink site's argument of the oracle
    display_bound: Callable  # E of the textbook composition (what hand-written torch computes)
    torch: Callable
    oracle: Callable  # certified ball arithmetic (symgrad.oracle), with its kink sites


def derive(model: Model, cfg: VerifyConfig, timings: dict | None = None) -> Compiled:
    """Exact gradient program and its numpy / torch / oracle / bound views, cached per model."""
    np_dtype = cfg.dtype if cfg.dtype in ("float64", "float32", "float16") else "float32"
    key = ("compiled", np_dtype)
    if key not in model._cache:
        t0 = time.perf_counter()
        with phase(f"deriving {model.name} ({len(model.graph.nodes)} steps)",
                   enabled=cfg.progress):
            program = model._cache.get("program") or reverse_accumulation(model)
        model._cache["program"] = program
        t1 = time.perf_counter()
        with phase(f"compiling {model.name}", enabled=cfg.progress):
            # the oracle evaluates the model as written; the backends run its stable rewrite
            # (symgrad.stable), the same function: the oracle checks the rewrite on every run
            written = (reverse_accumulation(model, view="written") if model.graph.rewrites
                       else program)
            exact_fn = oracle.compile_oracle(written)
            sites = oracle.site_arguments(exact_fn)
            # one bound program: E of each output, then of each kink site's argument
            bound = compile_bound(program.assignments, program.leaves,
                                  (program.value, *program.gradient,
                                   *(sites if written is program else ())),
                                  np_backend.target("float64"))
            if written is not program:
                bound = _joined(bound, compile_bound(written.assignments, written.leaves,
                                                     sites, np_backend.target("float64")))
            has_display = bool(model.graph.rewrites) or any(
                getattr(n.symbol, "display", None) is not None for n in model.graph.nodes)
            display_bound = (np_backend.compile_bound(
                reverse_accumulation(model, view="display")) if has_display else bound)
            compiled = Compiled(program, np_backend.compile_gradient(program, np_dtype),
                                bound, display_bound,
                                getattr(model, "compile_torch",  # order 2: symgrad.hvp
                                        torch_backend.compile_forward)(program), exact_fn)
        model._cache[key] = compiled
        model._cache[key + ("times",)] = {"derive_s": t1 - t0,
                                          "compile_s": time.perf_counter() - t1}
    if timings is not None:
        timings.update(model._cache[key + ("times",)])
    return model._cache[key]


def _joined(outputs: Callable, sites: Callable) -> Callable:
    """One bound function: E of the outputs (the program run), then E of each kink site's
    argument (in the oracle's program, the model as written)."""
    def bound(X):
        return list(outputs(X)) + list(sites(X))
    bound.source = outputs.source + sites.source
    return bound


@dataclass
class Batch:
    """The samples of one run: per block, and as the program's flat leaves."""

    values: dict[str, np.ndarray]  # block name -> (N, *shape)
    X: np.ndarray  # (n_leaves, N): every scalar leaf, parameters first


def draw(model: Model, cfg: VerifyConfig) -> Batch:
    """Samples of every block from one seeded generator, rounded to the run's dtype."""
    values = model.draw(cfg.samples, np.random.default_rng(cfg.seed), cfg.dtype)
    X = np.concatenate([values[b.name].reshape(cfg.samples, -1) for b in model.blocks], axis=1).T
    return Batch(values, np.ascontiguousarray(X))


def execute(model: Model, compiled: Compiled, batch: Batch, torch_fn, cfg: VerifyConfig,
            chosen: Sequence[str] = ("numpy", "torch", "torch_fn")):
    """Run numpy, torch (the model's program, autograd) and the user's torch_fn (those
    ``chosen``)."""
    runs: dict[str, BackendRun] = {}
    outputs: dict[str, np.ndarray] = {}
    n, n_params = cfg.samples, len(compiled.program.gradient)
    np_dtype = cfg.dtype if cfg.dtype in ("float64", "float32", "float16") else "float32"

    if "numpy" in chosen:
        t0 = time.perf_counter()
        outputs["numpy"] = np_backend.run(compiled.numpy, batch.X, np_dtype)
        runs["numpy"] = BackendRun("numpy", np_dtype, "cpu", "vectorised",
                                   time.perf_counter() - t0, n)
    if "torch" in chosen:
        t0 = time.perf_counter()
        outputs["torch"] = torch_backend.run_program(compiled.torch, batch.X, n_params,
                                                     device=cfg.device, dtype=cfg.dtype)
        runs["torch"] = BackendRun("torch", cfg.dtype, cfg.device, "batched autograd",
                                   time.perf_counter() - t0, n)
    if torch_fn is not None and "torch_fn" in chosen:
        t0 = time.perf_counter()
        outputs["torch_fn"], mode = torch_backend.run_torch_fn(
            torch_fn, model.blocks, batch.values, device=cfg.device, dtype=cfg.dtype,
            batching=cfg.torch_fn_batching)
        runs["torch_fn"] = BackendRun("torch_fn", cfg.dtype, cfg.device, mode,
                                      time.perf_counter() - t0, n)
    return runs, outputs


def oracle_subset(program: Program, cfg: VerifyConfig) -> np.ndarray:
    """Indices of the samples the oracle evaluates: all, or the first K within the budget."""
    if cfg.oracle_samples is not None:
        k = min(cfg.oracle_samples, cfg.samples)
    else:
        cost = max(program.size["operations"], 1)
        k = int(min(cfg.samples, max(8, cfg.oracle_budget // cost)))
    return np.arange(k)


def exact(compiled: Compiled, batch: Batch, subset: np.ndarray, cfg: VerifyConfig,
          timings: dict, *, client=None, model: Model | None = None):
    """The certified exact outputs (``oracle.Exact``) and each backend's running error bound E.

    numpy and torch run the model's own program: E of that program. A torch_fn is the user's
    own composition: the larger of that E and the E of the textbook composition. The oracle
    tightens each entry against the smallest of these allowances, and treats a kink as reached
    where a site's argument is within its own rounding-error bound (in the run's dtype).
    """
    X = batch.X[:, subset]
    t0 = time.perf_counter()
    width = 1 + len(compiled.program.gradient)
    both = _limit_bound(compiled.bound, X)
    bound = both[:, :width]
    site_allow = allowance(both[:, width:], cfg.dtype, cfg.tolerance)
    display = _limit_bound(compiled.display_bound, X)[:, :width]
    allow = allowance(bound, cfg.dtype, cfg.tolerance)
    timings["bound_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    chunk = max(1, X.shape[1] // 20)
    tasks = [(X[:, part], allow[part], None if site_allow is None else site_allow[part],
              cfg.oracle_bits, cfg.oracle_max_bits)
             for part in (slice(s, s + chunk) for s in range(0, X.shape[1], chunk))]
    if client is not None and model is not None:  # chunks as Dask tasks, results in order
        parts = list(map_ordered(client, _oracle_chunk, tasks, key=f"oracle-{model.name}",
                                 shared=model))
    else:
        parts = []
        with phase("exact derivative (oracle)", enabled=cfg.progress, total=X.shape[1],
                   unit="sample") as bar:
            for task in tasks:
                parts.append(_oracle_chunk(task, None, compiled))
                bar.update(task[0].shape[1])
    timings["oracle_s"] = time.perf_counter() - t0
    vertices, labels, structure, offset = {}, {}, {}, 0  # chunk rows -> the whole batch's
    for p in parts:
        vertices.update({offset + i: v for i, v in p.vertices.items()})
        labels.update({offset + i: v for i, v in p.labels.items()})
        structure.update({offset + i: v for i, v in p.structure.items()})
        offset += len(p.bits)
    truth = oracle.Exact(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("hi", "lo", "uncertain", "bits")), vertices, labels,
                         structure)
    return truth, {"numpy": bound, "torch": bound, "torch_fn": np.fmax(bound, display)}




def _limit_bound(fn, X: np.ndarray) -> np.ndarray:
    """E of each output; where it is NaN at a sample with inputs exactly 0 (0 * log 0 in the
    bound of d/dy x**y at x = 0), the larger E of the two sides at 0 +- 2^-600, the same limit
    the oracle takes there (``oracle._limits``), so such an entry is checked, not waved through
    with an infinite allowance."""
    E = np_backend.run(fn, X, "float64")
    rows = np.flatnonzero(np.isnan(E).any(axis=1) & (X == 0).any(axis=0))
    if rows.size:
        sides = []
        for sign in (1.0, -1.0):
            Xs = X[:, rows].copy()
            Xs[Xs == 0] = sign * LIMIT_OFFSET
            sides.append(np_backend.run(fn, Xs, "float64"))
        near = np.fmax(*sides)
        E[rows] = np.where(np.isnan(E[rows]), near, E[rows])
    return E


def _oracle_chunk(task: tuple, model: Model | None, compiled: Compiled | None = None):
    """The certified exact outputs of one chunk of samples (``oracle.Exact``); on a Dask worker
    the model arrives alone and is derived there once (its cache lives with the worker)."""
    X, allow, site_allow, start_bits, max_bits = task
    fn = (compiled or derive(model, VerifyConfig())).oracle
    return oracle.evaluate(fn, X, allow, site_allow, start_bits=start_bits, max_bits=max_bits,
                           limits=True)


def args_of(model: Model, point: dict) -> list:
    """One sample (block name -> value, already checked) as the program's arguments.

    Arguments:
        model: the model.
        point: block name -> value (a number or an array of the block's shape).
    Returns:
        the scalar leaves in the model's order, as mpmath numbers (exact binary values).
    """
    return [mpmath.mpf(x) for b in model.blocks for x in np.ravel(point[b.name])]


def steps_at(model: Model, args: list, dps: int) -> dict:
    """The exact value of every leaf and every step of the model's textbook (display) program
    at one point, certified to ``dps`` digits.

    Arguments:
        model: the model.
        args: the program's arguments (``args_of``, or ``symgrad.verify``'s checked point).
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
