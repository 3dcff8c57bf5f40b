"""The block and pooled tests (``symgrad.compare``'s module docstring, tests 2 and 3): a
suspected systematic error on a parameter block, per sample and pooled over samples, raised as
a suspicion that ``symgrad.confirm`` then confirms or refutes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from .blockflags import block_flags
from .blockpass import projection
from .entries import INCONCLUSIVE, LOSS, MISMATCH, OK, SUSPECT, Comparison, compare
from .tolerance import Tolerance, dtype_info


@dataclass(frozen=True)
class BlockFinding:
    """A suspected systematic error on one parameter block: got ~ (1 + p) * exact.

    Raised by the block or pooled test as a suspicion; ``symgrad.confirm`` then sets
    ``confirmed`` (True: an independent experiment reproduced it, the entries fail; False:
    refuted or not testable) and ``evidence`` (which experiment, with its numbers)."""

    block: str  # the parameter block's name
    sample: int  # row in the comparison (-1: pooled over samples)
    projection: float  # p = <e, g> / <g, g>
    sigma: float  # its rounding-noise scale
    threshold: float  # what |p| had to exceed
    columns: tuple[int, int] = (0, 0)  # the block's columns in the comparison
    confirmed: bool | None = None  # None: not yet tested
    evidence: str = ""  # the confirming (or refuting) experiment, in words
    prior: np.ndarray | None = field(default=None, compare=False, repr=False)  # the block's
    #   statuses at its rows before the suspicion marked them (restored if it is refuted)
    rerun_only: bool = False  # raised by the lower floors a float64 re-run decides alone

    @property
    def rows(self) -> np.ndarray | slice:
        return slice(None) if self.sample < 0 else slice(self.sample, self.sample + 1)

    def describe(self) -> str:
        where = "over all samples" if self.sample < 0 else f"at sample row {self.sample}"
        what = "systematic error" if self.confirmed else "suspected systematic error"
        text = (f"{what} on {self.block} {where}: got = (1 {'+' if self.projection >= 0 else '-'} "
                f"{abs(self.projection):.3g}) x exact along the gradient (allowed "
                f"{self.threshold:.3g}, noise {self.sigma:.3g})")
        return f"{text}; {self.evidence}" if self.evidence else text


def _member(status: np.ndarray, codes: tuple[int, ...]) -> np.ndarray:
    """``np.isin(status, codes)`` for int8 status codes, by a 256-entry lookup table."""
    table = np.zeros(256, bool)
    table[[c % 256 for c in codes]] = True
    return table[np.asarray(status, np.int8).view(np.uint8)]


def _where(use: np.ndarray, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``np.where(use, x, 0.0)``, written into ``out`` when given (the same numbers)."""
    if out is None:
        return np.where(use, x, 0.0)
    np.copyto(out, 0.0)
    np.copyto(out, x, where=use)
    return out


def _masked(use: np.ndarray, x: np.ndarray, scale: np.ndarray,
            out: np.ndarray | None = None) -> np.ndarray:
    """``np.where(use, x, 0) / scale`` with one temporary (the division in place), in ``out``
    when given (a ``Workspace`` buffer: no fresh array to fault in)."""
    out = _where(use, x, out)
    out /= scale
    return out


class Workspace:
    """Reused float64 buffers for a block test's per-chunk arrays, each a contiguous (n, w) view
    of one flat buffer of its name, grown when a larger chunk asks (fresh 32 MiB arrays per
    chunk and pass: every page zeroed again by the kernel, the compare's system time)."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, int], *operands) -> np.ndarray | None:
        """A float64 array of ``shape`` for ``name``, its values left over; None where an
        operand is not float64 (the caller forms a new array in its type, as before)."""
        if any(np.asarray(x).dtype != np.float64 for x in operands):
            return None
        size = shape[0] * shape[1]
        if name not in self._buffers or self._buffers[name].size < size:
            self._buffers[name] = np.empty(size, np.float64)
        return self._buffers[name][:size].reshape(shape)


def _scaled_allowance(use: np.ndarray, allowed, scale: np.ndarray, ws: Workspace):
    """``_masked(use, allowance, scale)`` of a ``columns`` reader's allowance: an array (into
    ``ws``'s buffer), or a callable forming a new one (``tensor.comparing.block_tests``: only
    the sums' pass reads it), masked and scaled in place."""
    if not callable(allowed):
        return _masked(use, allowed, scale, ws.take("al", np.shape(allowed), allowed))
    al = allowed()
    np.copyto(al, 0.0, where=~use)  # np.where(use, al, 0.0), on its own array
    al /= scale
    return al


