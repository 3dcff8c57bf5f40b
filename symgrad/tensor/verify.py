"""The pipeline for a tensor model: derive -> numpy / torch / torch_fn -> oracle + bound ->
the one comparer (``symgrad.compare``) -> the same ``Result`` as scalar models.

>>> import symgrad as sg, symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
>>> sg.verify(m, samples=4).ok
True
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..compare import (FAILING, INCONCLUSIVE, KINK, LOSS, MISMATCH, STATUS_NAMES, SYSTEMATIC, Comparison,
                       allowance, compare, pooled_resolution, systematic_blocks)
from ..config import VerifyConfig
from ..confirm import Experiments, confirm, needs_confirmation
from ..errors import SymgradError
from ..findings import (block_note as _block_note, proof_note, shown_value as _shown_value,
                        with_proof)
from ..model import round_to
from ..result import BackendRun, Failure, Result, undecided_note
from .departure import first_departure, own_program
from .model import Outputs, TensorModel
from .spotcheck import SpotCheck
from .spotcheck import check as check_spot
from .tables import oracle_ops
from .views import certify_view, numpy_view, oracle_steps, oracle_view, torch_view


@dataclass
class _Batch:
    values: dict[str, np.ndarray]


def verify_tensor(model: TensorModel, *, torch_fn: Callable | None, cfg: VerifyConfig,
                  at: dict | None = None, oracle_table=None,
                  extra: dict[str, tuple[Callable, str]] | None = None, client=None) -> Result:
    """``sg.verify`` for a ``TensorModel`` (see ``symgrad.verify.verify`` for the arguments);
    ``oracle_table`` overrides the oracle's array-ops table (default ``oracle_ops()``);
    ``extra`` adds backends, name -> (per-sample torch function, mode label), each run sample
    by sample like ``torch_fn`` (a user's module on each torch path: ``symgrad.modules``)."""
    from ..backends import torch as torch_backend
    timings: dict[str, float] = {}
    np_dtype = cfg.dtype if cfg.dtype in ("float64", "float32", "float16") else "float32"
    torch_backend.check_device(cfg.device, cfg.dtype)
    if torch_fn is not None:
        torch_backend.check_torch_fn(torch_fn, [b.name for b in model.blocks])

    entries = (at_samples(at) if at is not None else cfg.samples) * (1 + model.n_parameters)
    if entries > MAX_ENTRIES:
        raise SymgradError(f"model {model.name!r}: {cfg.samples} samples x "
                           f"{model.n_parameters} gradient entries is too much to compare in "
                           f"memory (limit {MAX_ENTRIES:.0e} entries); use --samples "
                           f"{max(1, MAX_ENTRIES // (1 + model.n_parameters))} or fewer")
    with _phase("derive", cfg, timings, "derive_s"):
        grad = model.gradient
    values = _given(model, at, cfg.dtype) if at is not None else model.draw(
        cfg.samples, np.random.default_rng(cfg.seed), cfg.dtype)
    n = next(iter(values.values())).shape[0]
    cfg = replace(cfg, samples=n)

    outputs: dict[str, np.ndarray] = {}
    runs: dict[str, BackendRun] = {}
    if n * model.n_parameters <= NUMPY_VIEW_UP_TO:  # above: memory goes to the backends
        t0 = time.perf_counter()  # under test (the numpy view runs the oracle's program)
        with _phase("numpy", cfg, timings, "numpy_s"):
            outputs["numpy"] = numpy_view(model, values, np_dtype)
        runs["numpy"] = BackendRun("numpy", np_dtype, "cpu", "vectorised",
                                   time.perf_counter() - t0, n)
    t0 = time.perf_counter()
    with _phase("torch", cfg, timings, "torch_s"):
        outputs["torch"] = torch_view(model, values, dtype=cfg.dtype, device=cfg.device)
    runs["torch"] = BackendRun("torch", cfg.dtype, cfg.device, "batched autograd",
                               time.perf_counter() - t0, n)
    if torch_fn is not None:
        t0 = time.perf_counter()
        with _phase("torch_fn", cfg, timings, "torch_fn_s"):
            outputs["torch_fn"], mode = torch_backend.run_torch_fn(
                torch_fn, model.blocks, values, device=cfg.device, dtype=cfg.dtype,
                batching=cfg.torch_fn_batching)
        runs["torch_fn"] = BackendRun("torch_fn", cfg.dtype, cfg.device, mode,
                                      time.perf_counter() - t0, n)
    for name, (fn, label) in (extra or {}).items():
        t0 = time.perf_counter()
        with _phase(name, cfg, timings, f"{name}_s"):
            outputs[name], mode = torch_backend.run_torch_fn(
                fn, model.blocks, values, device=cfg.device, dtype=cfg.dtype, batching="loop")
        runs[name] = BackendRun(name, cfg.dtype, cfg.device, f"{label}, {mode}",
                                time.perf_counter() - t0, n)

    subset = oracle_subset(model, cfg)
    sub = {k: v[subset] for k, v in values.items()}
    table = oracle_table or oracle_ops(cfg.oracle_dps)
    big = model.n_parameters > CERTIFY_UP_TO  # no end-to-end ARB re-check: spot-certify steps
    spot = SpotCheck() if big else None
    with _phase(f"oracle ({getattr(table, 'name', type(table).__name__)})", cfg, timings,
                "oracle_s", total=oracle_steps(model, len(subset))) as tick:
        hi, lo = oracle_view(model, sub, table, progress=tick, spot=spot,
                             client=client if oracle_table is None else None,
                             dps=cfg.oracle_dps)
    if big:
        check_spot(spot, model.name)
        certified = spot.summary()
    else:
        with _phase("certify (ARB)", cfg, timings, "certify_s"):
            cert = certify_view(model, sub, hi[:1][0], lo[:1][0])
        if not cert.ok:
            raise SymgradError(f"model {model.name!r}: the oracle's double-double values are "
                               f"not certified by ball arithmetic: {cert.summary()}")
        certified = f"{cert.n_certified}/{cert.n} entries of sample 0 (ARB balls)"
    with _phase("bound", cfg, timings, "bound_s"):
        from .bound import evaluate_bound
        from .views import _flatten
        tol = cfg.tolerance  # worst case, or probabilistic (Tolerance.entry_bound)
        E = _flatten(model, evaluate_bound(grad.outputs, sub, mode=tol.entry_bound,
                                           sigmas=tol.entry_sigmas,
                                           sqrt_terms=tol.entry_sqrt_terms),
                     np.asarray, len(subset))
    blocks, col = [], 1
    for b in model.param_blocks:
        blocks.append((b.name, col, col + b.size))
        col += b.size
    enclosures: dict = {}  # per dtype: the rigorous enclosure, evaluated lazily (<= 200k params)
    with _phase("compare", cfg, timings, "compare_s"):
        comparisons = {}
        for name in list(outputs):
            got = outputs.pop(name)
            dt = runs[name].dtype
            if not big and dt not in enclosures:
                from ..rigorous import tensor_enclosure
                enclosures[dt] = tensor_enclosure(model, sub, hi, lo, dt,
                                                  cfg.tolerance.function_ulps)
            comp = compare_compact(hi, lo, got if len(subset) == n else got[subset],
                                   E, backend=name, dtype=dt, tol=cfg.tolerance,
                                   rigorous=enclosures.get(dt))
            del got
            comparisons[name] = block_tests(comp, hi, lo, E, blocks, cfg.tolerance)
    timings["rigorous_s"] = sum(e.seconds for e in enclosures.values())
    if any(needs_confirmation(c) for c in comparisons.values()):
        with _phase("confirm", cfg, timings, "confirm_s"):
            exp = _experiments(model, sub, hi, lo, E, comparisons, cfg, torch_fn, extra or {},
                               table, drawn=at is None)
            comparisons = confirm(comparisons, blocks, cfg.tolerance, exp)
    del lo, E
    names = Outputs(model.param_blocks)
    batch = _Batch(values)
    failures, losses, worst, kinks, undecided = [], [], [], [], []
    with _phase("summary", cfg, timings, "summary_s"):
        for name, comp in comparisons.items():
            bad = _badness(comp)

            def top(mask, limit):  # the worst `limit` entries of mask, without a full sort
                return _failures(name, comp, _top(bad, mask, limit), bad, names, batch.values,
                                 subset)
            worst += top(None, 3)
            kinks += top(comp.status == KINK, cfg.max_failures)
            failures += top(np.isin(comp.status, FAILING), cfg.max_failures)
            losses += top(comp.status == LOSS, cfg.max_failures)
            undecided += top(comp.status == INCONCLUSIVE, 3)
    with _phase("causes", cfg, timings, "causes_s"):
        failures = with_causes(model, failures, comparisons, values, subset, cfg, np_dtype)
    size = {"nodes": model.n_nodes, "gradient_nodes": len(grad.nodes),
            "parameters": model.n_parameters, "oracle_certified": certified}
    return Result(model.name, cfg, names, blocks, runs, comparisons, subset, failures, losses,
                  timings, size, worst, kinks, undecided, values=values)


def _experiments(model: TensorModel, sub: dict, hi, lo, E, comparisons: dict,
                 cfg: VerifyConfig, torch_fn, extra: dict, table, drawn: bool) -> Experiments:
    """The confirmation's experiments for a tensor model (``symgrad.confirm.Experiments``):
    the numpy and torch views and torch_fn re-run in float64 on the flagged samples; every
    backend, the oracle and the bound on fresh samples drawn from the model's domains."""
    from ..backends import torch as torch_backend
    from .bound import evaluate_bound
    from .views import _flatten
    tol = cfg.tolerance

    def run_at(name: str, values: dict, dtype: str):
        if name == "numpy":
            return numpy_view(model, values, dtype)
        if name == "torch":
            return torch_view(model, values, dtype=dtype, device=cfg.device)
        if name == "torch_fn" and torch_fn is not None:
            return torch_backend.run_torch_fn(torch_fn, model.blocks, values, device=cfg.device,
                                              dtype=dtype, batching=cfg.torch_fn_batching)[0]
        if name in extra and dtype == cfg.dtype:  # a module's path runs in its own dtype
            return torch_backend.run_torch_fn(extra[name][0], model.blocks, values,
                                              device=cfg.device, dtype=dtype,
                                              batching="loop")[0]
        return None

    def allowed_of(bound, dtype):
        a = allowance(bound, dtype, tol)
        return np.where(np.isnan(a), np.inf, a)

    def columns(name: str, a: int, b: int):
        with np.errstate(invalid="ignore", over="ignore"):
            err = (comparisons[name].got[:, a:b] - hi[:, a:b]) - lo[:, a:b]
        return hi[:, a:b], err, allowed_of(E[:, a:b], comparisons[name].dtype)

    def rerun64(name: str, rows: np.ndarray):
        got = run_at(name, {k: v[rows] for k, v in sub.items()}, "float64")
        if got is None:
            return None
        with np.errstate(invalid="ignore", over="ignore"):
            err = (np.asarray(got, np.float64) - hi[rows]) - lo[rows]
        return hi[rows], err, allowed_of(E[rows], "float64")

    def fresh(names, m: int):
        if not drawn:
            return None
        values = model.draw(m, np.random.default_rng(np.random.SeedSequence([cfg.seed, 1])),
                            cfg.dtype)
        h2, l2 = oracle_view(model, values, table)
        E2 = _flatten(model, evaluate_bound(model.gradient.outputs, values, mode=tol.entry_bound,
                                            sigmas=tol.entry_sigmas,
                                            sqrt_terms=tol.entry_sqrt_terms), np.asarray, m)
        out = {}
        for name in names:
            got = run_at(name, values, cfg.dtype)
            if got is None:
                continue
            dtype = comparisons[name].dtype
            c = compare_compact(h2, l2, got, E2, backend=name, dtype=dtype, tol=tol)
            out[name] = replace(c, exact_lo=l2, allowed_abs=allowed_of(E2, dtype))
        return out
    budget = oracle_subset(model, replace(cfg, samples=10**9, oracle_samples=None)).size
    return Experiments(columns, rerun64, fresh, int(budget), len(hi))


CERTIFY_UP_TO = 200_000  # parameters: up to here sample 0 is re-checked whole with ARB balls;
#                          above, every step of sample 0 is spot-certified (tensor/spotcheck.py)
DEPARTURE_UP_TO = 200_000  # parameters: symgrad's own failing program is searched for where its
#                           forward departs (one sample, every labelled node in double-double)


def with_causes(model: TensorModel, failures: list, comparisons: dict, values: dict,
                subset: np.ndarray, cfg: VerifyConfig, np_dtype: str) -> list:
    """Each failure with its root cause (``symgrad.causes``): the kind, then the first split -
    the function differs (the loss value of that backend and sample fails, or the forward
    departs at a labelled intermediate of symgrad's own program) or the derivative of the same
    function is wrong. A torch_fn's intermediates are not visible: its split is by the value."""
    import sympy as sp

    from .. import causes
    from ..config import OWN_BACKENDS
    from .program import topological
    from .tables import TorchOps
    from . import views
    has_branch = any(n.op == "map" and n.attrs["expr"].has(sp.Piecewise, sp.Max, sp.Min)
                     for n in topological([model.loss]))
    searches: dict[str, object] = {}
    out = []
    for f in failures:
        comp = comparisons[f.backend]
        row = int(np.flatnonzero(subset == f.sample)[0])
        if (f.backend in OWN_BACKENDS and f.backend not in searches
                and model.n_parameters <= DEPARTURE_UP_TO):
            table = (views.NumpyOps(np_dtype) if f.backend == "numpy"
                     else TorchOps(cfg.dtype, cfg.device))
            one = {k: np.asarray(v)[f.sample:f.sample + 1] for k, v in values.items()}
            from ..backends.torch import exact_math
            with exact_math():
                caps = own_program([model.loss], table, one)
            searches[f.backend] = first_departure(caps, one, dtype=comp.dtype,
                                                  tol=cfg.tolerance, backend=f.backend,
                                                  sample=f.sample)
        search = searches.get(f.backend)
        ctx = causes.Context(
            dtype=comp.dtype, value_status=STATUS_NAMES[int(comp.status[row, 0])],
            value_expected=float(comp.expected[row, 0]), value_got=float(comp.got[row, 0]),
            departure=search.departure.message() if search and search.departure else "",
            forward_agrees=bool(search and search.agrees))
        cause = causes.classify_tensor(f, ctx, has_branch)
        owner = "symgrad's own program — " if f.backend in OWN_BACKENDS else ""
        out.append(replace(f, cause=f"{owner}{cause.klass}: {cause.name}",
                           note=with_proof(f.note, cause.explanation)))
    return out
MAX_ENTRIES = 400_000_000  # samples x gradient entries held as float64 arrays per backend


def at_samples(at: dict) -> int:
    return max(int(np.shape(v)[0]) for v in at.values()) if at else 0


CHUNK = 1 << 22  # entries compared at once
NUMPY_VIEW_UP_TO = 50_000_000  # samples x parameters for which the numpy view also runs


def _badness(comp: Comparison) -> np.ndarray:
    """error / allowance per entry (float32; inf where the backend is not finite)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        bad = (comp.ulps / comp.allowed_ulps).astype(np.float32)
    bad[~np.isfinite(comp.ulps)] = np.inf
    bad[np.isnan(bad)] = -1.0
    return bad


def _top(bad: np.ndarray, mask: np.ndarray | None, limit: int) -> np.ndarray:
    """Flat indices of the ``limit`` entries of ``mask`` (default all) with the largest
    badness, worst first (argpartition: no sort of GPT-2's 163M entries)."""
    flat = bad.reshape(-1)
    if mask is not None:
        where = np.flatnonzero(mask)
        if where.size > limit:
            where = where[np.argpartition(-flat[where], limit - 1)[:limit]]
    else:
        where = np.argpartition(-flat, min(limit, flat.size) - 1)[:limit]
    return where[np.argsort(-flat[where], kind="stable")]


def _failures(name: str, comp: Comparison, flat: np.ndarray, bad, outputs, values,
              subset) -> list[Failure]:
    """One ``Failure`` per flat index: backend, status, output name, sample, point, expected
    vs got, error and allowance in ULPs (as ``symgrad.verify`` words them)."""
    found = []
    width = comp.status.shape[1]
    for f in flat:
        i, k = divmod(int(f), width)
        s = int(subset[i])
        point = {b: _shown_value(v[s]) for b, v in values.items()}
        status = int(comp.status[i, k])
        note = _block_note(comp, i, k) if status == SYSTEMATIC else ""
        if status == INCONCLUSIVE:
            note = undecided_note(comp, i, k)
        if status == MISMATCH:
            note = proof_note(comp, i, k) or note
        found.append(Failure(name, STATUS_NAMES[status], outputs[k], s, point,
                             float(comp.expected[i, k]), float(comp.got[i, k]),
                             float(comp.ulps[i, k]), float(comp.allowed_ulps[i, k]), note,
                             column=int(k)))
    return found


COMPACT_FROM = 50_000_000  # from this many entries, ULPs are kept in float32


def _fit(x: np.ndarray, kind) -> np.ndarray:
    """Finite values beyond float32's range (errors at exactly-zero entries, in ULPs of 0)
    become float32's largest number instead of inf."""
    if kind is np.float64:
        return x
    big = float(np.finfo(np.float32).max)
    return np.where(np.isfinite(x), np.clip(x, -big, big), x).astype(np.float32)


def compare_compact(hi, lo, got, E, *, backend: str, dtype: str, tol,
                    rigorous=None) -> Comparison:
    """``symgrad.compare.compare`` over column chunks, kept compactly: ULPs and allowances in
    float32 beyond ``COMPACT_FROM`` entries (capped at float32's largest finite number),
    ``got`` and ``expected`` the arrays passed in (no copies), no kink positions (the tensor
    oracle has no kinks). GPT-2 at full size: 2.8 GB per backend instead of 9. ``rigorous``:
    a ``symgrad.rigorous.Enclosure`` (None above 200k parameters: no proof, a mismatch beyond
    the fast allowance stays one); its radii are kept where computed."""
    n, width = hi.shape
    small = n * width <= COMPACT_FROM
    kind = np.float64 if small else np.float32
    ulps = np.empty((n, width), kind)
    allowed = np.empty((n, width), kind)
    status = np.empty((n, width), np.int8)
    got = np.asarray(got, dtype=np.float64)
    radius = np.full((n, width), np.nan) if rigorous is not None else None
    error = np.empty((n, width)) if rigorous is not None else None
    allowed_abs = np.empty((n, width)) if rigorous is not None else None
    step = max(1, CHUNK // max(n, 1))
    for a in range(0, width, step):
        part = slice(a, a + step)
        c = compare(hi[:, part], lo[:, part], got[:, part], E[:, part], backend=backend,
                    dtype=dtype, tol=tol,
                    rigorous=None if rigorous is None else rigorous.columns(part))
        ulps[:, part], allowed[:, part] = _fit(c.ulps, kind), _fit(c.allowed_ulps, kind)
        status[:, part] = c.status
        if rigorous is not None:
            radius[:, part], error[:, part] = c.rigorous, c.error
            allowed_abs[:, part] = c.allowed_abs
    return Comparison(backend, dtype, ulps, allowed, status, got, hi,
                      np.broadcast_to(np.float64(np.nan), (n, width)), allowed_abs=allowed_abs,
                      error=error, rigorous=radius)


def block_tests(comp: Comparison, hi, lo, E, blocks, tol) -> Comparison:
    """The per-sample block test and the pooled test (``symgrad.compare.systematic_blocks``)
    on each parameter block, reading one block's columns at a time: a x1.5 or sign-flipped
    block is caught even where its entries are inconclusive one by one."""
    def columns(a: int, b: int):
        exact = hi[:, a:b]
        with np.errstate(invalid="ignore", over="ignore"):
            err = (comp.got[:, a:b] - exact) - np.asarray(lo[:, a:b], dtype=np.float64)
            allowed = allowance(E[:, a:b], comp.dtype, tol)
        return exact, err, np.where(np.isnan(allowed), np.inf, allowed)
    status, found = systematic_blocks(columns, comp.status, blocks, comp.dtype, tol)
    return replace(comp, status=status, systematic=tuple(found),
                   resolution=pooled_resolution(len(status), comp.dtype, tol))


def oracle_subset(model: TensorModel, cfg: VerifyConfig) -> np.ndarray:
    """The first K samples: ``oracle_samples``, or as many as ``oracle_budget`` allows at
    about 30 operations per parameter entry and sample."""
    if cfg.oracle_samples is not None:
        k = min(cfg.oracle_samples, cfg.samples)
    else:
        k = int(min(cfg.samples, max(1, cfg.oracle_budget // (30 * model.n_parameters))))
    return np.arange(k)


def _given(model: TensorModel, at: dict, dtype: str) -> dict[str, np.ndarray]:
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
        values[b.name] = v.astype(np.int64) if b.domain.integer else round_to(v, dtype)
    return values


@contextmanager
def _phase(what: str, cfg: VerifyConfig, timings: dict, key: str, total: int | None = None):
    """Time a phase; with ``cfg.progress``, a tqdm bar (or a line) on stderr."""
    t0 = time.perf_counter()
    bar = None
    if cfg.progress and total is not None and total > 1:
        from tqdm import tqdm
        bar = tqdm(total=total, desc=f"  {what}", file=sys.stderr, leave=False,
                   mininterval=1.0)
    elif cfg.progress:
        print(f"  {what}…", file=sys.stderr, flush=True)

    def tick(done: int) -> None:
        if bar is not None and done > bar.n:
            bar.update(done - bar.n)  # redraws at most once a second
    try:
        yield tick
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
        if bar is not None:
            bar.close()
        if cfg.progress:
            print(f"  {what}: {timings[key]:.2f} s", file=sys.stderr, flush=True)
