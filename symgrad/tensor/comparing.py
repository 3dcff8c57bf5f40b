"""Comparing a tensor model's backends with the oracle at GPT-2's scale: the one comparer
(``symgrad.compare``) over column chunks, kept compactly; the block and pooled tests one block
at a time; the worst entries of each status as ``Failure`` records, without a full sort.

>>> import numpy as np
>>> from symgrad.compare import Tolerance
>>> hi = np.array([[1.0, 2.0]])
>>> c = compare_compact(hi, 0 * hi, hi, np.ones_like(hi), backend="b", dtype="float64",
...                     tol=Tolerance())
>>> c.status.tolist()
[[0, 0]]
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..compare.blocks import Workspace
from ..compare import (STATUS_NAMES, Comparison, allowance, compare, pooled_resolution,
                       systematic_blocks)
from ..config import LARGE_MODEL_ENTRIES
from ..compare.fused import compare_chunk
from ..figure_scan import EXCUSED_TABLE, ChunkFigures, Scan, entry_measures, excused_of
from ..order_stats import ChunkMedian
from ..findings import entry_note, shown_value
from ..parallel import each
from ..result import Failure
from .spill import release
from .streaming_figures import EntryFigures, fit

CHUNK = 1 << 20  # entries compared at once (each chunk: ~20 float64 temporaries, 0.2 GB)



# From how many entries (samples x parameters) the block tests run compiled (``compare.blockpass``,
# the same bits as numpy's passes): below it numba's start in a fresh process (~0.8 CPU s) costs
# more than the passes it saves, and a small model's first verify need not pay it.
COMPILED_FROM = 1 << 18

def badness(comp: Comparison, at: slice | np.ndarray = slice(None)) -> np.ndarray:
    """error / allowance of the flat entries ``at`` (a slice or indices; default all), float32,
    inf where the backend is not finite, -1 where undefined (the streaming compare reads it a
    chunk at a time: no whole-size array)."""
    ulps = _flat(comp.ulps)[at]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        bad = (ulps / _flat(comp.allowed_ulps)[at]).astype(np.float32, copy=False)
    bad[~np.isfinite(ulps)] = np.inf
    bad[np.isnan(bad)] = -1.0
    return bad


def _flat(a):
    """The flat entries of an array, or of a deferred figure (``streaming_figures.Figure``)."""
    return (a if hasattr(a, "reshape") else np.asarray(a)).reshape(-1)


def top(bad: np.ndarray, mask: np.ndarray | None, limit: int) -> np.ndarray:
    """Flat indices of the ``limit`` entries of ``mask`` (default all) with the largest
    badness, worst first, ties in index order (no sort of GPT-2's 163M entries; over all
    entries, no index array of them either: the ``limit``-th largest value by a partition of
    the values, then the entries above it and the first ones equal to it)."""
    flat = bad.reshape(-1)
    if mask is not None:
        where = np.flatnonzero(mask)
        if where.size > limit:
            where = where[np.argpartition(-flat[where], limit - 1)[:limit]]
    elif flat.size <= limit:
        where = np.arange(flat.size)
    else:
        kth = flat.size - limit
        threshold = np.partition(flat, kth)[kth]
        where = np.flatnonzero(flat > threshold)  # fewer than limit
        ties, step = [], max(CHUNK, limit)
        for a in range(0, flat.size, step):
            if sum(t.size for t in ties) >= limit - where.size:
                break
            ties.append(a + np.flatnonzero(flat[a:a + step] == threshold))
        where = np.concatenate([where, *ties])[:limit]
        where.sort()
    return where[np.argsort(-flat[where], kind="stable")]


def failures(name: str, comp: Comparison, flat: np.ndarray, outputs, values,
             subset) -> list[Failure]:
    """One ``Failure`` per flat index: backend, status, output name, sample, point, expected
    vs got, error and allowance in ULPs (as ``symgrad.verify`` words them)."""
    found = []
    width = comp.status.shape[1]
    for f in flat:
        i, k = divmod(int(f), width)
        s = int(subset[i])
        point = {b: shown_value(v[s]) for b, v in values.items()}
        status = int(comp.status[i, k])
        note = entry_note(comp, i, k)
        found.append(Failure(name, STATUS_NAMES[status], outputs[k], s, point,
                             float(comp.expected[i, k]), float(comp.got[i, k]),
                             float(comp.ulps[i, k]), float(comp.allowed_ulps[i, k]), note,
                             column=int(k), allowed_abs=float(
                                 comp.allowed_abs[i, k] if comp.allowed_abs is not None
                                 else np.nan)))
    return found


# a large model's (``config.LARGE_MODEL_ENTRIES``): its ULPs and allowances kept in float32
COMPACT_FROM = LARGE_MODEL_ENTRIES


def compare_compact(hi, lo, got, E, *, backend: str, dtype: str, tol,
                    rigorous=None, allowed_ulps: np.ndarray | None = None,
                    deferred: bool = False, scan: Scan | None = None) -> Comparison:
    """``symgrad.compare.compare`` over column chunks, kept compactly: ULPs and allowances in
    float32 beyond ``COMPACT_FROM`` entries (capped at float32's largest finite number),
    ``got`` and ``expected`` the arrays passed in (no copies), no kink positions (the rows that
    reach a kink are compared again with their sides: ``symgrad.tensor.sides.rejudge``). GPT-2 at full size: 2.8 GB per backend instead of 9. ``rigorous``:
    a ``symgrad.rigorous.Enclosure`` (None above 200k parameters: no proof, a mismatch beyond
    the fast allowance stays one); its radii, errors and allowances are kept where computed.
    Without one no error array is kept: the comparison holds ``figures`` (``EntryFigures``
    of ``hi``, ``lo``, ``got`` and ``E``), from which the reports recompute each entry's error
    and allowance as the compare made them (``symgrad.measures``).

    ``allowed_ulps``: an earlier comparison's allowance for the same ``hi``, ``E`` and
    ``dtype`` (the allowance depends on nothing else, not on the backend: ``shared_allowance``),
    kept as this one's instead of a second equal array (GPT-2's torch and torch_fn in one
    dtype share 0.65 GB).

    ``deferred`` (without ``rigorous``): the ULPs and allowances are not kept but recomputed
    where read (``symgrad.tensor.streaming_figures``: the same numbers, from ``hi``, ``lo``,
    ``got`` and ``E``, which the comparison then holds): only the statuses are new arrays
    (GPT-2: 0.15 GB instead of 1.45 GB per backend); ``allowed_ulps`` is not read.

    ``scan`` (with ``deferred``): the summary's pass (``measures.summary_scan``), fed each
    chunk's figures from the errors and allowances the compare has just made, in its chunks
    (hi, lo, got and E read once for the compare and the summary), kept on the figures for
    the summary to finish (``ResultMeasures``)."""
    n, width = hi.shape
    small = n * width <= COMPACT_FROM
    kind = np.float64 if small else np.float32
    if deferred and rigorous is not None:
        raise ValueError("compare_compact: deferred figures need rigorous=None (the radii of "
                         "an enclosure are kept per entry)")
    got = np.asarray(got, dtype=np.float64)
    # no error array kept (no enclosure): the figures it is recomputed from where read
    figures = EntryFigures(hi, lo, got, E, dtype, tol, kind) if rigorous is None else None
    ulps = figures.ulps if deferred else np.empty((n, width), kind)
    allowed = (figures.allowed if deferred else
               np.empty((n, width), kind) if allowed_ulps is None else allowed_ulps)
    status = np.empty((n, width), np.int8)
    radius = np.full((n, width), np.nan) if rigorous is not None else None
    error = np.empty((n, width)) if rigorous is not None else None
    allowed_abs = np.empty((n, width)) if rigorous is not None else None
    step = max(1, CHUNK // max(n, 1))
    scan = scan if deferred else None
    parts = ([p for _, p in scan.parts] if scan is not None else
             [slice(a, a + step) for a in range(0, width, step)])

    def chunk(i: int) -> None:  # the chunks on ``symgrad.parallel``'s threads: the same cuts,
        #  each writing its own columns
        part = parts[i]
        a = part.start
        if scan is not None and fused(i, part):
            release()
            return
        c = compare(hi[:, part], lo[:, part], got[:, part], E[:, part], backend=backend,
                    dtype=dtype, tol=tol, value_column=a == 0,  # the loss value: column 0
                    rigorous=None if rigorous is None else rigorous.columns(part))
        if not deferred:
            ulps[:, part] = fit(c.ulps, kind)
        if allowed_ulps is None and not deferred:
            allowed[:, part] = fit(c.allowed_ulps, kind)
        status[:, part] = c.status
        if rigorous is not None:
            radius[:, part], error[:, part] = c.rigorous, c.error
            allowed_abs[:, part] = c.allowed_abs
        if scan is not None:  # the summary's figures of these entries, from these errors
            excused = excused_of(c.status)  # (one table pass for the measures and the scan)
            scan.add(i, ChunkFigures(entry_measures(
                c.expected, c.got, c.error, c.allowed_abs, c.ulps, c.status, dtype, tol,
                excused=excused), fit(c.ulps, kind), fit(c.allowed_ulps, kind)), c.status,
                excused=excused)
        release()  # spilled hi, lo, E (``tensor.spill``): the chunk's pages out of the RSS
    def fused(i: int, part: slice) -> bool:  # the chunk in one compiled loop (compare.fused)
        kept = None
        if scan.medians:
            at = scan.kept_at(i)
            kept = scan.kept[at:at + n * (part.stop - part.start)]
        c = compare_chunk(hi[:, part], lo[:, part], got[:, part], E[:, part], status[:, part],
                          dtype=dtype, tol=tol, value_column=part.start == 0, kind=kind,
                          excused=EXCUSED_TABLE, floor=scan.floor, width=width,
                          first=part.start, kept=kept, ranked=scan.tiled)
        if c is None:
            return False  # (numpy's path: every number of it made again)
        excused = (np.flatnonzero(excused_of(status[:, part])) if c.excused
                   else np.zeros(0, np.int64))
        high = c.high if kept is None or c.high is not None else ChunkMedian.counted(kept)
        scan.take(i, c.stats, excused, high, c.counts,
                  c.found if c.found is not None and c.found[0].size else None, ranked=True)
        return True
    starts = range(len(parts))
    if rigorous is None:
        each(chunk, starts)
    else:  # an enclosure computes a sample's radii once, for the first chunk asking: in line
        for i in starts:
            chunk(i)
    if scan is not None:
        figures.scan = scan
    return Comparison(backend, dtype, ulps, allowed, status, got, hi,
                      np.broadcast_to(np.float64(np.nan), (n, width)), allowed_abs=allowed_abs,
                      error=error, rigorous=radius, figures=figures)


def shared_allowance(key, earlier: dict) -> np.ndarray | None:
    """The allowance array (``Comparison.allowed_ulps``) of an earlier comparison made with the
    same bound and dtype, for ``compare_compact(allowed_ulps=...)``; None if there is none
    still whole (a reduced comparison keeps only its value column).

    Arguments:
        key: what the allowance depends on besides the oracle's values: (which bound, dtype).
        earlier: backend -> (its key, its comparison), the comparisons made so far.
    Returns:
        That array, or None.

    >>> from symgrad.compare import Tolerance
    >>> c = compare_compact(np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)),
    ...                     np.ones((1, 2)), backend="b", dtype="float64", tol=Tolerance())
    >>> shared_allowance((False, "float64"), {"b": ((False, "float64"), c)}) is c.allowed_ulps
    True
    """
    for k, comp in earlier.values():
        if k == key and not comp.reduced and isinstance(comp.allowed_ulps, np.ndarray):
            return comp.allowed_ulps  # (a deferred one is recomputed, not shared)
    return None


def kept_whole(comp: Comparison) -> Comparison:
    """``comp`` with deferred ULPs and allowances (``compare_compact(deferred=True)``) formed
    as whole arrays: for a comparison kept beyond its compare (a suspicion to confirm reads it
    as any other); ``comp`` itself when they are arrays already.

    >>> from symgrad.compare import Tolerance
    >>> c = compare_compact(np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)),
    ...                     np.ones((1, 2)), backend="b", dtype="float64", tol=Tolerance(),
    ...                     deferred=True)
    >>> type(c.ulps).__name__, type(kept_whole(c).ulps).__name__
    ('Figure', 'ndarray')
    """
    if isinstance(comp.ulps, np.ndarray) and isinstance(comp.allowed_ulps, np.ndarray):
        return comp
    return replace(comp, ulps=np.asarray(comp.ulps), allowed_ulps=np.asarray(comp.allowed_ulps))


def block_tests(comp: Comparison, hi, lo, E, blocks, tol, *, rerun: bool = False) -> Comparison:
    """The per-sample block test and the pooled test (``symgrad.compare.systematic_blocks``)
    on each parameter block, reading one block's columns at a time: a x1.5 or sign-flipped
    block is caught even where its entries are inconclusive one by one. ``rerun``: a float64
    re-run of the same code decides its suspicions (``symgrad.compare.blockflags``).

    Each chunk's error and allowance are formed in two buffers reused from chunk to chunk
    (every reader of ``columns`` is done with them before it asks for the next chunk): GPT-2's
    4M-entry chunks, 32 MiB each, were fresh mappings whose pages the kernel zeroed again
    three times per block (a third of the block tests' CPU was system time)."""
    ws = Workspace()

    def columns(a: int, b: int):
        release()  # the previous chunk's pages of spilled hi, lo, E (``tensor.spill``)
        exact = hi[:, a:b]
        with np.errstate(invalid="ignore", over="ignore"):  # (got - hi) - lo, in place
            err = np.subtract(comp.got[:, a:b], exact, out=ws.take("err", exact.shape))
            err -= lo[:, a:b]

        def allowed():  # formed only by the passes that read it (a large block's sums)
            with np.errstate(invalid="ignore", over="ignore"):  # NaN -> inf
                out = allowance(E[:, a:b], comp.dtype, tol, out=ws.take("al", exact.shape))
            np.putmask(out, np.isnan(out), np.inf)
            return out
        return exact, err, allowed
    kinks = comp.kink_position  # decided by the kink test, not a scale; none (GPT-2: a
    none = kinks.strides == (0, 0) and np.isnan(kinks.flat[0])  # broadcast NaN): no mask formed
    exclude = None if none or not np.isfinite(kinks).any() else np.isfinite(kinks)
    def arrays(a: int, b: int):  # (the large blocks' compiled passes: ``compare.blockpass``)
        release()
        return tuple(np.asarray(x[:, a:b]) for x in (hi, lo, comp.got, E))
    compiled = comp.status.size >= COMPILED_FROM and all(
        np.asarray(x[:, :0]).dtype == np.float64 for x in (hi, comp.got)) and all(
        np.asarray(x[:, :0]).dtype in (np.float32, np.float64) for x in (lo, E))
    status, found = systematic_blocks(columns, comp.status, blocks, comp.dtype, tol,
                                      exclude=exclude, rerun=rerun,
                                      arrays=arrays if compiled else None)
    return replace(comp, status=status, systematic=tuple(found),
                   resolution=pooled_resolution(len(status), comp.dtype, tol))
