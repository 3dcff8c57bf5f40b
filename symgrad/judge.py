"""The scalar pipeline's verdict: the exact values, every backend's comparison (entry, kink
and block tests; beyond the fast allowance the rigorous enclosure decides), the confirmation of
every suspicion (``symgrad.confirm``), the failures with their root causes, and the Result.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from . import rigorous
from .backends import numpy as np_backend
from .backends import torch as torch_backend
from .causes import Context, classify, op_values, wanted_ops
from .compare import (FAILING, INCONCLUSIVE, KINK, LOSS, STATUS_NAMES, KinkSides, allowance,
                      compare, systematic)
from .config import OWN_BACKENDS, VerifyConfig
from .confirm import Experiments, confirm, needs_confirmation
from .derive import Program, reverse_accumulation
from .findings import with_proof, worst_entries
from .model import Model
from .result import Failure, Result
from .stages import (Batch, Compiled, args_of, derive, exact, oracle_subset, param_columns,
                     steps_at)


def judge(model: Model, compiled: Compiled, batch: Batch, runs: dict, outputs: dict,
          cfg: VerifyConfig, timings: dict, torch_fn: Callable | None = None,
          extra_fns: dict[str, Callable] | None = None, drawn: bool = True, *,
          client=None) -> Result:
    """The exact values, every backend's comparison (entry, kink and block tests; beyond the
    fast allowance the rigorous enclosure decides), the confirmation of every suspicion
    (``symgrad.confirm``) and the Result. Backends other than numpy/torch are user code: they
    get the torch_fn allowance. ``extra_fns``: backend name -> per-sample torch function (a
    module's paths), run again on fresh samples to confirm a suspicion; ``drawn``: the samples
    were drawn from the model's domains (not ``at=``), so fresh ones may be drawn too;
    ``client``: a Dask client for the oracle."""
    subset = oracle_subset(compiled.program, cfg)
    truth, bounds = exact(compiled, batch, subset, cfg, timings, client=client, model=model)
    kink = KinkSides(truth.vertices, truth.labels, structure=truth.structure)
    blocks = param_columns(model)
    enclosures = rigorous_enclosures(model, compiled, batch, subset, truth, runs, cfg)

    def comparison(name, dtype, got, truth, bounds, kink, rigorous=None):
        return compare(truth.hi, truth.lo, got, bounds.get(name, bounds["torch_fn"]),
                       backend=name, dtype=dtype, tol=cfg.tolerance, kink=kink,
                       uncertain=truth.uncertain, rigorous=rigorous)
    comparisons = {name: systematic(comparison(name, runs[name].dtype, got[subset], truth,
                                               bounds, kink, enclosures[name]),
                                    blocks, cfg.tolerance)
                   for name, got in outputs.items()}
    timings["rigorous_s"] = sum({id(e): e.seconds for e in enclosures.values()}.values())
    if any(needs_confirmation(c) for c in comparisons.values()):
        exp = _experiments(model, compiled, batch, subset, cfg, torch_fn, extra_fns or {},
                           truth, bounds, comparisons, comparison, drawn)
        comparisons = confirm(comparisons, blocks, cfg.tolerance, exp, timings)
    result = summarize(model, cfg, compiled.program, runs, comparisons, batch, subset, timings,
                       torch_fn)
    result.oracle_bits = truth.summary()
    return result


def rigorous_enclosures(model: Model, compiled: Compiled, batch: Batch, subset: np.ndarray,
                        truth, runs: dict, cfg: VerifyConfig) -> dict:
    """Per backend, the lazy rigorous enclosure (``symgrad.rigorous``) of what correct code can
    compute in its dtype: symgrad's own programs (numpy, torch) that of the derived program; a
    user's code (torch_fn, a module's paths) the union with the textbook composition's, as its
    allowance takes the larger bound. Nothing is evaluated until ``compare`` asks for a sample
    with an entry beyond the fast allowance."""
    key = ("rigorous",)

    def programs(user: bool) -> tuple:  # compiled on first use: a passing run compiles nothing
        if key not in model._cache:
            own = rigorous.compile_program_enclosure(compiled.program)
            has_display = any(getattr(n.symbol, "display", None) is not None
                              for n in model.graph.nodes)
            display = (rigorous.compile_program_enclosure(
                reverse_accumulation(model, view="display")) if has_display else None)
            model._cache[key] = (own, display)
        own, display = model._cache[key]
        return (own, display) if user and display is not None else (own,)
    X = batch.X[:, subset]
    made: dict = {}
    out = {}
    for name, run in runs.items():
        user = name not in ("numpy", "torch")
        if (user, run.dtype) not in made:
            made[user, run.dtype] = rigorous.scalar_enclosure(
                lambda user=user: programs(user), X, truth.hi, truth.lo, run.dtype,
                cfg.tolerance.function_ulps)
        out[name] = made[user, run.dtype]
    return out


def _experiments(model: Model, compiled: Compiled, batch: Batch, subset: np.ndarray,
                 cfg: VerifyConfig, torch_fn, extra_fns: dict, truth, bounds: dict,
                 comparisons: dict, comparison: Callable, drawn: bool) -> Experiments:
    """The confirmation's experiments for a scalar model (``symgrad.confirm.Experiments``):
    numpy, torch and torch_fn re-run in float64 (the same code); every backend, the oracle and
    the bound on fresh samples drawn from the model's domains."""
    n_params = len(compiled.program.gradient)

    def run_at(name: str, b: Batch, dtype: str):
        if name == "numpy":
            c = derive(model, replace(cfg, dtype=dtype)) if dtype != cfg.dtype else compiled
            np_dtype = dtype if dtype in ("float64", "float32", "float16") else "float32"
            return np_backend.run(c.numpy, b.X, np_dtype)
        if name == "torch":
            return torch_backend.run_program(compiled.torch, b.X, n_params, device=cfg.device,
                                             dtype=dtype)
        fn = torch_fn if name == "torch_fn" else extra_fns.get(name)
        if fn is None or (name != "torch_fn" and dtype != cfg.dtype):  # a module: its dtype
            return None
        got, _ = torch_backend.run_torch_fn(fn, model.blocks, b.values, device=cfg.device,
                                            dtype=dtype, batching=cfg.torch_fn_batching
                                            if name == "torch_fn" else "loop")
        return got

    def columns(name: str, a: int, b: int):
        c = comparisons[name]
        with np.errstate(invalid="ignore", over="ignore"):
            err = (c.got[:, a:b] - c.expected[:, a:b]) - c.exact_lo[:, a:b]
        return c.expected[:, a:b], err, c.allowed_abs[:, a:b]

    def rerun64(name: str, rows: np.ndarray):
        idx = subset[rows]
        part = Batch({k: v[idx] for k, v in batch.values.items()}, batch.X[:, idx])
        got = run_at(name, part, "float64")
        if got is None:
            return None
        bound = bounds.get(name, bounds["torch_fn"])[rows]
        with np.errstate(invalid="ignore", over="ignore"):
            err = (np.asarray(got, np.float64) - truth.hi[rows]) - truth.lo[rows]
        allowed = allowance(bound, "float64", cfg.tolerance)
        return truth.hi[rows], err, np.where(np.isnan(allowed), np.inf, allowed)

    def fresh(names, m: int):
        if not drawn:
            return None
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
        values = model.draw(m, rng, cfg.dtype)
        X = np.concatenate([values[b.name].reshape(m, -1) for b in model.blocks], axis=1).T
        b = Batch(values, np.ascontiguousarray(X))
        fcfg = replace(cfg, samples=m, progress=False)
        t2, b2 = exact(compiled, b, np.arange(m), fcfg, {})
        k2 = KinkSides(t2.vertices, t2.labels, structure=t2.structure)
        out = {}
        for name in names:
            got = run_at(name, b, cfg.dtype)
            if got is not None:
                out[name] = comparison(name, comparisons[name].dtype, got, t2, b2, k2)
        return out
    budget = int(oracle_subset(compiled.program, replace(cfg, samples=10**9,
                                                         oracle_samples=None)).size)
    return Experiments(columns, rerun64, fresh, budget, len(subset))