def _row_scale(exact: np.ndarray, use: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
    """Per row, max |exact| over the usable entries (0 where none): max(max g, -min g) of
    g = where(use, exact, 0), the same number as max(where(use, |exact|, 0)) without its
    absolute-value copy (g in ``ws``'s buffer when given)."""
    g = _where(use, exact, (ws or Workspace()).take("g", np.shape(exact), exact))
    return np.maximum(g.max(axis=1), -g.min(axis=1))


def _projection(exact: np.ndarray, err: np.ndarray, allowed: np.ndarray,
                use: np.ndarray, ws: Workspace | None = None) -> dict:
    """Per sample: the projection p of the error on the exact gradient, its noise sigma, the
    effective entries and the resolution weight pi (each per-entry product formed once, in
    ``ws``'s buffers (~4 of the block) or in place where its operand is not kept)."""
    ws = ws or Workspace()
    scale = _row_scale(exact, use, ws)[:, None]
    scale = np.where(scale > 0, scale, 1.0)  # p is scale-free; no under/overflow in squares
    shape = np.shape(exact)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        g = _masked(use, exact, scale, ws.take("g", shape, exact))  # a huge error at a tiny
        e = _masked(use, err, scale, ws.take("e", shape, err))  # scale: inf, left out
        al = _scaled_allowance(use, allowed, scale, ws)
        gg, g4, eg, aa, al_finite = _sums(g, e, al, ws.take("t", shape, g, e))
        p = eg / gg
        t = ws.take("t", shape, g, e, p)  # (r = e - p g in al's array: al is spent, e kept)
        r = al if t is not None and al.dtype == np.float64 else None
        sigma = np.sqrt(_residual(g, e, p, r, t)) / gg
        pi = np.where(al_finite, gg / aa, 0.0)
        n_eff = gg**2 / g4
    return {"p": p, "sigma": sigma, "pi": pi,
            "n_eff": n_eff, "use": use, "e": e, "g": g, "ok_rows": (gg > 0) & np.isfinite(p)}


def _sums(g: np.ndarray, e: np.ndarray, al: np.ndarray, gsq: np.ndarray | None = None) -> tuple:
    """Row sums of g^2, g^4, e g and al^2, and whether each row's al is finite (``al`` is
    overwritten; ``gsq``: a buffer of g's shape for the products, else a new one). g^4 as
    (g^2)^2: within an ULP or two of ``g**4`` (a ``pow`` call per entry, 3x the time); it
    only forms n_eff, compared with ``block_min_entries``."""
    gsq = np.multiply(g, g, out=gsq)
    gg = gsq.sum(1)
    np.multiply(gsq, gsq, out=gsq)
    g4 = gsq.sum(1)
    np.multiply(e, g, out=gsq)
    eg = gsq.sum(1)
    al_finite = np.isfinite(al).all(1)
    np.multiply(al, al, out=al)
    return gg, g4, eg, al.sum(1), al_finite


def _residual(g: np.ndarray, e: np.ndarray, p: np.ndarray, r: np.ndarray | None = None,
              t: np.ndarray | None = None) -> np.ndarray:
    """Row sums of g^2 r^2, r = e - p g formed per entry (no cancelling expansion); ``r``,
    ``t``: float64 buffers for the two products (``r`` may be ``e``: overwritten), or new."""
    pg = p[:, None] * g if t is None else np.multiply(p[:, None], g, out=t)
    r = np.subtract(e, pg, out=pg if r is None else r)
    t = g * g if t is None else np.multiply(g, g, out=t)
    t *= r
    t *= r
    return t.sum(1)


def systematic(comp: Comparison, blocks, tol: Tolerance) -> Comparison:
    """The block and pooled tests (module docstring, 2 and 3) on every parameter block.

    Arguments:
        comp: a ``Comparison`` from ``compare`` (columns: value, then parameter entries).
        blocks: ``(name, first column, last column + 1)`` per parameter block.
        tol: the tolerance settings.
    Returns:
        The comparison with entries carrying a suspected error marked SUSPECT and the findings
        (not yet confirmed: ``symgrad.confirm``) in ``comparison.systematic``.

    >>> import numpy as np
    >>> g = np.ones((1, 9)); got = g.copy(); got[0, 1:5] *= 1.5  # W x1.5, b right; resolved
    >>> c = compare(g, 0 * g, got, 3e6 * g, backend="b", dtype="float32", tol=Tolerance())
    >>> [(f.block, f.projection) for f in systematic(c, [("W", 1, 5), ("b", 5, 9)],
    ...                                                  Tolerance()).systematic]
    [('W', 0.5)]
    """
    if comp.allowed_abs is None:
        return comp
    lo = comp.exact_lo if comp.exact_lo is not None else np.zeros_like(comp.expected)

    def columns(a: int, b: int):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            err = (comp.got[:, a:b] - comp.expected[:, a:b]) - lo[:, a:b]
        return comp.expected[:, a:b], err, comp.allowed_abs[:, a:b]
    # at a kink the exact value is sympy's H(0) = 1/2 pass, not the subgradient the backend
    # chose: its error there says nothing about a scale (the kink test decided those entries)
    at_kink = np.isfinite(comp.kink_position)
    status, found = systematic_blocks(columns, comp.status, blocks, comp.dtype, tol,
                                      exclude=at_kink if at_kink.any() else None)
    return replace(comp, status=status, systematic=tuple(found),
                   resolution=pooled_resolution(len(status), comp.dtype, tol))


def pooled_resolution(samples: int, dtype: str, tol: Tolerance) -> str:
    """In words, what the run cannot resolve because the pooled test cannot fire with this
    few samples (it needs ``pooled_min_samples`` effective samples; |T| <= sqrt(n_eff)); ""
    when it can."""
    if samples >= tol.pooled_min_samples:
        return ""
    floor = tol.block_floor * dtype_info(dtype).eps / 2
    return (f"the pooled test needs >= {tol.pooled_min_samples:g} samples, this run compared "
            f"{samples}: a systematic error on a block smaller than the block test's floor "
            f"({floor:.2g} relative in {dtype}) is not resolved; use more samples")


def systematic_blocks(columns, status: np.ndarray, blocks, dtype: str, tol: Tolerance,
                      exclude: np.ndarray | None = None, *, rerun: bool = False,
                      arrays=None) -> tuple[np.ndarray, list]:
    """The block and pooled tests of ``systematic``, reading one block at a time:
    ``columns(a, b)`` returns (exact, error, allowance) for columns a..b-1, each (N, b - a);
    the allowance may be a callable that forms it (read only by the passes that need it).
    Only per-sample figures are kept between blocks (GPT-2: one block's arrays at a time).
    ``exclude``: (N, K) entries left out (at a kink); ``rerun``: a float64 re-run of the same
    code decides (``blockflags``); ``arrays(a, b)``: hi, lo, got, E as ``columns`` reads
    them (the passes compiled: ``blockpass``).

    Both tests raise *suspicions* (module docstring): flagged entries become SUSPECT and each
    finding keeps the statuses it replaced (``BlockFinding.prior``), for ``symgrad.confirm``.
    A sample whose block is not resolved (||exact|| <= ``block_resolved`` x ||allowance||:
    correct code may return anything there, its direction included) takes part in neither test.

    Returns:
        The new status array (``status`` itself when no block marks an entry: never written
        in place) and the findings (``confirmed`` None: not yet tested).
    """
    u = dtype_info(dtype).eps / 2
    usable_status = (OK, LOSS, MISMATCH, INCONCLUSIVE, SUSPECT)
    markable = (OK, LOSS, INCONCLUSIVE)  # within the entry bound: a suspicion may mark them

    def usable_of(exact, err, a, b):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            usable = np.isfinite(err) & np.isfinite(exact) & _member(status[:, a:b], usable_status)
            return usable if exclude is None else usable & ~exclude[:, a:b]

    ws = Workspace()  # every block's per-entry arrays in the same few buffers

    def stats_of(a, b):
        large = len(status) * (b - a) > BLOCK_CHUNK  # (its sums over column chunks)
        if arrays is not None and exclude is None and b > a:  # (compiled: ``blockpass``)
            return projection(arrays, status, _spans(len(status), a, b, large), ws, dtype,
                              tol, whole=not large)
        if large:
            return _projection_chunked(columns, usable_of, len(status), a, b, ws)
        exact, err, allowed = columns(a, b)  # (a block read whole)
        return _projection(exact, err, allowed, usable_of(exact, err, a, b), ws)
    keys = ("p", "sigma", "pi", "n_eff", "ok_rows")
    stats = []
    for _, a, b in blocks:
        st = stats_of(a, b)
        st = {**{k: st[k] for k in keys}, "scale": st.get("scale")}
        with np.errstate(invalid="ignore"):  # pi = ||g||^2 / ||allowance||^2
            st["ok_rows"] = st["ok_rows"] & (st["pi"] > tol.block_resolved ** 2)
        stats.append(st)
    # the common mode of the sample: the median projection over blocks. An upstream adjoint
    # rounded once (BCE's dL/dz at a saturated logit) shifts every block alike (blockflags)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no common mode
        ps = np.array([np.where(st["ok_rows"], st["p"], np.nan) for st in stats])
        common = np.nan_to_num(np.nanmedian(ps, axis=0)) if stats else np.zeros(len(status))
    given, found = status, []  # copied only when a block marks entries (GPT-2: 0.15 GiB)
    for (name, a, b), st in zip(blocks, stats):
        p, sigma, ok_rows = st["p"], st["sigma"], st["ok_rows"]
        # 2. per sample (lower floors where a float64 re-run decides: ``blockflags``)
        flag, thresh, low = block_flags(st, common, u, tol, rerun=rerun)
        suspects = [(int(s), float(p[s]), float(sigma[s]), float(thresh[s]), bool(low[s]))
                    for s in np.flatnonzero(flag)]  # (sample, p, sigma, threshold, rerun only)
        # 3. pooled over samples
        pooled = pooled_test(p, st["pi"], ok_rows, u, tol)
        if pooled is not None:
            suspects.append((-1, *pooled, False))
        if suspects:  # entries whose error points along the suspected projection
            ws = None  # (a bug's block: new arrays per chunk, none held between chunks)
            status = status.copy() if status is given else status
            before = status[:, a:b].copy()  # the entry test's statuses, before any suspicion
            for c, d in _spans(len(status), a, b, st["scale"] is not None):
                if st["scale"] is None:
                    full = stats_of(a, b)
                    use, e, g = full["use"], full["e"], full["g"]
                else:  # the chunk's e and g, as _projection_chunked scaled them
                    use, e, g = _scaled(columns, usable_of, c, d, st["scale"],
                                        allowance=False)[:3]
                for s, proj, sig, th, _ in suspects:
                    rows = slice(None) if s < 0 else slice(s, s + 1)
                    sub = status[rows, c:d]
                    mark = use[rows] & (e[rows] * g[rows] * proj > 0) & _member(sub, markable)
                    sub[mark] = SUSPECT
                    status[rows, c:d] = sub
                del use, e, g  # before the next chunk's are formed
            for s, proj, sig, th, lo_ in suspects:
                rows = slice(None) if s < 0 else slice(s, s + 1)
                found.append(BlockFinding(name, s, proj, sig, th, (a, b), prior=before[rows],
                                          rerun_only=lo_))
    return status, found


BLOCK_CHUNK = 1 << 22  # entries: a block larger than this is tested over column chunks


def _spans(n: int, a: int, b: int, chunked: bool) -> list[tuple[int, int]]:
    """Column spans of a block: the whole block, or chunks of at most ``BLOCK_CHUNK`` entries."""
    if not chunked:
        return [(a, b)]
    step = max(1, BLOCK_CHUNK // max(n, 1))
    return [(c, min(b, c + step)) for c in range(a, b, step)]


def _scaled(columns, usable_of, a: int, b: int, scale: np.ndarray,
            ws: Workspace | None = None, allowance: bool = True):
    """One chunk's (use, e, g, al): usable entries, error, exact value and allowance divided
    by each row's block scale, exactly as ``_projection`` forms them (in ``ws``'s buffers
    when given; ``allowance`` False: al is None, the allowance not formed)."""
    ws = ws or Workspace()
    exact, err, allowed = columns(a, b)
    use = usable_of(exact, err, a, b)
    shape = np.shape(exact)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        e = _masked(use, err, scale, ws.take("e", shape, err))
        del err  # each operand released once scaled: 2 of the chunk's arrays fewer at once
        al = _scaled_allowance(use, allowed, scale, ws) if allowance else None
        return use, e, _masked(use, exact, scale, ws.take("g", shape, exact)), al


def _projection_chunked(columns, usable_of, n: int, a: int, b: int,
                        ws: Workspace | None = None) -> dict:
    """``_projection`` of a large block from column chunks, one chunk's arrays at a time (GPT-2's
    token embedding: 38.6M entries, ~3 GB of temporaries at once otherwise): a pass for each
    row's scale, one for the sums giving p, gg, g4 and pi, one for the residual's sigma with p
    known (r = e - p g formed per entry, as ``_projection`` does: no cancelling expansion).
    Only the sums' pass forms the allowance; per-entry arrays in ``ws``'s buffers. Equal to
    ``_projection`` up to the order of summation. Returns its dict without the per-entry
    arrays, with ``scale`` (per row) for marking entries chunk by chunk."""
    ws = ws or Workspace()
    spans = _spans(n, a, b, True)
    scale, uses = np.zeros(n), {}  # uses: each chunk's usable entries (1 B an entry), made
    for c, d in spans:             # by this pass, read by the sums' and the residual's
        exact, err, _ = columns(c, d)
        use = uses[c, d] = usable_of(exact, err, c, d)
        if d > c:
            scale = np.maximum(scale, _row_scale(exact, use, ws))
        del exact, err, _, use  # (each pass: one chunk's arrays at a time, not two chunks')
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    cached = lambda exact, err, c, d: uses[c, d]  # noqa: E731 (usable_of, pass one's masks)
    gg, g4, eg, aa = (np.zeros(n) for _ in range(4))
    al_finite = np.ones(n, bool)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for c, d in spans:
            _, e, g, al = _scaled(columns, cached, c, d, scale, ws)
            sums = _sums(g, e, al, ws.take("t", g.shape, g, e))
            gg, g4, eg, aa = gg + sums[0], g4 + sums[1], eg + sums[2], aa + sums[3]
            al_finite &= sums[4]
            del e, g, al, sums
        p = eg / gg
        rr = np.zeros(n)
        for c, d in spans:
            _, e, g, _ = _scaled(columns, cached, c, d, scale, ws, allowance=False)
            t = ws.take("t", g.shape, g, e, p)  # (r = e - p g in e's own buffer)
            rr += _residual(g, e, p, None if t is None else e, t)
            del e, g, _
        sigma = np.sqrt(rr) / gg
        pi = np.where(al_finite, gg / aa, 0.0)
        n_eff = gg**2 / g4
    return {"p": p, "sigma": sigma, "pi": pi, "n_eff": n_eff,
            "ok_rows": (gg > 0) & np.isfinite(p), "scale": scale}


def pooled_test(p: np.ndarray, pi: np.ndarray, rows: np.ndarray, u: float, tol: Tolerance,
                lam: float | None = None) -> tuple[float, float, float] | None:
    """The pooled test (module docstring, 3) on per-sample projections ``p`` with resolution
    weights ``pi``, over the samples ``rows`` (a boolean mask).

    Arguments:
        lam: the level; None: the suspicion level, min(pooled_sigmas, pooled_reach sqrt(n_eff))
            (so that it can fire from ``pooled_min_samples`` effective samples on).
    Returns:
        (pooled p, its self-normalised scale, the threshold) when flagged, else None.
    """
    pi = np.where(rows & np.isfinite(pi), pi, 0.0)
    pi = pi / pi.max() if pi.size and pi.max() > 0 else pi  # no overflow in pi^2
    total = pi.sum()
    if not total > 0:
        return None
    n_eff = total**2 / max(float((pi * pi).sum()), 1e-300)
    if n_eff < tol.pooled_min_samples:
        return None
    if lam is None:
        lam = min(tol.pooled_sigmas, tol.pooled_reach * np.sqrt(n_eff))
    pz = np.where(rows, p, 0)
    pp = float((pi * pz).sum() / total)
    spread = float(np.sqrt((pi * pi * pz**2).sum()) / total)
    th = max(tol.pooled_floor * u, lam * spread)
    return (pp, spread, th) if abs(pp) > th else None
