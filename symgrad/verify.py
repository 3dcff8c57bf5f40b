"""The pipeline, top to bottom: model -> derive -> execute -> compare -> result.

>>> import sympy as sp, symgrad as sg
>>> x, y, w, b = sp.symbols("x y w b")
>>> model = sg.Model("neuron", sg.ops.bce(sg.ops.sigmoid(w * x + b), y), params=[w, b],
...                  inputs={x: sg.Uniform(-3, 3), y: sg.Choice([0.0, 1.0])})
>>> sg.verify(model, samples=50, seed=0).ok
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import mpmath
import numpy as np

from . import oracle
from .backends import numpy as np_backend
from .backends import torch as torch_backend
from .bounds import compile_bound
from .cluster import map_ordered
from .causes import Context, classify, op_values, wanted_ops
from .compare import (FAILING, INCONCLUSIVE, KINK, LOSS, MISMATCH, STATUS_NAMES, SYSTEMATIC,
                      KinkSides, Tolerance, allowance, compare, systematic)
from .config import OWN_BACKENDS, VerifyConfig
from .confirm import Experiments, confirm, needs_confirmation
from .errors import SymgradError
from .derive import Program, reverse_accumulation
from .model import Model
from .points import by_name
from .progress import phase
from .result import BackendRun, Failure, Result, undecided_note


def verify(model: Model, *, torch_fn: Callable | None = None, samples: int = 500, seed: int = 0,
           device: str = "cpu", dtype: str = "float64", config: VerifyConfig | None = None,
           tolerance: Tolerance | None = None, at: dict | None = None,
           backends: Sequence[str] | None = None, module=None, module_map=None,
           train: bool = False, loss: Callable | None = None,
           paths: tuple[str, ...] = ("eager",), client=None) -> Result:
    """Verify every gradient of ``model`` against the exact derivative.

    Arguments:
        model: the ``sg.Model`` to verify.
        torch_fn: optional user torch code for the same model, ``fn(**blocks) -> scalar`` for one
            sample, arguments matched by block name; verified in addition to the model's own
            program run in torch.
        samples, seed, device, dtype: the run (ignored when ``config`` is given).
        config: a full ``VerifyConfig``.
        tolerance: override the verdict's knobs.
        at: explicit samples instead of random draws: block name (or its sympy symbol) ->
            array (N, *block shape), or one sample's value (a scalar for a scalar block);
            used by property-based tests (``symgrad.testing``).
        backends: which to verify, any of "numpy", "torch" (symgrad's own programs) and
            "torch_fn" (your code); default all. ``backends=("torch_fn",)`` verifies only
            your code.
        module: a user's ``torch.nn.Module`` verified by parameter name (``symgrad.modules``):
            GPT layouts (book, nanoGPT, Hugging Face GPT-2, symgrad's own) are detected from
            its parameter names; ``module_map`` gives any other mapping. ``train`` (dropout fed
            symgrad's keep-masks), ``loss(output, targets)``, ``paths`` ("eager", "compile",
            "sdpa-math", ...) apply to it.
        client: a Dask ``distributed.Client`` (``symgrad.cluster.connect``): the exact oracle
            runs as tasks on its workers, chunks of samples each; the Result is the same as
            in-process.
    Returns:
        A ``Result``; ``result.ok`` is the verdict, ``print(result)`` a table per parameter.
    """
    cfg = config or VerifyConfig(samples=samples, seed=seed, device=device, dtype=dtype)
    if backends is not None:
        cfg = replace(cfg, backends=(backends,) if isinstance(backends, str) else tuple(backends))
    chosen = cfg.chosen_backends(torch_fn is not None)
    if tolerance is not None:
        cfg = replace(cfg, tolerance=tolerance)
    if module is not None:  # a user's nn.Module by parameter name (scalar or tensor model)
        from .modules import ModuleOptions, verify_module
        if at is not None or torch_fn is not None:
            raise SymgradError("verify: module= runs the module itself; give at= and torch_fn= "
                               "without it")
        return verify_module(model, module, cfg=cfg, options=ModuleOptions(
            module_map, train, loss, tuple(paths) if not isinstance(paths, str) else (paths,)))
    from .tensor.model import TensorModel
    if isinstance(model, TensorModel):  # a tensor program: the tensor views, same comparer
        from .tensor.verify import verify_tensor
        return verify_tensor(model, torch_fn=torch_fn, at=at, cfg=cfg, client=client)
    given = _given(model, at, cfg.dtype) if at is not None else None
    if given is not None:
        cfg = replace(cfg, samples=given.X.shape[1])
    torch_backend.check_device(cfg.device, cfg.dtype)
    if torch_fn is not None:
        torch_backend.check_torch_fn(torch_fn, [b.name for b in model.blocks])

    timings: dict[str, float] = {}
    compiled = derive(model, cfg, timings)
    batch = given or draw(model, cfg)
    runs, outputs = execute(model, compiled, batch, torch_fn, cfg, chosen)
    return judge(model, compiled, batch, runs, outputs, cfg, timings, torch_fn,
                 drawn=given is None, client=client)


def judge(model: Model, compiled: "Compiled", batch: "Batch", runs: dict, outputs: dict,
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


def rigorous_enclosures(model: Model, compiled: "Compiled", batch: "Batch", subset: np.ndarray,
                        truth, runs: dict, cfg: VerifyConfig) -> dict:
    """Per backend, the lazy rigorous enclosure (``symgrad.rigorous``) of what correct code can
    compute in its dtype: symgrad's own programs (numpy, torch) that of the derived program; a
    user's code (torch_fn, a module's paths) the union with the textbook composition's, as its
    allowance takes the larger bound. Nothing is evaluated until ``compare`` asks for a sample
    with an entry beyond the fast allowance."""
    from . import rigorous
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


def _experiments(model: Model, compiled: "Compiled", batch: "Batch", subset: np.ndarray,
                 cfg: VerifyConfig, torch_fn, extra_fns: dict, truth, bounds: dict,
                 comparisons: dict, comparison: Callable, drawn: bool) -> Experiments:
    """The confirmation's experiments for a scalar model (``symgrad.confirm.Experiments``):
    numpy, torch and torch_fn re-run in float64 (the same code); every backend, the oracle and
    the bound on fresh samples drawn from the model's domains."""
    n_params = len(compiled.program.gradient)

    def run_at(name: str, b: "Batch", dtype: str):
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
                                torch_backend.compile_forward(program), exact_fn)
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
    values: dict[str, np.ndarray]  # block name -> (N, *shape)
    X: np.ndarray  # (n_leaves, N): every scalar leaf, parameters first


