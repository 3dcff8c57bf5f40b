"""The pipeline, top to bottom: model -> derive -> execute -> compare -> result.

>>> import sympy as sp, symgrad as sg
>>> x, y, w, b = sp.symbols("x y w b")
>>> model = sg.Model("neuron", sg.ops.bce(sg.ops.sigmoid(w * x + b), y), params=[w, b],
...                  inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
>>> sg.verify(model, samples=50, seed=0).ok
True
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

import mpmath
import numpy as np

from .backends import mpmath as mp_backend
from .backends import numpy as np_backend
from .backends import torch as torch_backend
from .compare import FAILING, KINK, LOSS, STATUS_NAMES, Tolerance, compare
from .config import VerifyConfig
from .derive import Program, reverse_accumulation
from .model import Model
from .result import BackendRun, Failure, Result


def verify(model: Model, *, torch_fn: Callable | None = None, samples: int = 500, seed: int = 0,
           device: str = "cpu", dtype: str = "float64", config: VerifyConfig | None = None,
           tolerance: Tolerance | None = None, at: dict | None = None,
           module=None, module_map=None, train: bool = False, loss: Callable | None = None,
           paths: tuple[str, ...] = ("eager",)) -> Result:
    """Verify every gradient of ``model`` against the exact derivative.

    Arguments:
        model: the ``sg.Model`` to verify.
        torch_fn: optional user torch code for the same model, ``fn(**blocks) -> scalar`` for one
            sample, arguments matched by block name; verified in addition to the model's own
            program run in torch.
        samples, seed, device, dtype: the run (ignored when ``config`` is given).
        config: a full ``VerifyConfig``.
        tolerance: override the verdict's knobs.
        at: explicit samples instead of random draws: block name -> array (N, *block shape);
            used by property-based tests (``symgrad.testing``).
        module: a user's ``torch.nn.Module`` verified by parameter name (``symgrad.modules``):
            GPT layouts (book, nanoGPT, Hugging Face GPT-2, symgrad's own) are detected from
            its parameter names; ``module_map`` gives any other mapping. ``train`` (dropout fed
            symgrad's keep-masks), ``loss(output, targets)``, ``paths`` ("eager", "compile",
            "sdpa-math", ...) apply to it.
    Returns:
        A ``Result``; ``result.ok`` is the verdict, ``print(result)`` a table per parameter.
    """
    cfg = config or VerifyConfig(samples=samples, seed=seed, device=device, dtype=dtype)
    given = _given(model, at, cfg.dtype) if at is not None else None
    if given is not None:
        cfg = replace(cfg, samples=given.X.shape[1])
    if tolerance is not None:
        cfg = replace(cfg, tolerance=tolerance)
    if module is not None:
        from .errors import SymgradError
        from .modules import ModuleOptions, verify_module
        if at is not None or torch_fn is not None:
            raise SymgradError("verify: module= runs the module itself; give at= and torch_fn= "
                               "without it")
        return verify_module(model, module, cfg=cfg, options=ModuleOptions(
            module_map, train, loss, tuple(paths) if not isinstance(paths, str) else (paths,)))
    torch_backend.check_device(cfg.device, cfg.dtype)
    if torch_fn is not None:
        torch_backend.check_torch_fn(torch_fn, [b.name for b in model.blocks])

    timings: dict[str, float] = {}
    compiled = derive(model, cfg, timings)
    batch = given or draw(model, cfg)
    runs, outputs = execute(model, compiled, batch, torch_fn, cfg)
    subset = oracle_subset(compiled.program, cfg)
    exact_hi, exact_lo, kink, bounds = exact(compiled, batch, subset, cfg, timings)
    comparisons = {name: compare(exact_hi, exact_lo, got[subset], bounds[name], backend=name,
                                 dtype=runs[name].dtype, tol=cfg.tolerance, kink=kink)
                   for name, got in outputs.items()}
    return summarize(model, cfg, compiled.program, runs, comparisons, batch, subset, timings)


@dataclass
class Compiled:
    """A model's derived program and its compiled views (cached on the model)."""

    program: Program
    numpy: Callable
    bound: Callable
    display_bound: Callable  # E of the textbook composition (what hand-written torch computes)
    torch: Callable
    oracle: Callable


def derive(model: Model, cfg: VerifyConfig, timings: dict | None = None) -> Compiled:
    """Exact gradient program and its numpy / torch / mpmath / bound views, cached per model."""
    np_dtype = cfg.dtype if cfg.dtype in ("float64", "float32", "float16") else "float32"
    key = ("compiled", np_dtype, cfg.oracle_dps)
    if key not in model._cache:
        if cfg.progress:
            print(f"  deriving and compiling {model.name} ({len(model.graph.nodes)} steps)…",
                  file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        program = model._cache.get("program") or reverse_accumulation(model)
        model._cache["program"] = program
        t1 = time.perf_counter()
        bound = np_backend.compile_bound(program)
        has_display = any(getattr(n.symbol, "display", None) is not None
                           for n in model.graph.nodes)
        display_bound = (np_backend.compile_bound(reverse_accumulation(model, view="display"))
                         if has_display else bound)
        compiled = Compiled(program, np_backend.compile_gradient(program, np_dtype),
                            bound, display_bound,
                            torch_backend.compile_forward(program),
                            mp_backend.compile_oracle(program, cfg.oracle_dps))
        model._cache[key] = compiled
        model._cache[key + ("times",)] = {"derive_s": t1 - t0,
                                          "compile_s": time.perf_counter() - t1}
    if timings is not None:
        timings.update(model._cache[key + ("times",)])
    return model._cache[key]


@dataclass
class Batch:
    values: dict[str, np.ndarray]  # block name -> (N, *shape)
    X: np.ndarray  # (n_leaves, N): every scalar leaf, parameters first


def draw(model: Model, cfg: VerifyConfig) -> Batch:
    """Samples of every block from one seeded generator, rounded to the run's dtype."""
    values = model.draw(cfg.samples, np.random.default_rng(cfg.seed), cfg.dtype)
    X = np.concatenate([values[b.name].reshape(cfg.samples, -1) for b in model.blocks], axis=1).T
    return Batch(values, np.ascontiguousarray(X))


def _given(model: Model, at: dict, dtype: str) -> Batch:
    """Explicit samples, checked against the blocks and rounded to the run's dtype."""
    from .errors import SymgradError
    from .model import round_to
    values, n = {}, None
    for b in model.blocks:
        if b.name not in at:
            raise SymgradError(f"at: no values for {b.name!r}; give every block: "
                               f"{', '.join(x.name for x in model.blocks)}")
        v = np.asarray(at[b.name], dtype=np.float64)
        if v.shape[1:] != b.shape or (n is not None and v.shape[0] != n):
            raise SymgradError(f"at: {b.name!r} must have shape (N, {', '.join(map(str, b.shape))})"
                               f" with the same N for every block; got {v.shape}")
        n = v.shape[0]
        values[b.name] = round_to(v, dtype)
    X = np.concatenate([values[b.name].reshape(n, -1) for b in model.blocks], axis=1).T
    return Batch(values, np.ascontiguousarray(X))


def execute(model: Model, compiled: Compiled, batch: Batch, torch_fn, cfg: VerifyConfig):
    """Run numpy, torch (the model's program, autograd) and the user's torch_fn."""
    runs: dict[str, BackendRun] = {}
    outputs: dict[str, np.ndarray] = {}
    n, n_params = cfg.samples, len(compiled.program.gradient)
    np_dtype = cfg.dtype if cfg.dtype in ("float64", "float32", "float16") else "float32"

    t0 = time.perf_counter()
    outputs["numpy"] = np_backend.run(compiled.numpy, batch.X, np_dtype)
    runs["numpy"] = BackendRun("numpy", np_dtype, "cpu", "vectorised", time.perf_counter() - t0, n)

    t0 = time.perf_counter()
    outputs["torch"] = torch_backend.run_program(compiled.torch, batch.X, n_params,
                                                 device=cfg.device, dtype=cfg.dtype)
    runs["torch"] = BackendRun("torch", cfg.dtype, cfg.device, "batched autograd",
                               time.perf_counter() - t0, n)
    if torch_fn is not None:
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
          timings: dict):
    """The oracle's exact outputs (double-double) and each backend's running error bound E.

    numpy and torch run the model's own program: E of that program. A torch_fn is the user's
    own composition: the larger of that E and the E of the textbook composition.
    """
    X = batch.X[:, subset]
    width = 1 + len(compiled.program.gradient)
    t0 = time.perf_counter()
    hi = np.empty((X.shape[1], width))
    lo, low, high = np.empty_like(hi), np.empty_like(hi), np.empty_like(hi)
    chunk = max(1, X.shape[1] // 20)
    for start in range(0, X.shape[1], chunk):
        part = slice(start, start + chunk)
        hi[part], lo[part], low[part], high[part] = mp_backend.run(
            compiled.oracle, X[:, part], cfg.oracle_dps, width)
        if cfg.progress:
            done = min(start + chunk, X.shape[1])
            bar = "#" * (30 * done // X.shape[1])
            print(f"\r  oracle [{bar:<30}] {done}/{X.shape[1]}", end="", file=sys.stderr,
                  flush=True)
    if cfg.progress:
        print(file=sys.stderr)
    timings["oracle_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bound = np_backend.run(compiled.bound, X, "float64")
    display = np_backend.run(compiled.display_bound, X, "float64")
    timings["bound_s"] = time.perf_counter() - t0
    return (hi, lo, (low, high),
            {"numpy": bound, "torch": bound, "torch_fn": np.fmax(bound, display)})


def summarize(model: Model, cfg: VerifyConfig, program: Program, runs, comparisons, batch: Batch,
              subset: np.ndarray, timings: dict) -> Result:
    """Failures (worst first, named by backend, output, sample, expected, got, ULPs)."""
    outputs = ["value"] + [f"d/d{e}" for e in model.entries]
    blocks, col = [], 1
    for b in model.param_blocks:
        width = int(np.prod(b.shape)) if b.shape else 1
        blocks.append((b.name, col, col + width))
        col += width
    failures, losses, worst, kinks = [], [], [], []
    for name, comp in comparisons.items():
        worst += _worst(name, comp, np.ones(comp.status.shape, bool), outputs, batch, subset, 3)
        kinks += _worst(name, comp, comp.status == KINK, outputs, batch, subset,
                        cfg.max_failures)
        failures += _worst(name, comp, np.isin(comp.status, FAILING), outputs, batch, subset,
                           cfg.max_failures)
        losses += _worst(name, comp, comp.status == LOSS, outputs, batch, subset,
                         cfg.max_failures)
    failures = [_with_cause(model, f) for f in failures]
    return Result(model.name, cfg, outputs, blocks, runs, comparisons, subset, failures, losses,
                  timings, program.size, worst, kinks)


def _with_cause(model: Model, failure: Failure) -> Failure:
    from .causes import classify
    cause = classify(model, failure)
    return replace(failure, cause=f"{cause.klass}: {cause.name}",
                    note=failure.note or cause.explanation)


def _worst(name, comp, mask, outputs, batch, subset, limit) -> list[Failure]:
    idx = np.argwhere(mask)
    if not len(idx):
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        badness = np.where(np.isfinite(comp.ulps), comp.ulps / comp.allowed_ulps, np.inf)
    order = np.argsort(-badness[mask], kind="stable")[:limit]
    found = []
    for i, k in idx[order]:
        s = int(subset[i])
        point = {b: _shown_value(v[s]) for b, v in batch.values.items()}
        status = int(comp.status[i, k])
        note = _convention(comp.kink_position[i, k]) if status == KINK else ""
        found.append(Failure(name, STATUS_NAMES[status], outputs[k], s, point,
                             float(comp.expected[i, k]), float(comp.got[i, k]),
                             float(comp.ulps[i, k]), float(comp.allowed_ulps[i, k]), note))
    return found


def _convention(position: float) -> str:
    """Where the backend's value sits in the subgradient interval, as an H(0) convention."""
    if not np.isfinite(position):
        return "at a kink"
    for value, name in ((0.0, "0"), (0.5, "1/2"), (1.0, "1")):
        if abs(position - value) < 0.05:
            return f"at a kink: the backend used the convention H(0) = {name}"
    return f"at a kink: the backend's value is {position:.2f} of the way across the subgradient"


def _shown_value(v: np.ndarray):
    """A block's value at one sample, for messages and JSON: whole up to 64 entries."""
    if not v.ndim:
        return float(v)
    if v.size <= 64:
        return v.tolist()
    return {"shape": list(v.shape), "first": v.ravel()[:64].tolist()}


def exact_at(model: Model, point: dict, *, dps: int = 50) -> dict[str, "mpmath.mpf"]:
    """The exact loss and gradient at one point, at ``dps`` digits.

    Arguments:
        model: the model.
        point: block name (or symbol) -> value (a number, or a nested list / array for a block).
        dps: significant digits.
    Returns:
        ``{"value": L, "d/dw": dL/dw, ...}`` as mpmath numbers.

    >>> import sympy as sp, symgrad as sg
    >>> from symgrad import zoo
    >>> g = sg.exact_at(zoo.get("neuron"), {"x": 1.1, "w": 2.2, "b": 0, "y": 1})
    >>> round(float(g["d/dw"]), 4), round(float(g["d/db"]), 4)
    (-0.0898, -0.0817)
    """
    args = _point_args(model, point, what="exact_at")
    cfg = VerifyConfig(oracle_dps=max(dps, 40))
    compiled = derive(model, cfg)
    with mpmath.workdps(dps):
        outs = compiled.oracle(args)
    return dict(zip(["value"] + [f"d/d{e}" for e in model.entries], outs))


def exact_steps(model: Model, point: dict, *, dps: int = 50) -> dict:
    """The exact value of every leaf and every step of the model's textbook (display) program
    at one point: ``{symbol: mpf}``. Used by explanations and root-cause recognition."""
    from .backends.mpmath import target
    from .codegen import compile_program

    args = _point_args(model, point, what="exact_steps")
    nodes = model.display_graph.nodes
    key = ("steps", dps)
    if key not in model._cache:
        with mpmath.workdps(dps):
            model._cache[key] = compile_program([(n.symbol, n.expr) for n in nodes],
                                                model.leaves, [n.symbol for n in nodes],
                                                target(dps), fname="steps")
    with mpmath.workdps(dps):
        values = model._cache[key](args)
    return {**dict(zip(model.leaves, args)), **{n.symbol: v for n, v in zip(nodes, values)}}


def _point_args(model: Model, point: dict, *, what: str) -> list:
    """One point (block name or symbol -> value) as the program's arguments, checked."""
    from .errors import SymgradError

    given = {str(k): v for k, v in point.items()}
    args = []
    for b in model.blocks:
        if b.name not in given:
            raise SymgradError(f"{what}: no value for {b.name!r}; give every parameter and "
                               f"input: {', '.join(x.name for x in model.blocks)}")
        v = np.asarray(given.pop(b.name), dtype=object)
        if v.shape != b.shape:
            raise SymgradError(f"{what}: {b.name!r} has shape {b.shape}, got {v.shape}")
        args += [mpmath.mpf(str(x)) if isinstance(x, str) else mpmath.mpf(x) for x in v.ravel()]
    if given:
        raise SymgradError(f"{what}: unknown name(s) {sorted(given)}")
    return args
