"""A large model's suspicions, confirmed by a second, streamed run on ONE fresh sample.

Above ``config.CERTIFY_UP_TO`` parameters (GPT-2) no rigorous enclosure is computed, so an entry
beyond the *fast* allowance (probabilistic by default: min(worst case, 8 sigma)) proves nothing
by itself, and ``symgrad.confirm``'s fresh samples (32, drawn as whole arrays) are 32x the
oracle's budget there (1 sample). The tensor pipeline (``symgrad.tensor.verify``) lends this
module its run instead (``BigConfirm``):

1. ``mark``: after the block tests, each entry beyond the fast allowance (MISMATCH) becomes
   SUSPECT; a float64 block suspicion stays SUSPECT. Only the suspect blocks' names, counts and a
   bit mask of the marked entries are kept (``Suspect``): the comparison is summarised and
   reduced as any other (no ``kept_whole``: GPT-2's +1.44 GiB), its figures also formed as if
   the block were confirmed, and its worst suspect entries listed (``collect``).
2. ``confirm``: the same pipeline on one fresh sample (``SeedSequence([seed, FRESH_SEED])``;
   ``fresh(1)`` where ``at=`` fixed the points), with the confirmation switched off and only the
   suspect backends: its own oracle, bound, backends and block tests, streamed block by block as
   the main run is.
3. The rule, per (backend, block): the entry suspicion is **confirmed** when the fresh run has
   at least ``AGAIN`` (1) entries of that block beyond the fast allowance again; a block
   suspicion when the fresh run's block test flags the same block with the same sign. Why k = 1:
   under the allowance's own model (independent, mean-zero roundings) an entry exceeds
   lam = 8 sigma with probability <= 2 e^(-lam^2/2) ~ 2.5e-14, so a correct block of B entries
   shows one by chance with probability <= B x 2.5e-14 (GPT-2's largest block, 38.6M entries:
   <= 1e-6); requiring more would lose bugs that move few entries past their allowance (the
   1e-10 plant in GPT-2's attention moves ~3 %), and would not help where that model fails (a
   rounding it underestimates recurs on every sample, whatever k). Confirmed: MISMATCH (block:
   SYSTEMATIC), the finding says "confirmed on a fresh sample (seed ...)" - a reproduction, not
   a rigorous bound. Not recurring, or no fresh sample (``at=`` without ``fresh=``):
   INCONCLUSIVE, with a one-line reason (``Comparison.unconfirmed``), never a failure.

>>> AGAIN, FRESH_SEED
(1, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..compare import (INCONCLUSIVE, MISMATCH, STATUS_NAMES, SUSPECT, SYSTEMATIC, BlockFinding,
                       Comparison)
from ..config import BACKENDS, CERTIFY_UP_TO, VerifyConfig
from ..confirm import needs_confirmation
from ..figure_scan import fold, merged
from ..findings import UNENCLOSED, block_note
from ..measures import MEASURE_CHUNK, measures
from ..result import Failure
from .comparing import CHUNK, badness, failures as entry_failures

AGAIN = 1  # entries of a suspect block beyond the fast allowance again on the fresh sample
FRESH_SEED = 2  # the fresh sample's SeedSequence([seed, 2]) (``symgrad.confirm``'s draws use 1)
VALUE = "the loss value"  # column 0's suspicion, named as a block


@dataclass
class Suspect:
    """One suspect block of one backend: what the confirmation needs, not the arrays."""

    block: str
    columns: tuple[int, int]
    entries: int  # entries beyond the fast allowance (marked SUSPECT)
    mask: np.ndarray | None  # np.packbits of those entries over the block's (N, b - a) columns
    flagged: list[BlockFinding]  # the block test's suspicions on it (float64)
    candidates: list[Failure] = field(default_factory=list)  # its worst suspect entries
    stats: dict | None = None  # its figures as if confirmed (a reduced comparison's memo)


class BigConfirm:
    """The big path's state across one run (module doc). ``mode``: "big" (above
    ``CERTIFY_UP_TO``), "small" (``symgrad.confirm`` alone) or "off" (a confirming run itself:
    nothing is confirmed, a suspicion stays as it is)."""

    def __init__(self, mode: str, blocks: list[tuple[str, int, int]], subset: np.ndarray):
        self.mode, self.blocks, self.subset = mode, blocks, subset  # subset: each row's sample
        self.suspects: dict[str, dict[str, Suspect]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.suspects

    def waits(self, name: str, comp: Comparison) -> bool:
        """Whether ``comp`` waits, kept whole, for ``symgrad.confirm`` (not this path's)."""
        return self.mode != "off" and name not in self and needs_confirmation(comp)

    def mark(self, name: str, comp: Comparison) -> Comparison:
        """Step 1 (module doc): the entries beyond the fast allowance marked SUSPECT in place,
        the suspect blocks recorded; ``comp`` as it is when this path does not take it (not
        big; or a narrower dtype's block suspicions, which ``symgrad.confirm``'s float64 re-run
        decides first - this is asked again once it has)."""
        if self.mode != "big" or (comp.dtype != "float64" and any(
                f.confirmed is None for f in comp.systematic)):
            return comp
        found = {}
        for block, a, b in [(VALUE, 0, 1), *self.blocks]:
            sub = comp.status[:, a:b]
            hit = sub == MISMATCH
            k = int(np.count_nonzero(hit))
            flagged = [f for f in comp.systematic if f.columns == (a, b) and f.confirmed is None]
            if k or flagged:
                sub[hit] = SUSPECT
                found[block] = Suspect(block, (a, b), k, np.packbits(hit) if k else None, flagged)
        if found:
            self.suspects[name] = found
        return comp

    def collect(self, name: str, comp: Comparison, cfg: VerifyConfig, outputs, values: dict,
                subset: np.ndarray, *, reduced: bool) -> list[Failure]:
        """While ``comp`` is whole: each suspect block's worst suspect entries as findings
        (returned, for their figures to be kept) and, where it will be ``reduced``, its figures
        as if confirmed (its suspect entries decided)."""
        out = []
        for s in self.suspects.get(name, {}).values():
            s.candidates = _block_worst(name, comp, s.columns, cfg.max_failures, outputs,
                                        values, subset)
            out += s.candidates
            if reduced:
                s.stats = fold(_decided(comp, cfg, part) for part in _chunks(comp, s.columns))
        return out

    def confirm(self, comparisons: dict, found: dict, memo: dict, run: Callable,
                sample: dict | None, seed: str, cfg: VerifyConfig) -> None:
        """Steps 2 and 3 (module doc), in place: ``run(at, cfg, backends)`` is the pipeline with
        the confirmation off; ``sample`` the fresh sample (None: none can be drawn); ``seed``
        its origin in words; ``found`` each backend's finding lists, ``memo`` the kept figures."""
        names = tuple(self.suspects)
        fresh = None
        if sample is not None:
            own = tuple(n for n in names if n in BACKENDS) or ("torch",)
            fresh = run(sample, replace(cfg, backends=own, max_failures=1), names).comparisons
        for name in names:
            comparisons[name] = self._apply(name, comparisons[name],
                                            None if fresh is None else fresh.get(name),
                                            found[name], memo, seed, cfg.max_failures)

    def _apply(self, name: str, comp: Comparison, fc: Comparison | None, lists: dict,
               memo: dict, seed: str, limit: int) -> Comparison:
        """One backend's suspect blocks decided by its fresh comparison ``fc``."""
        notes, evidence = list(comp.unconfirmed), list(comp.evidence)
        decided = {id(f): f for f in comp.systematic}
        words: dict[str, str] = {}  # block -> the note of its entries
        for s in self.suspects[name].values():
            a, b = s.columns
            sub, confirmed = comp.status[:, a:b], False
            again = None if fc is None else int(np.count_nonzero(fc.status[:, a:b] == MISMATCH))
            if s.mask is not None:
                hit = np.unpackbits(s.mask, count=sub.size).reshape(sub.shape).astype(bool)
                yes = again is not None and again >= AGAIN
                sub[hit] = MISMATCH if yes else INCONCLUSIVE
                confirmed |= yes
                what = f"{s.entries:,} entr(y/ies) of {s.block} beyond the fast allowance"
                if yes:
                    evidence.append(f"{name}: {what}: confirmed on a fresh sample ({seed}): "
                                    f"{again:,} beyond it again")
                    words[s.block] = (
                        f"{UNENCLOSED} (above {CERTIFY_UP_TO:,} parameters): beyond the fast "
                        f"allowance here, and confirmed on a fresh sample ({seed}): {again:,} "
                        f"entr(y/ies) of {s.block} beyond it again - a reproduction, not a "
                        "rigorous bound")
                else:
                    why = ("no fresh sample to confirm on (the samples were given by at=)"
                           if fc is None else
                           f"none beyond it again on a fresh sample ({seed})")
                    words[s.block] = f"{what}, not confirmed: {why} ({UNENCLOSED}): inconclusive"
                    notes.append(f"{name}: {words[s.block]}")
            for f in s.flagged:
                g = _again(f, fc)
                text = ("not confirmed: no fresh sample to confirm on (the samples were given "
                        "by at=)" if fc is None else
                        f"confirmed on a fresh sample ({seed}): the block test flags it again, "
                        f"p = {g.projection:.3g} (threshold {g.threshold:.3g})" if g else
                        f"not confirmed on a fresh sample ({seed}): the block test does not "
                        "flag it again with the same sign")
                new = replace(f, confirmed=g is not None, evidence=text)
                decided[id(f)] = new
                confirmed |= g is not None
                rows = sub[f.rows]
                rows[rows == SUSPECT] = SYSTEMATIC if g is not None else INCONCLUSIVE
                sub[f.rows] = rows
                if g is None:
                    notes.append(f"{name}: {new.describe()}")
            if confirmed and s.stats is not None and ("stats", name, a, b) in memo:
                memo[("stats", name, a, b)] = s.stats  # its suspect entries now decided
        comp = replace(comp, systematic=tuple(decided[id(f)] for f in comp.systematic),
                       unconfirmed=tuple(notes), evidence=tuple(evidence))
        _whole_stats(memo, name, comp.status.shape[1], self.blocks)
        self._relist(name, comp, lists, words, limit)
        return comp

    def _relist(self, name: str, comp: Comparison, lists: dict, words: dict, limit: int) -> None:
        """The finding lists with the suspect blocks' entries as decided: each candidate's
        status read back, its note said; failures and the undecided worst first again."""
        spans = {s.columns: s.block for s in self.suspects[name].values()}

        def redo(f: Failure) -> Failure:
            block = next((n for (a, b), n in spans.items() if a <= f.column < b), None)
            if block is None:
                return f
            row = int(np.searchsorted(self.subset, f.sample))
            kind = STATUS_NAMES[int(comp.status[row, f.column])]
            note = (block_note(comp, row, f.column) if kind == "systematic"
                    else words.get(block, f.note) if kind in ("mismatch", "inconclusive")
                    else f.note)
            return replace(f, kind=kind, note=note)
        news = [redo(f) for s in self.suspects[name].values() for f in s.candidates]
        lists["worst"] = [redo(f) for f in lists["worst"]]
        lists["failures"] = _worst_first(lists["failures"] + [
            f for f in news if f.kind in ("mismatch", "systematic")], limit)
        lists["undecided"] = _worst_first(lists["undecided"] + [
            f for f in news if f.kind == "inconclusive"], 3)


def fresh_sample(model, cfg: VerifyConfig, *, at: dict | None,
                 fresh: Callable | None) -> tuple[dict | None, str]:
    """The one fresh sample (an ``at=`` dict) and its origin in words: ``fresh(1)`` where
    given, none where ``at=`` fixed the points without it, else drawn from the model's domains
    with ``SeedSequence([seed, FRESH_SEED])``."""
    if fresh is not None:
        return fresh(1), "the sample fresh(1) gave"
    if at is not None:
        return None, "none"
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, FRESH_SEED]))
    return model.draw(1, rng, cfg.dtype), f"seed SeedSequence([{cfg.seed}, {FRESH_SEED}])"