def draw(model: Model, cfg: VerifyConfig) -> Batch:
    """Samples of every block from one seeded generator, rounded to the run's dtype."""
    values = model.draw(cfg.samples, np.random.default_rng(cfg.seed), cfg.dtype)
    X = np.concatenate([values[b.name].reshape(cfg.samples, -1) for b in model.blocks], axis=1).T
    return Batch(values, np.ascontiguousarray(X))


def _given(model: Model, at: dict, dtype: str) -> Batch:
    """Explicit samples, checked against the blocks and rounded to the run's dtype."""
    from .model import round_to
    at = by_name(model, at, "at")
    values, n = {}, None
    for b in model.blocks:
        if b.name not in at:
            raise SymgradError(f"at: no values for {b.name!r}; give every block: "
                               f"{', '.join(x.name for x in model.blocks)}")
        try:
            v = np.asarray(at[b.name], dtype=np.float64)
        except (TypeError, ValueError):
            raise SymgradError(f"at: {b.name!r} must be numbers, got {at[b.name]!r}") from None
        if v.shape == b.shape:  # one sample
            v = v[None]
        _check_integers(b, v, "at")
        if v.shape[1:] != b.shape or (n is not None and v.shape[0] != n):
            raise SymgradError(f"at: {b.name!r} must have shape (N, {', '.join(map(str, b.shape))})"
                               f" with the same N for every block; got {v.shape}")
        n = v.shape[0]
        values[b.name] = round_to(v, dtype)
    X = np.concatenate([values[b.name].reshape(n, -1) for b in model.blocks], axis=1).T
    return Batch(values, np.ascontiguousarray(X))


