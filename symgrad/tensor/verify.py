"""The pipeline for every model: derive -> numpy / torch / torch_fn -> oracle + bound -> compare.

>>> import symgrad as sg, symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
>>> sg.verify(m, samples=4).ok
True
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable

import numpy as np

from .. import causes
from ..backends import torch as torch_backend
from ..backends.flat import reused_flat
from ..backends.float64 import Float64Runs, reruns64
from ..backends.torch import exact_math
from ..compare import STATUS_NAMES, Comparison, allowance, mark_singular
from ..config import (CERTIFY_UP_TO, LARGE_MODEL_ENTRIES, MODEL_SAMPLES, OWN_BACKENDS,
                      VerifyConfig)
from ..confirm import Experiments, confirm
from ..domains import round_to
from ..findings import with_proof
from ..points import given_samples
from ..measures import STREAM_FROM, summary_scan
from ..result import BackendRun, Result
from ..rigorous import tensor_enclosure
from . import context, spill, views
from .confirm_big import BigConfirm, fresh_sample
from .comparing import block_tests, compare_compact, kept_whole, shared_allowance
from .departure import first_departure, own_program
from .entrybounds import entry_bounds
from .doubt import judge_certificate, mark_doubt
from .fresh import fresh_oracle, judge_fresh
from .model import Outputs, TensorModel
from .kinks import has_sites, oracle_program, reached
from .phases import phase as _phase
from .rulecheck import RuleCheck
from .limits import (RowAllowance, check_rewrite, mark_open, oracle_limits, smallest_allowance,
                     with_limit_sides)
from .sides import kink_sides, rejudge
from .spotcheck import SpotCheck, check as check_spot
from .streaming import FINDING_LISTS, Bounds, backends, findings_of
from .tables import TorchOps, oracle_ops
from .undefined import refuse_undefined
from .views import block_spans, certify_view, numpy_view, oracle_steps, oracle_view, torch_view


def verify_tensor(model: TensorModel, *, torch_fn: Callable | None, cfg: VerifyConfig,
                  at: dict | None = None, oracle_table=None, fresh: Callable | None = None,
                  extra: dict[str, tuple[Callable, str]] | None = None, client=None,
                  confirming: bool = True) -> Result:
    """``sg.verify`` for a ``TensorModel`` (see ``symgrad.verify.verify`` for the arguments);
    ``oracle_table`` overrides the oracle's array-ops table (default ``oracle_ops()``); ``extra``
    adds backends, name -> (per-sample torch function, mode label), each run sample by sample
    like ``torch_fn`` (a user's module on each torch path: ``symgrad.modules``); ``fresh(m)``:
    m fresh samples (an ``at=`` dict) for the confirmation where ``at`` fixed the points;
    ``confirming=False``: no suspicion confirmed (a large model's fresh run, ``confirm_big``)."""
    timings: dict[str, float] = {}
    cfg = cfg.with_samples(MODEL_SAMPLES)  # a config without samples: the default draw
    np_dtype = cfg.dtype if cfg.dtype in ("float64", "float32", "float16") else "float32"
    torch_backend.check_device(cfg.device, cfg.dtype)
    if torch_fn is not None:
        torch_backend.check_torch_fn(torch_fn, [b.name for b in model.blocks])
    given = _given(model, at, cfg.dtype) if at is not None else None
    spill.check_entries(model.name, at_samples(given) if at is not None else cfg.samples,
                        model.n_parameters)
    with _phase(f"deriving {model.name} ({model.n_nodes} nodes)", cfg, timings, "derive_s"):
        grad = model.gradient
    values = given if given is not None else model.draw(
        cfg.samples, np.random.default_rng(cfg.seed), cfg.dtype)
    n = next(iter(values.values())).shape[0]
    cfg = replace(cfg, samples=n)

    plan = backends(model, values, cfg, np_dtype, numpy=n * model.n_parameters <= NUMPY_VIEW_UP_TO,
                    torch_fn=torch_fn, extra=extra or {})  # above: memory goes to the backends
    subset = oracle_subset(model, cfg)
    compared = tuple(sorted({b.dtype for b in plan}))  # the bound's tie band (tie_band)
    # every sample compared (GPT-2's one): the samples themselves, not a copy (1.3 GB)
    sub = values if len(subset) == n else {k: v[subset] for k, v in values.items()}
    table = oracle_table or oracle_ops(cfg.oracle_dps, products=cfg.oracle_products)
    keys = program = None  # kink sites: the oracle runs the sided program at each sample's sides
    if has_sites(model):
        with _phase("kinks", cfg, timings, "kinks_s"):
            keys = reached(model, sub, table, list(compared), cfg.tolerance)
            program = oracle_program(model, keys)
    big = model.n_parameters > CERTIFY_UP_TO  # no end-to-end ARB re-check: spot-certify steps
    spot, zone_open = SpotCheck() if big else None, {}  # zone_open: rows' open ball entries
    zone = views.zone_bits(cfg)  # their balls' first and largest precision
    with _phase(f"exact derivative (oracle), {getattr(table, 'name', type(table).__name__)}",
                cfg, timings, "oracle_s", total=oracle_steps(model, len(subset))) as tick:
        hi, lo = oracle_view(model, sub, table, progress=tick, spot=spot, program=program,
                             client=client if oracle_table is None else None, dps=cfg.oracle_dps,
                             undecided=zone_open, zone_bits=zone)
    if big:
        check_spot(spot, model.name)
        certified = spot.summary()
    else:
        with _phase("certify (ARB)", cfg, timings, "certify_s"):
            cert = certify_view(model, sub, hi[:1][0], lo[:1][0], program=program)
    tol = cfg.tolerance  # worst case, or probabilistic (Tolerance.entry_bound)
    user = [b.name for b in plan if b.name not in OWN_BACKENDS]
    textbook = model.textbook_program if user else None  # nothing to do (or pay) without one
    with _phase("bound", cfg, timings, "bound_s"):
        E = entry_bounds(model, sub, cfg.tolerance, len(subset), dtypes=compared)
    with _phase("limits, rewrite check", cfg, timings, "limits_s"):  # as the scalar oracle
        dtypes = tuple(b.dtype for b in plan)  # whole only for the rewrite check (plain models)
        least = (smallest_allowance(E, dtypes, tol) if model.written_program is not None
                 else RowAllowance(E, dtypes, tol))
        limits = oracle_limits(model, sub, hi, lo, allowed=least, program=program, skip=[
            r for r, ks in (keys.rows if keys else {}).items() if ks],
            start=cfg.oracle_bits, cap=cfg.oracle_max_bits, open_=zone_open)
        rewrite = check_rewrite(model, sub, hi, lo, least, limits=limits.rows,
                                start=cfg.oracle_bits, cap=cfg.oracle_max_bits)
    refuse_undefined(model, sub, hi, zone_open, drawn=at is None)  # before any backend runs

    def textbook_bound() -> np.ndarray:  # when the first user backend is compared
        with _phase("bound (textbook)", cfg, timings, "bound_s"):
            return entry_bounds(textbook, sub, cfg.tolerance, len(subset), dtypes=compared)
    bounds = Bounds(E, textbook_bound if textbook is not None else None, OWN_BACKENDS)
    E_of = bounds.of  # a user's code: the larger of the two programs' bounds
    doubt = judge_certificate(None if big else cert, E[0], [b.dtype for b in plan], tol, model.name,
                              settled=limits.decided, unrounded=zone_open, zone_cap=zone[1])
    del E
    certified = certified if big else doubt.summary()
    blocks = [(b.name, a, a + size)  # (name, first column, end column)
              for b, (a, size, _) in zip(model.param_blocks, block_spans(model, 1)[1:])]
    kinks = None  # the sides of every kink a compared sample reaches (none: nothing extra)
    if keys is not None and keys.any():
        with _phase("kink sides", cfg, timings, "kinks_s"):
            kinks = kink_sides(model, sub, keys, table, hi, lo)
    kinks = with_limit_sides(kinks, limits, hi.shape)  # two different one-sided limits
    enclosures: dict = {}  # per (user?, dtype): the rigorous enclosure, lazy (<= 200k params)
    runs64 = Float64Runs(model.blocks, sub, device=cfg.device, torch_fn=torch_fn,
                         extra=extra or {})  # the user's code in float64: once, for both readers
    rules = RuleCheck(model, sub, cfg, torch_fn, extra, textbook, partial(  # in float64 too
        judge_certificate, None if big else cert, dtypes=["float64"], tol=tol, model=model.name,
        settled=limits.decided, unrounded=zone_open, zone_cap=zone[1]), limits.rows,
        on=not big and rewrite is None, enclosures=enclosures, runs64=runs64)
    names = Outputs(model.param_blocks)
    quick = BigConfirm("off" if not confirming else "big" if big else "small", blocks, subset)
    found: dict[str, dict[str, list]] = {}  # backend -> its finding lists
    memo: dict = {}  # the figures of each reduced comparison (ResultMeasures.keep_figures)

    def finish(name: str, comp: Comparison) -> Comparison:
        """The backend's findings; above STREAM_FROM entries its figures, then it reduced."""
        with _phase("summary", cfg, timings, "summary_s"):
            alone = Result(model.name, cfg, names, blocks, runs, {name: comp}, subset, [], [])
            found[name] = findings_of(name, comp, names, values, subset, cfg.max_failures,
                                      worst=alone.worst_entries(name))  # the figures' one pass
            more = quick.collect(name, comp, cfg, names, values, subset,
                                 reduced=comp.status.size >= STREAM_FROM)  # its suspect blocks'
            if comp.status.size < STREAM_FROM:
                return comp
            memo.update(alone.keep_figures(name, [f for fs in found[name].values() for f in fs]
                                           + more))
            return comp.reduce(memo.get(("ulp_counts", name)))

    runs: dict[str, BackendRun] = {}
    comparisons: dict[str, Comparison] = {}
    keys: dict[str, tuple] = {}  # backend -> (user bound?, dtype): its allowance's inputs
    with reused_flat():  # torch_fn writes into the torch view's array once it is free
        for i, backend in enumerate(plan):  # each run, compared, summarised before the next runs
            with _phase(backend.name, cfg, timings, f"{backend.name}_s"):
                got, runs[backend.name] = backend.run()
            with _phase("compare", cfg, timings, "compare_s"):
                name, dt, Eb = backend.name, backend.dtype, E_of(backend.name)
                key = (name not in OWN_BACKENDS and textbook is not None, dt)
                if not big and key not in enclosures:
                    enclosures[key] = tensor_enclosure(
                        model, sub, hi, lo, dt, cfg.tolerance.function_ulps,
                        textbook=textbook if key[0] else None)
                got = got if len(subset) == n else got[subset]
                # a large comparison's ULPs and allowances recomputed where read, not held
                deferred = (kinks is None and enclosures.get(key) is None
                            and got.size >= STREAM_FROM)
                comp = compare_compact(hi, lo, got, Eb, backend=name, dtype=dt, tol=cfg.tolerance,
                                       rigorous=enclosures.get(key), deferred=deferred,
                                       scan=summary_scan(got.shape, blocks) if deferred else None,
                                       allowed_ulps=shared_allowance(key, {
                                           b: (keys[b], c) for b, c in comparisons.items()}))
                keys[name] = key
                if kinks is not None:
                    comp = rejudge(comp, kinks, hi, lo, got, Eb, cfg.tolerance, enclosures.get(key))
                comp = mark_open(mark_doubt(mark_singular(comp, enclosures.get(key)), doubt), rewrite)
                del got
                rerun = not big and dt != "float64" and reruns64(name, torch_fn, extra or {})
                comp = block_tests(comp, hi, lo, Eb, blocks, cfg.tolerance, rerun=rerun)
                ruled = rules(name, dt, comp, hi, lo, Eb, kinks, rerun=rerun)  # float64 rule check
                del Eb
            comp = quick.mark(name, comp)  # a large model's suspicions: a fresh sample decides
            if quick.waits(name, comp):  # kept for the confirmation: its figures as arrays
                comp = kept_whole(comp)
            comparisons[name] = comp
            needed = [b.name for b in plan[i + 1:]] + [
                n for n, c in comparisons.items() if quick.waits(n, c)]
            bounds.drop(needed)  # and the oracle's low part once nothing is left to compare
            lo = lo if needed else None
            if not quick.waits(name, comp):
                comparisons[name] = finish(name, comp)
            del comp
            if ruled:  # what it proves: a backend of its own (symgrad.tensor.rulecheck)
                runs[ruled[0]], keys[ruled[0]] = ruled[1], (True, "float64")
                comparisons[ruled[0]] = finish(ruled[0], ruled[2])
    timings["rigorous_s"] = sum(e.seconds for e in enclosures.values())
    if any(quick.waits(n, c) for n, c in comparisons.items()):
        with _phase("confirm", cfg, timings, "confirm_s"):
            exp = _experiments(model, sub, hi, lo, E_of, comparisons, cfg, torch_fn, extra or {},
                               table, drawn=fresh or at is None, runs64=runs64)
            comparisons.update(confirm({n: c for n, c in comparisons.items()
                                        if quick.waits(n, c)}, blocks, cfg.tolerance, exp))
        for name in [n for n in comparisons if n not in found]:
            comparisons[name] = finish(name, quick.mark(name, comparisons[name]))
    del hi, lo, bounds
    if quick.suspects:  # a large model's suspicions: this pipeline again on one fresh sample
        with _phase("confirm (one fresh sample)", cfg, timings, "confirm_s"):
            spill.set_aside(values)  # this run's samples, out of the way of the second's
            quick.confirm(comparisons, found, memo, lambda v, c, ns: verify_tensor(
                model, torch_fn=torch_fn, cfg=c, at=v, oracle_table=oracle_table, extra={
                    k: e for k, e in (extra or {}).items() if k in ns}, confirming=False),
                *fresh_sample(model, cfg, at=at, fresh=fresh), cfg)
    lists = {k: [f for name in comparisons for f in found[name][k]] for k in FINDING_LISTS}
    with _phase("causes", cfg, timings, "causes_s"):
        failures = rules.annotate(with_causes(model, lists["failures"], comparisons, values,
                                              subset, cfg, np_dtype, torch_fn, blocks))
    size = {"nodes": model.n_nodes, "gradient_nodes": len(grad.nodes),
            "parameters": model.n_parameters, "oracle_certified": certified}
    result = Result(model.name, cfg, names, blocks, runs, comparisons, subset, failures,
                    lists["losses"], timings, size, lists["worst"], lists["kinks"],
                    lists["undecided"], values=values)
    result._memo.update(memo)
    result.float64_seen = rules.seen  # what float64 could see: Result.resolution
    if rewrite is not None:  # the formula as written, in balls: the bits it needed
        result.oracle_bits = rewrite.summary()
    return result


def _experiments(model: TensorModel, sub: dict, hi, lo, E_of: Callable, comparisons: dict,
                 cfg: VerifyConfig, torch_fn, extra: dict, table, drawn,
                 runs64: Float64Runs) -> Experiments:
    """The confirmation's experiments for a tensor model (``symgrad.confirm.Experiments``):
    the numpy and torch views and torch_fn re-run in float64 on the flagged samples; every
    backend, the oracle and the bound on fresh samples (``drawn``: the domains, or ``m -> at``).
    ``E_of(name)``: the entry bounds of a backend (a user's code: the larger of the stable and
    the textbook program's); ``runs64``: the user's code in float64 on ``sub``, the run the
    rule check made (or makes now), sliced to the flagged rows."""
    tol = cfg.tolerance

    def run_at(name: str, values: dict, dtype: str):
        if name in ("numpy", "torch"):
            return (numpy_view(model, values, dtype) if name == "numpy" else
                    torch_view(model, values, dtype=dtype, device=cfg.device))
        fn, mode = ((torch_fn, cfg.torch_fn_batching) if name == "torch_fn" else
                    (extra.get(name, (None,))[0], "loop"))
        return None if fn is None else torch_backend.run_torch_fn(
            fn, model.blocks, values, device=cfg.device, dtype=dtype, batching=mode)[0]

    def allowed_of(bound, dtype):
        a = allowance(bound, dtype, tol)
        return np.where(np.isnan(a), np.inf, a)

    def columns(name: str, a: int, b: int):
        with np.errstate(invalid="ignore", over="ignore"):
            err = (comparisons[name].got[:, a:b] - hi[:, a:b]) - lo[:, a:b]
        return hi[:, a:b], err, allowed_of(E_of(name)[:, a:b], comparisons[name].dtype)

    def rerun64(name: str, rows: np.ndarray):
        if name in OWN_BACKENDS:  # symgrad's own views, in float64 at the rows
            got = run_at(name, {k: v[rows] for k, v in sub.items()}, "float64")
        else:  # the user's code: the one float64 run on every sample (the rule check's)
            got = runs64.get(name)
            got = None if got is None else got[rows]
        if got is None:
            return None
        with np.errstate(invalid="ignore", over="ignore"):
            err = (np.asarray(got, np.float64) - hi[rows]) - lo[rows]
        return hi[rows], err, allowed_of(E_of(name)[rows], "float64")

    def fresh(names, m: int):
        if not drawn:
            return None
        values = _given(model, drawn(m), cfg.dtype) if callable(drawn) else model.draw(
            m, np.random.default_rng(np.random.SeedSequence([cfg.seed, 1])), cfg.dtype)
        compared = tuple(sorted({c.dtype for c in comparisons.values()}))
        h2, l2, k2 = fresh_oracle(model, values, table, list(compared), cfg=cfg)
        E2 = entry_bounds(model, values, tol, m, dtypes=compared)
        text = model.textbook_program if set(names) - set(OWN_BACKENDS) else None
        E2_user = E2 if text is None else np.fmax(
            E2, entry_bounds(text, values, tol, m, dtypes=compared))
        out = {}
        for name in names:
            got = run_at(name, values, cfg.dtype)
            if got is None:
                continue
            dtype, Eb = comparisons[name].dtype, E2 if name in OWN_BACKENDS else E2_user
            c = judge_fresh(compare_compact(h2, l2, got, Eb, backend=name, dtype=dtype, tol=tol),
                            k2, h2, l2, got, Eb, tol)
            out[name] = replace(c, exact_lo=l2, allowed_abs=allowed_of(Eb, dtype))
        return out
    budget = oracle_subset(model, replace(cfg, samples=10**9, oracle_samples=None)).size
    return Experiments(columns, rerun64, fresh, int(budget), len(hi))


DEPARTURE_UP_TO = 200_000  # parameters: symgrad's own failing program is searched for where its
#                           forward departs (one sample, every labelled node in double-double)


def with_causes(model: TensorModel, failures: list, comparisons: dict, values: dict,
                subset: np.ndarray, cfg: VerifyConfig, np_dtype: str,
                torch_fn: Callable | None = None, blocks: list = ()) -> list:
    """Each failure with its root cause (``symgrad.causes``): the kind, the catalogue of torch
    behaviours (read from the program's exact intermediates, ``symgrad.tensor.context``), then
    the first split - the function differs (the loss value of that backend and sample fails, or
    the forward departs at a labelled intermediate of symgrad's own program) or the derivative
    of the same function is wrong. A torch_fn's intermediates are not visible: its split is by
    the value; ``blocks`` ((name, first, end column) each) give its block's entries."""
    searches: dict[str, object] = {}
    memo: dict = {}  # symgrad.tensor.context: one exact evaluation per failing sample
    out = []
    for f in failures:
        comp = comparisons[f.backend]
        row = int(np.flatnonzero(subset == f.sample)[0])
        if (f.backend in OWN_BACKENDS and f.backend not in searches
                and model.n_parameters <= DEPARTURE_UP_TO):
            table = (views.NumpyOps(np_dtype) if f.backend == "numpy"
                     else TorchOps(cfg.dtype, cfg.device))
            one = {k: np.asarray(v)[f.sample:f.sample + 1] for k, v in values.items()}
            with exact_math():
                caps = own_program([model.loss], table, one)
            searches[f.backend] = first_departure(caps, one, dtype=comp.dtype, tol=cfg.tolerance,
                                                  backend=f.backend, sample=f.sample)
        search = searches.get(f.backend)
        ctx = causes.Context(
            dtype=comp.dtype, value_status=STATUS_NAMES[int(comp.status[row, 0])],
            value_expected=float(comp.expected[row, 0]), value_got=float(comp.got[row, 0]),
            departure=search.departure.message() if search and search.departure else "",
            forward_agrees=bool(search and search.agrees),
            block=causes.block_entries(comp, row, f.column, blocks))  # a backward's own bugs
        one = {k: np.asarray(v)[f.sample:f.sample + 1] for k, v in values.items()}
        cause = context.classify(model, f, ctx, one, torch_fn=torch_fn, device=cfg.device,
                                 memo=memo)
        owner = "symgrad's own program — " if f.backend in OWN_BACKENDS else ""
        out.append(replace(f, cause=f"{owner}{cause.klass}: {cause.name}",
                           note=with_proof(f.note, cause.explanation)))
    return out
# samples x parameters up to which the numpy view also runs: above, a large model's
# (``config.LARGE_MODEL_ENTRIES``) memory goes to the other backends
NUMPY_VIEW_UP_TO = LARGE_MODEL_ENTRIES


def at_samples(at: dict) -> int:
    return max(int(np.shape(v)[0]) for v in at.values()) if at else 0


def oracle_subset(model: TensorModel, cfg: VerifyConfig) -> np.ndarray:
    """The first K samples: ``oracle_samples``, or as many as ``oracle_budget`` allows at
    about 30 operations per parameter entry and sample."""
    if cfg.oracle_samples is not None:
        k = min(cfg.oracle_samples, cfg.samples)
    else:
        k = int(min(cfg.samples, max(1, cfg.oracle_budget // (30 * model.n_parameters))))
    return np.arange(k)


def _given(model: TensorModel, at: dict, dtype: str) -> dict[str, np.ndarray]:
    """Explicit samples, checked as the scalar pipeline checks them (``symgrad.points``: an
    unknown name, a missing block, a non-integer value for an Integers input, a wrong shape
    are each a one-line error), rounded to the run's dtype; integer inputs as int64."""
    return {b.name: (v.astype(np.int64) if b.domain.integer else round_to(v, dtype))
            for b, v in zip(model.blocks, given_samples(model, at, "at").values())}

