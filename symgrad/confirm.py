"""Statistical suspicions are confirmed by an independent experiment before they fail anything.

The block and pooled tests (``symgrad.compare``) and the entries beyond the fast bound raise
*suspicions* (status SUSPECT). Each suspected (backend, block) goes through, in order:

a. **Float64 re-run** (runs in a narrower dtype only): the same backend - the same code - is run
   again in float64 on the flagged samples. A scaling bug in code survives a wider dtype;
   rounding shrinks by 2^29 (float32) or more. A block suspicion is confirmed when the float64
   projection p64 has the same sign, |p64 - p| <= |p| / 2, and |p64| is beyond float64's own
   block threshold max(block_floor u64, block_sigmas sigma64) (pooled: sigma64 of the weighted
   mean). An entry suspicion is confirmed where the float64 error has the same sign and at least
   half the size. A suspicion raised only by the lower floors such a re-run allows
   (``BlockFinding.rerun_only``, ``symgrad.compare.blockflags``) is decided by (a) alone:
   reproduced, it is "proven in float64"; otherwise it is dropped (no note, no fresh samples):
   the usual floors would not have raised it, so it never makes a run inconclusive.
b. **Fresh samples** (float64, or when (a) does not reproduce): M new draws from the model's
   domains, seeded from the run's seed (``SeedSequence([seed, 1])``), M = max(confirm_samples,
   min(2 N, the oracle budget's samples)); not drawn when M exceeds ``confirm_cost`` x that
   budget. The backend, the oracle, the bound and the comparison run on them; a block suspicion
   is confirmed when the pooled test at lam = ``pooled_sigmas`` flags the same block with the
   same sign (or a sign test at the same level does: ``_block_by_fresh``), an entry suspicion
   when the backend has entries beyond the fast allowance in the same block. Fresh samples
   that land on a kink are judged as the run's own: the comparer's one-sided derivatives and
   subgradient test decide those entries (a joint failure there is a MISMATCH and counts), and
   their distance from sympy's H(0) = 1/2 value counts in neither test. A per-sample rounding outlier does not repeat; a shared, sign-alternating
   rounding (``exp(t) - 1`` at tiny t) has no common sign; a x1.5 / x0 / x-1 block bug fires on
   every sample.
c. Confirmed: SUSPECT entries become SYSTEMATIC (block) or MISMATCH (entry), and the finding says
   which experiment confirmed it. Refuted by (b): the entries return to their entry-test status
   (they were within the entry bound) and the suspicion is kept as a note
   (``Comparison.unconfirmed``). Neither experiment could run (a backend that cannot be re-run,
   samples given with ``at=``, a budget too small): INCONCLUSIVE - never ok, never a failure.

A pipeline lends its backends through ``Experiments``: nothing here knows the model's type.
Above ``config.CERTIFY_UP_TO`` parameters (GPT-2: no rigorous enclosure, and 32 fresh samples
exceed the oracle's budget) the tensor pipeline decides a float64 suspicion, and any entry
beyond the fast allowance, by one fresh sample instead: ``symgrad.tensor.confirm_big``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable

import numpy as np

from .compare import (INCONCLUSIVE, LOSS, MISMATCH, OK, SUSPECT, SYSTEMATIC, BlockFinding,
                      Comparison, SymgradError, Tolerance, _projection, dtype_info, pooled_test)

U64 = 2.0**-53
USABLE = (OK, LOSS, MISMATCH, INCONCLUSIVE, SUSPECT)
GIVEN_SAMPLES = "no fresh samples can be drawn (the samples were given by at=)"  # why a
#   suspicion stays untested where the caller fixed the points (a capture rewords it)


@dataclass
class Experiments:
    """What a pipeline lends the confirmation.

    columns: (backend, a, b) -> (exact, error, allowance) of the run's own comparison for
        columns a..b-1, each (N, b - a) float64 (error = got - exact, signed).
    rerun64: (backend, rows) -> (exact, error, allowance) over every column at those rows
        (an index array), the backend run again in float64 with float64 allowances; None where
        the backend cannot be re-run in float64.
    fresh: (backends, m) -> {backend: Comparison} on m fresh samples (with ``exact_lo`` and
        ``allowed_abs``), or None where no fresh samples can be drawn (samples given by ``at=``).
    budget: samples the oracle's budget allows in one run.
    samples: N, the samples the run compared.
    """

    columns: Callable
    rerun64: Callable
    fresh: Callable
    budget: int
    samples: int


def fresh_count(exp: Experiments, tol: Tolerance) -> int:
    """M = max(confirm_samples, min(2 N, budget)); 0 when M > confirm_cost x budget."""
    m = max(tol.confirm_samples, min(2 * exp.samples, exp.budget))
    return 0 if m > tol.confirm_cost * max(exp.budget, 1) else m


def needs_confirmation(comp: Comparison) -> bool:
    return bool(comp.systematic) or bool((comp.status == SUSPECT).any())


def confirm(comparisons: dict[str, Comparison], blocks, tol: Tolerance, exp: Experiments,
            timings: dict | None = None) -> dict[str, Comparison]:
    """Every suspicion of every backend confirmed, refuted or left inconclusive (module doc).

    Arguments:
        comparisons: backend -> Comparison after the block and pooled tests.
        blocks: (name, first column, last column + 1) per parameter block.
        tol: the tolerance settings.
        exp: the pipeline's experiments.
        timings: where ``confirm_s`` is added (only when something was suspected).
    Returns:
        backend -> Comparison with no SUSPECT entry left.
    """
    todo = [n for n, c in comparisons.items() if needs_confirmation(c)]
    if not todo:
        return comparisons
    t0 = time.perf_counter()
    cache: dict = {}

    def fresh():
        if "comps" not in cache:
            m = fresh_count(exp, tol)
            cache["m"] = m
            cache["comps"] = exp.fresh(tuple(todo), m) if m else None
            if m == 0:
                cache["why"] = (f"{max(tol.confirm_samples, 2 * exp.samples)} fresh samples would "
                                f"exceed {tol.confirm_cost:g} x the oracle budget "
                                f"({exp.budget} samples)")
            elif cache["comps"] is None:
                cache["why"] = GIVEN_SAMPLES
        return cache["comps"], cache["m"], cache.get("why", "")
    out = dict(comparisons)
    for name in todo:
        out[name] = _confirm_backend(name, comparisons[name], blocks, tol, exp, fresh)
    if timings is not None:
        timings["confirm_s"] = timings.get("confirm_s", 0.0) + time.perf_counter() - t0
    return out


def _confirm_backend(name: str, comp: Comparison, blocks, tol: Tolerance,
                     exp: Experiments, fresh: Callable) -> Comparison:
    status = comp.status.copy()
    notes = list(comp.unconfirmed)
    memo: dict = {}

    def rerun64(rows: np.ndarray):  # one float64 re-run of every sample, sliced per finding
        if "all" not in memo:
            try:
                memo["all"] = exp.rerun64(name, np.arange(exp.samples))
            except SymgradError:  # the code refuses float64 (a float32 tensor it holds,
                memo["all"] = None  # x64 @ W32): no float64 evidence, as with no re-run
        full = memo["all"]
        return None if full is None else tuple(x[rows] for x in full)
    evidence = []
    decided = []
    for f in comp.systematic:
        if f.confirmed is not None:
            decided.append((f, "kept"))
            continue
        a64 = _block_by_float64(f, rerun64, exp, tol) if comp.dtype != "float64" else None
        if a64 is not None and a64[0]:
            state, text = "confirmed", _proven64(a64[1], comp.dtype, f.rerun_only)
        elif f.rerun_only:  # below the usual floors: (a) decides alone; unreproduced, dropped
            state, text = "dropped", a64[1] if a64 is not None else "no float64 re-run"
        else:
            comps, m, why = fresh()
            if comps is not None and name in comps:
                hit, text = _block_by_fresh(f, comps[name], m, tol)
                state = "confirmed" if hit else "refuted"
                if hit and a64 is not None:  # the dtype's arithmetic, not the code
                    state = "untested"
                    text = (f"{a64[1]}; {text}: a bias of the {comp.dtype} arithmetic (an "
                            f"elementary function's rounding, or a {comp.dtype}-only kernel), "
                            "not of the code: inconclusive")
                elif a64 is not None:
                    text = f"{a64[1]}; {text}"
            else:
                state = "untested"
                text = f"not confirmed: {why or 'the backend cannot be re-run'}" + (
                    f"; {a64[1]}" if a64 is not None else "")
        decided.append((replace(f, confirmed=state == "confirmed", evidence=text), state))
    # confirmed first: an entry marked by a confirmed and a refuted finding stays failing
    for f, state in sorted(decided, key=lambda d: d[1] != "confirmed"):
        if state == "kept" or f.prior is None:
            continue
        a, b = f.columns
        sub = status[f.rows, a:b]
        marked = (sub == SUSPECT) & (f.prior != SUSPECT)
        if state == "confirmed":
            sub[marked] = SYSTEMATIC
        elif state in ("refuted", "dropped"):  # back to the entry test's status
            sub[marked] = f.prior[marked]
        else:
            sub[marked] = INCONCLUSIVE
        status[f.rows, a:b] = sub
        if state not in ("confirmed", "dropped"):
            notes.append(f"{name}: {f.describe()}")
    findings = tuple(f for f, s in decided if s != "dropped")
    # entry suspicions (beyond the fast bound, within the rigorous enclosure): what is left
    left = status == SUSPECT
    if left.any():
        _confirm_entries(name, comp, blocks, status, left, tol, exp, fresh, notes, evidence,
                         rerun64)
    return replace(comp, status=status, systematic=findings, unconfirmed=tuple(notes),
                   evidence=tuple(evidence))


def _proven64(text: str, dtype: str, low: bool) -> str:
    """The float64 re-run's confirmation in words; ``low``: a bias below what the usual
    floors see in ``dtype``, which its rounding hides (``symgrad.compare.blockflags``)."""
    return (f"proven in float64 ({text.removeprefix('confirmed: ')}); {dtype} hides it in "
            "its rounding (below the block test's usual floor)" if low else text)


def _block_by_float64(f: BlockFinding, rerun64: Callable, exp: Experiments,
                      tol: Tolerance) -> tuple[bool, str] | None:
    """(a): the float64 projection reproduces the suspicion? None: no float64 re-run, or one
    whose loss value is not within float64's entry bound (the code does not compute in
    float64: an inner cast to float32 would reproduce its own rounding)."""
    rows = np.arange(exp.samples) if f.sample < 0 else np.array([f.sample])
    got = rerun64(rows)
    if got is None:
        return None
    exact, err, allowed = got
    with np.errstate(invalid="ignore"):
        honours = bool(np.all(np.abs(err[:, 0]) <= allowed[:, 0]))
    if not honours:  # the code rounds below float64 somewhere (an inner .float()): no evidence
        return None
    a, b = f.columns
    exact, err, allowed = exact[:, a:b], err[:, a:b], allowed[:, a:b]
    with np.errstate(invalid="ignore", over="ignore"):
        use = np.isfinite(err) & np.isfinite(exact)
    st = _projection(exact, err, allowed, use)
    ok = st["ok_rows"] & (st["pi"] > tol.block_resolved ** 2)
    if not ok.any():
        return False, "float64 re-run: the block is not resolved there"
    pi = np.where(ok, st["pi"], 0.0)
    pi = pi / pi.max()
    p64 = float((pi * np.where(ok, st["p"], 0)).sum() / pi.sum())
    sigma = float(np.sqrt((pi * pi * np.where(ok, st["sigma"], 0) ** 2).sum()) / pi.sum())
    th = max(tol.block_floor * U64, tol.block_sigmas * sigma)
    p = f.projection
    same = np.sign(p64) == np.sign(p) and abs(p64 - p) <= abs(p) / 2 and abs(p64) > th
    if same:
        return True, f"confirmed: float64 reproduces p = {p64:.3g} (threshold {th:.3g})"
    return False, f"float64 re-run gives p = {p64:.3g} (threshold {th:.3g}): not reproduced"


def _block_by_fresh(f: BlockFinding, comp: Comparison, m: int,
                    tol: Tolerance) -> tuple[bool, str]:
    """(b): on fresh samples, the same block with the same sign - by the pooled test at
    lam = pooled_sigmas, or by a sign test at the same level 2 e^(-lam^2/2): k of the n resolved
    samples' projections share the suspicion's sign with binomial P(K >= k | n, 1/2) <= that
    level, the pooled mean agreeing in sign and beyond ``pooled_floor`` u. Both assume only
    symmetric, independent signs across samples; the sign test does not lose power to the
    spread of the resolution weights (32 samples of tiny_gpt weigh like 10)."""
    a, b = f.columns
    exact, err, allowed = _columns_of(comp, a, b)
    with np.errstate(invalid="ignore", over="ignore"):
        use = (np.isfinite(err) & np.isfinite(exact) & np.isin(comp.status[:, a:b], USABLE)
               & ~_at_kink(comp, a, b))
    st = _projection(exact, err, allowed, use)
    rows = st["ok_rows"] & (st["pi"] > tol.block_resolved ** 2)
    u = dtype_info(comp.dtype).eps / 2
    lam = tol.pooled_sigmas
    level = 2 * np.exp(-lam**2 / 2)
    hit = pooled_test(st["p"], st["pi"], rows, u, tol, lam=lam)
    if hit is not None and np.sign(hit[0]) == np.sign(f.projection):
        return True, (f"confirmed on {m} fresh samples: pooled p = {hit[0]:.3g} (threshold "
                      f"{hit[2]:.3g}, lambda = {lam:g})")
    n = int(rows.sum())
    if n:
        k = int((np.sign(st["p"][rows]) == np.sign(f.projection)).sum())
        tail = _sign_tail(k, n)
        pi = np.where(rows, st["pi"], 0.0)
        mean = float((pi * np.where(rows, st["p"], 0)).sum() / pi.sum())
        if (tail <= level and np.sign(mean) == np.sign(f.projection)
                and abs(mean) > tol.pooled_floor * u):
            return True, (f"confirmed on {m} fresh samples: {k} of {n} projections share its "
                          f"sign (binomial P = {tail:.2g} <= {level:.2g}), pooled p = {mean:.3g}")
    return False, (f"not confirmed on {m} fresh samples: neither the pooled test nor the sign "
                   f"test (lambda = {lam:g}) " + ("flags the opposite sign" if hit is not None
                                                  else "flags it"))


def _sign_tail(k: int, n: int) -> float:
    """P(K >= k) for K ~ Binomial(n, 1/2), exactly: the sum of C(n, i) over i >= k, over 2^n,
    rounded once (scipy's ``binom.sf(k - 1, n, 0.5)`` to within 4e-14 of it, without loading
    ``scipy.stats``: 0.4-0.5 CPU s of a process's first confirmation).

    >>> _sign_tail(3, 3), _sign_tail(2, 3), _sign_tail(0, 3), _sign_tail(4, 3)
    (0.125, 0.5, 1.0, 0.0)
    """
    k = max(k, 0)
    if k > n:
        return 0.0
    term, total = math.comb(n, k), 0
    for i in range(k, n + 1):  # C(n, i + 1) = C(n, i) (n - i) / (i + 1), exact in integers
        total += term
        term = term * (n - i) // (i + 1)
    return float(Fraction(total, 1 << n))


def _at_kink(comp: Comparison, a: int, b: int) -> np.ndarray:
    """Entries of columns a..b-1 on (or within rounding of) a kink whose sides differ: their
    exact value is one choice among the subgradients (sympy's H(0) = 1/2), so their error says
    nothing about a scale; the kink test decided them, as in the run itself (the block test
    leaves them out: ``symgrad.compare.blocks.systematic``)."""
    pos = comp.kink_position
    if pos is None or np.ndim(pos) != 2:
        return np.zeros(comp.status[:, a:b].shape, bool)
    return np.isfinite(pos[:, a:b])


def _columns_of(comp: Comparison, a: int, b: int):
    """(exact, signed error, allowance) of a comparison's columns a..b-1."""
    lo = comp.exact_lo[:, a:b] if comp.exact_lo is not None else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        err = (comp.got[:, a:b] - comp.expected[:, a:b]) - lo
    allowed = (comp.allowed_abs[:, a:b] if comp.allowed_abs is not None
               else np.full(err.shape, np.inf))
    return comp.expected[:, a:b], err, allowed


def _confirm_entries(name: str, comp: Comparison, blocks, status: np.ndarray,
                     left: np.ndarray,
                     tol: Tolerance, exp: Experiments, fresh: Callable, notes: list,
                     evidence: list, rerun64: Callable) -> None:
    """Entry suspicions, block by block (module doc, a and b): MISMATCH where reproduced,
    INCONCLUSIVE with a note elsewhere. ``status`` is updated in place."""
    blocks = [("the loss value", 0, 1), *blocks]
    rows = np.flatnonzero(left.any(axis=1))
    got = rerun64(rows) if comp.dtype != "float64" else None
    for block, a, b in blocks:
        here = left[:, a:b]
        if not here.any():
            continue
        if got is not None:  # (a) the same sign and at least half the error in float64
            err = exp.columns(name, a, b)[1][rows]
            err64 = got[1][:, a:b]
            with np.errstate(invalid="ignore"):
                same = (np.sign(err64) == np.sign(err)) & (np.abs(err64) >= np.abs(err) / 2)
            hit = here[rows] & same
            if hit.any():
                sub = status[rows, a:b]
                sub[hit] = MISMATCH
                status[rows, a:b] = sub
                evidence.append(f"{name}: {int(hit.sum())} entr(y/ies) of {block} beyond the "
                                "fast bound: confirmed, the float64 re-run reproduces the error")
                here = status[:, a:b] == SUSPECT
                if not here.any():
                    continue
        comps, m, why = fresh()
        if comps is not None and name in comps:  # (b) beyond the fast bound again?
            fc = comps[name]
            _, ferr, fallow = _columns_of(fc, a, b)
            with np.errstate(invalid="ignore"):  # at a kink: the kink test's status decides
                beyond = (np.abs(ferr) > fallow) & ~_at_kink(fc, a, b)
                again = beyond | np.isin(fc.status[:, a:b], (MISMATCH, SUSPECT))
            if again.any():
                status[:, a:b][here] = MISMATCH
                evidence.append(f"{name}: {int(here.sum())} entr(y/ies) of {block} beyond the "
                                f"fast bound: confirmed on {m} fresh samples "
                                f"({int(again.sum())} entries beyond it again)")
                continue
            why = f"not beyond the fast bound on {m} fresh samples"
        status[:, a:b][here] = INCONCLUSIVE
        notes.append(f"{name}: {int(here.sum())} entr(y/ies) of {block} beyond the fast bound, "
                     f"not confirmed ({why or 'the backend cannot be re-run'}): inconclusive")