def summarize(model: Model, cfg: VerifyConfig, program: Program, runs, comparisons, batch: Batch,
              subset: np.ndarray, timings: dict, torch_fn: Callable | None = None) -> Result:
    """Failures (worst first, named by backend, output, sample, expected, got, ULPs), each with
    its root cause."""
    outputs = ["value"] + [f"d/d{e}" for e in model.entries]
    blocks = param_columns(model)
    failures, losses, worst, kinks, undecided = [], [], [], [], []
    for name, comp in comparisons.items():
        def entries(mask, limit):
            return worst_entries(name, comp, mask, outputs, batch, subset, limit)
        worst += entries(np.ones(comp.status.shape, bool), 3)
        undecided += entries(comp.status == INCONCLUSIVE, 3)
        kinks += entries(comp.status == KINK, cfg.max_failures)
        failures += entries(np.isin(comp.status, FAILING), cfg.max_failures)
        losses += entries(comp.status == LOSS, cfg.max_failures)
    failures = [_with_cause(model, f, comparisons, batch, subset, cfg, torch_fn)
                for f in failures]
    return Result(model.name, cfg, outputs, blocks, runs, comparisons, subset, failures, losses,
                  timings, program.size, worst, kinks, undecided)


def _with_cause(model: Model, failure: Failure, comparisons, batch: Batch, subset: np.ndarray,
                cfg: VerifyConfig, torch_fn) -> Failure:
    """The failure with its root cause (``symgrad.causes``), given the data causes need."""
    comp = comparisons[failure.backend]
    row = int(np.flatnonzero(subset == failure.sample)[0])
    point = {b: v[failure.sample] for b, v in batch.values.items()}
    ops = {}
    if failure.kind not in ("domain", "overflow", "kink") and wanted_ops(model):
        ops = op_values(model, steps_at(model, args_of(model, point), 40))
    promotions: tuple[str, ...] = ()
    if (failure.backend == "torch_fn" and torch_fn is not None
            and any(b.domain.integer for b in model.blocks)):
        promotions = torch_backend.integer_promotions(torch_fn, model.blocks, point,
                                                      device=cfg.device, dtype=cfg.dtype)
    ctx = Context(dtype=comp.dtype, value_status=STATUS_NAMES[int(comp.status[row, 0])],
                  value_expected=float(comp.expected[row, 0]), value_got=float(comp.got[row, 0]),
                  ops=ops, promotions=promotions, order=getattr(model, "order", 1))
    cause = classify(model, failure, ctx)
    owner = "symgrad's own program — " if failure.backend in OWN_BACKENDS else ""
    return replace(failure, cause=f"{owner}{cause.klass}: {cause.name}",
                   note=with_proof(failure.note, cause.explanation))