def _check_integers(block, v: np.ndarray, what: str) -> None:
    """A non-integer value for an Integers input is an error, never a silent truncation."""
    if block.domain.integer:
        bad = v[np.isfinite(v) & (v != np.round(v))] if v.size else v
        if bad.size or not np.isfinite(v).all():
            shown = float(bad.ravel()[0] if bad.size else v[~np.isfinite(v)].ravel()[0])
            raise SymgradError(f"{what}: input {block.name!r} is {block.domain!r} but got the "
                               f"non-integer value {shown!r}; give whole numbers")


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


LIMIT_OFFSET = 2.0**-600  # where E is NaN at an input exactly 0: E as that input nears 0


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


def summarize(model: Model, cfg: VerifyConfig, program: Program, runs, comparisons, batch: Batch,
              subset: np.ndarray, timings: dict, torch_fn: Callable | None = None) -> Result:
    """Failures (worst first, named by backend, output, sample, expected, got, ULPs), each with
    its root cause."""
    outputs = ["value"] + [f"d/d{e}" for e in model.entries]
    blocks = param_columns(model)
    failures, losses, worst, kinks, undecided = [], [], [], [], []
    for name, comp in comparisons.items():
        worst += _worst(name, comp, np.ones(comp.status.shape, bool), outputs, batch, subset, 3)
        undecided += _worst(name, comp, comp.status == INCONCLUSIVE, outputs, batch, subset, 3)
        kinks += _worst(name, comp, comp.status == KINK, outputs, batch, subset,
                        cfg.max_failures)
        failures += _worst(name, comp, np.isin(comp.status, FAILING), outputs, batch, subset,
                           cfg.max_failures)
        losses += _worst(name, comp, comp.status == LOSS, outputs, batch, subset,
                         cfg.max_failures)
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
        ops = op_values(model, exact_steps(model, point, dps=40))
    promotions: tuple[str, ...] = ()
    if (failure.backend == "torch_fn" and torch_fn is not None
            and any(b.domain.integer for b in model.blocks)):
        promotions = torch_backend.integer_promotions(torch_fn, model.blocks, point,
                                                      device=cfg.device, dtype=cfg.dtype)
    ctx = Context(dtype=comp.dtype, value_status=STATUS_NAMES[int(comp.status[row, 0])],
                  value_expected=float(comp.expected[row, 0]), value_got=float(comp.got[row, 0]),
                  ops=ops, promotions=promotions)
    cause = classify(model, failure, ctx)
    owner = "symgrad's own program — " if failure.backend in OWN_BACKENDS else ""
    return replace(failure, cause=f"{owner}{cause.klass}: {cause.name}",
                   note=with_proof(failure.note, cause.explanation))


def with_proof(note: str, explanation: str) -> str:
    """The failure's note, or the cause's explanation; a proof note (outside the rigorous
    enclosure) follows the explanation on the same line."""
    if note and "rigorous enclosure" in note and explanation:
        return f"{explanation}; {note}"
    return note or explanation


def _worst(name, comp, mask, outputs, batch, subset, limit) -> list[Failure]:
    idx = np.argwhere(mask)
    if not len(idx):
        return []
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = (comp.error / comp.allowed_abs if comp.error is not None  # exact zeros included
                 else comp.ulps / comp.allowed_ulps)
        badness = np.where(np.isfinite(comp.got), ratio, np.inf)
    order = np.argsort(-badness[mask], kind="stable")[:limit]
    found = []
    for i, k in idx[order]:
        s = int(subset[i])
        point = {b: _shown_value(v[s]) for b, v in batch.values.items()}
        status = int(comp.status[i, k])
        note = _convention(comp.kink_position[i, k]) if status == KINK else ""
        if status == KINK and comp.side and i in comp.side:
            note += f" (the one-sided derivative from {comp.side[i]})"
        position = comp.kink_position[i, k]
        if status == MISMATCH and np.isfinite(position) and not 0 <= position <= 1:
            note = (f"at a kink, outside the subdifferential: every subgradient puts this entry "
                    f"between the one-sided derivatives (0 and 1 of the way across), and the "
                    f"backend's value is {position:.4g} of the way")
        if comp.not_subgradient is not None and comp.not_subgradient[i, k]:
            note = ("at a kink: each entry lies between the one-sided derivatives, but together "
                    "they are no convex combination of them (no subgradient; e.g. the full "
                    "gradient handed to every tied argument of a max)")
        if status == SYSTEMATIC:
            note = _block_note(comp, i, k)
        if status == INCONCLUSIVE:
            note = undecided_note(comp, i, k)
        if status == MISMATCH and not note:  # a kink's own proof (the subdifferential) first
            note = proof_note(comp, i, k)
        found.append(Failure(name, STATUS_NAMES[status], outputs[k], s, point,
                             float(comp.expected[i, k]), float(comp.got[i, k]),
                             float(comp.ulps[i, k]), float(comp.allowed_ulps[i, k]), note,
                             column=int(k)))
    return found