def _again(f: BlockFinding, fc: Comparison | None) -> BlockFinding | None:
    """The fresh run's block finding on ``f``'s block with ``f``'s sign, if any."""
    if fc is None:
        return None
    return next((g for g in fc.systematic if g.columns == f.columns
                 and np.sign(g.projection) == np.sign(f.projection)), None)


def _worst_first(found: list[Failure], limit: int) -> list[Failure]:
    """Up to ``limit`` findings by error / allowance, worst first (``findings_of``'s order)."""
    def bad(f: Failure) -> float:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.float64(f.ulps) / np.float64(f.allowed_ulps)
        return float("inf") if not np.isfinite(f.ulps) else -1.0 if np.isnan(r) else float(r)
    seen, out = set(), []
    for f in sorted(found, key=bad, reverse=True):
        if (f.sample, f.column) not in seen:
            seen.add((f.sample, f.column))
            out.append(f)
    return out[:limit]


def _chunks(comp: Comparison, columns: tuple[int, int]):
    """Column slices of ``columns`` of at most ``MEASURE_CHUNK`` entries each."""
    a, b = columns
    step = max(1, MEASURE_CHUNK // max(len(comp.status), 1))
    return [slice(c, min(b, c + step)) for c in range(a, b, step)]


def _decided(comp: Comparison, cfg: VerifyConfig, part: slice):
    """The figures of columns ``part`` with their SUSPECT entries counted as decided."""
    m = measures(comp, cfg, part)
    return replace(m, comparable=m.comparable | (
        (comp.status[:, part] == SUSPECT) & np.isfinite(m.exact)))


def _whole_stats(memo: dict, name: str, width: int, blocks) -> None:
    """The whole's memoised figures again from its row groups' (``figure_scan.merged``)."""
    groups = [(0, 1), *[(a, b) for _, a, b in blocks]]
    parts = [memo.get(("stats", name, a, b)) for a, b in groups]
    if ("stats", name, 0, width) in memo and all(p is not None for p in parts):
        whole = None
        for p in parts:
            whole = merged(whole, p)
        memo[("stats", name, 0, width)] = whole


def _block_worst(name: str, comp: Comparison, columns: tuple[int, int], limit: int, outputs,
                 values: dict, subset: np.ndarray) -> list[Failure]:
    """The ``limit`` SUSPECT entries of ``columns`` with the largest badness, worst first, as
    findings; read ``CHUNK`` entries at a time (no block-size index array)."""
    a, b = columns
    n, width = comp.status.shape
    step = max(1, CHUNK // max(n, 1))
    where, bads = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for c in range(a, b, step):
        rows, cols = np.nonzero(comp.status[:, c:min(b, c + step)] == SUSPECT)
        flat = rows.astype(np.int64) * width + c + cols
        if flat.size:
            bad = badness(comp, flat)
            keep = np.argsort(-bad, kind="stable")[:limit]
            where.append(flat[keep])
            bads.append(bad[keep])
    flat, bad = np.concatenate(where), np.concatenate(bads)
    pick = np.lexsort((flat, -bad))[:limit]
    return entry_failures(name, comp, flat[pick], outputs, values, subset)
