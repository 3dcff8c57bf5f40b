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

from ..compare import FAILING, KINK, LOSS, STATUS_NAMES, Comparison, compare
from ..config import VerifyConfig
from ..errors import SymgradError
from ..model import round_to
from ..result import BackendRun, Failure, Result
from .model import Outputs, TensorModel
from .tables import oracle_ops
from .views import certify_view, numpy_view, oracle_steps, oracle_view, torch_view


@dataclass
class _Batch:
    values: dict[str, np.ndarray]


def verify_tensor(model: TensorModel, *, torch_fn: Callable | None, cfg: VerifyConfig,
                  at: dict | None = None, oracle_table=None,
                  extra: dict[str, tuple[Callable, str]] | None = None) -> Result:
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
    with _phase(f"oracle ({getattr(table, 'name', type(table).__name__)})", cfg, timings,
                "oracle_s", total=oracle_steps(model, len(subset))) as tick:
        hi, lo = oracle_view(model, sub, table, progress=tick)
    certified = "not re-checked (over CERTIFY_UP_TO parameters)"
    if model.n_parameters <= CERTIFY_UP_TO:
        with _phase("certify (ARB)", cfg, timings, "certify_s"):
            cert = certify_view(model, sub, hi[:1][0], lo[:1][0])
        if not cert.ok:
            raise SymgradError(f"model {model.name!r}: the oracle's double-double values are "
                               f"not certified by ball arithmetic: {cert.summary()}")
        certified = f"{cert.n_certified}/{cert.n} entries of sample 0 (ARB balls)"
    with _phase("bound", cfg, timings, "bound_s"):
        from .bound import evaluate_bound
        from .views import _flatten
        E = _flatten(model, evaluate_bound(grad.outputs, sub), np.asarray, len(subset))
    with _phase("compare", cfg, timings, "compare_s"):
        comparisons = {}
        for name in list(outputs):
            got = outputs.pop(name)
            comparisons[name] = compare_compact(hi, lo, got if len(subset) == n else got[subset],
                                                E, backend=name, dtype=runs[name].dtype,
                                                tol=cfg.tolerance)
            del got
    del lo, E
    names = Outputs(model.param_blocks)
    blocks, col = [], 1
    for b in model.param_blocks:
        blocks.append((b.name, col, col + b.size))
        col += b.size
    batch = _Batch(values)
    failures, losses, worst, kinks = [], [], [], []
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
    size = {"nodes": model.n_nodes, "gradient_nodes": len(grad.nodes),
            "parameters": model.n_parameters, "oracle_certified": certified}
    return Result(model.name, cfg, names, blocks, runs, comparisons, subset, failures, losses,
                  timings, size, worst, kinks)


CERTIFY_UP_TO = 200_000  # parameters: the first oracle sample is re-checked with ARB balls
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
    from ..verify import _shown_value
    found = []
    width = comp.status.shape[1]
    for f in flat:
        i, k = divmod(int(f), width)
        s = int(subset[i])
        point = {b: _shown_value(v[s]) for b, v in values.items()}
        found.append(Failure(name, STATUS_NAMES[int(comp.status[i, k])], outputs[k], s, point,
                             float(comp.expected[i, k]), float(comp.got[i, k]),
                             float(comp.ulps[i, k]), float(comp.allowed_ulps[i, k])))
    return found


COMPACT_FROM = 50_000_000  # from this many entries, ULPs are kept in float32


def _fit(x: np.ndarray, kind) -> np.ndarray:
    """Finite values beyond float32's range (errors at exactly-zero entries, in ULPs of 0)
    become float32's largest number instead of inf."""
    if kind is np.float64:
        return x
    big = float(np.finfo(np.float32).max)
    return np.where(np.isfinite(x), np.clip(x, -big, big), x).astype(np.float32)


def compare_compact(hi, lo, got, E, *, backend: str, dtype: str, tol) -> Comparison:
    """``symgrad.compare.compare`` over column chunks, kept compactly: ULPs and allowances in
    float32 beyond ``COMPACT_FROM`` entries (capped at float32's largest finite number),
    ``got`` and ``expected`` the arrays passed in (no copies), no kink positions (the tensor
    oracle has no kinks). GPT-2 at full size: 2.8 GB per backend instead of 9."""
    n, width = hi.shape
    small = n * width <= COMPACT_FROM
    kind = np.float64 if small else np.float32
    ulps = np.empty((n, width), kind)
    allowed = np.empty((n, width), kind)
    status = np.empty((n, width), np.int8)
    got = np.asarray(got, dtype=np.float64)
    step = max(1, CHUNK // max(n, 1))
    for a in range(0, width, step):
        part = slice(a, a + step)
        c = compare(hi[:, part], lo[:, part], got[:, part], E[:, part], backend=backend,
                    dtype=dtype, tol=tol)
        ulps[:, part], allowed[:, part] = _fit(c.ulps, kind), _fit(c.allowed_ulps, kind)
        status[:, part] = c.status
    return Comparison(backend, dtype, ulps, allowed, status, got, hi,
                      np.broadcast_to(np.float64(np.nan), (n, width)))


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