def proof_note(comp, row: int, col: int) -> str:
    """One line for a proven mismatch: the error against the fast allowance and against the
    rigorous enclosure ("" where no enclosure was computed)."""
    r = None if comp.rigorous is None else float(comp.rigorous[row, col])
    if r is None or not np.isfinite(r):
        return ""
    err = float(comp.error[row, col]) if comp.error is not None else float("nan")
    allowed = float(comp.allowed_abs[row, col]) if comp.allowed_abs is not None else float("nan")
    if err > r:
        return (f"error {err:.3g} is outside the rigorous enclosure ±{r:.3g} of what correct "
                f"code computes in {comp.dtype} (fast allowance {allowed:.3g}): proven")
    evidence = "; ".join(getattr(comp, "evidence", ()))  # a suspicion that was confirmed
    return (f"error {err:.3g} is beyond the fast allowance {allowed:.3g}, inside the rigorous "
            f"enclosure ±{r:.3g}: not proven by it, but confirmed by an independent "
            f"experiment" + (f" ({evidence})" if evidence else ""))


def _block_note(comp, row: int, col: int) -> str:
    """The block finding behind a SYSTEMATIC entry (its sample's, else the pooled one)."""
    for f in sorted(comp.systematic, key=lambda f: (not f.confirmed, f.sample < 0)):
        if f.sample in (row, -1) and f.block and f.columns[0] <= col < f.columns[1]:
            return f.describe()
    return "systematic error on its parameter block"


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
    compiled = derive(model, VerifyConfig())
    outs = _certified(compiled.oracle, args, dps, "exact_at")
    return dict(zip(["value"] + [f"d/d{e}" for e in model.entries], outs))


def exact_steps(model: Model, point: dict, *, dps: int = 50) -> dict:
    """The exact value of every leaf and every step of the model's textbook (display) program
    at one point: ``{symbol: mpf}``, certified to ``dps`` digits. Used by explanations and
    root-cause recognition."""
    args = _point_args(model, point, what="at")
    nodes = model.display_graph.nodes
    key = ("steps",)
    if key not in model._cache:
        model._cache[key] = oracle.compile_scalar([(n.symbol, n.expr) for n in nodes],
                                                  model.leaves, [n.symbol for n in nodes],
                                                  fname="steps")
    values = _certified(model._cache[key], args, dps, "exact_steps")
    return {**dict(zip(model.leaves, args)), **{n.symbol: v for n, v in zip(nodes, values)}}


def _certified(fn, args, dps: int, what: str) -> list:
    from .errors import SymgradError
    from .backends.arb import Imprecise
    try:
        return oracle.at_point(fn, args, digits=dps)
    except Imprecise:
        raise SymgradError(f"{what}: the exact value could not be certified within 4096 bits "
                           "(a branch or domain boundary sits exactly at this point)") from None


def _point_args(model: Model, point: dict, *, what: str) -> list:
    """One point (block name or symbol -> value) as the program's arguments, checked."""

    given = by_name(model, point, what)
    args = []
    for b in model.blocks:
        if b.name not in given:
            raise SymgradError(f"{what}: no value for {b.name!r}; give every parameter and "
                               f"input: {', '.join(x.name for x in model.blocks)}")
        v = np.asarray(given.pop(b.name), dtype=object)
        if b.domain.integer and not isinstance(v.ravel()[0] if v.size else 0, str):
            _check_integers(b, np.asarray(v, dtype=np.float64), what)
        if v.shape != b.shape:
            raise SymgradError(f"{what}: {b.name!r} has shape {b.shape}, got {v.shape}")
        args += [mpmath.mpf(str(x)) if isinstance(x, str) else mpmath.mpf(x) for x in v.ravel()]
    if given:
        raise SymgradError(f"{what}: unknown name(s) {sorted(given)}")
    return args
