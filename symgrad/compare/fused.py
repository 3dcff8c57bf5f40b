"""One chunk of a large compare in one compiled loop (``symgrad.jit``): each entry's error and
allowance (``entry_errors``), its status (``compare`` without kinks, uncertain entries or an
enclosure: the streaming compare's case), and every per-entry figure the summary's pass takes
from it (``figure_scan.entry_measures``, ``fold``, ``Scan.add``: the measured ULPs, the relative
error and the ratio, their masked maxima and the resolution's minimum, the float32 ULPs kept for
the medians with the histogram of their upper 16 bits, the ULP histogram's table codes, the
badness and the chunk's worst entries). numpy makes one memory pass per operation, ~40 of them
over a chunk here; the loop reads hi, lo, got and E once and writes the statuses and the kept
ULPs once. Every number is the numpy expression's, bit for bit: + - * /, abs, comparisons and
powers of two only (no log2, exp2 or log10); where numpy's ``ulp`` takes its log2 path (an
|exact| whose top 30 mantissa bits are all set, or not finite; the same for the terms' scale at
an exact zero), or the histogram meets more than ``AMBIGUOUS_CAP`` values at a bin's edge, the
chunk is left to the numpy path (``compare_chunk`` returns None): rare (2^-30 of the entries).

>>> import numpy as np
>>> from symgrad.compare import Tolerance
>>> hi = np.array([[1.0, 2.0, 0.0]]); got = hi + np.array([[0.0, 2**-51, 1e-300]])
>>> status = np.empty(hi.shape, np.int8)
>>> c = compare_chunk(hi, 0 * hi, got, np.ones_like(hi), status, dtype="float64",
...                   tol=Tolerance(), value_column=True, kind=np.float64,
...                   excused=np.zeros(256, bool), floor=-np.inf, width=3, first=0)
>>> status.tolist(), c.stats["worst_ulps"], c.found[0].tolist()
([[0, 0, 0]], 1.0, [1, 0, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numba.core import types
from numba.extending import intrinsic

from ..jit import kernel
from .entries import INCONCLUSIVE, LOSS, MISMATCH, NONFINITE, OK, OVERFLOW
from .tolerance import Tolerance, dtype_info
from .ulphist import AMBIGUOUS, BINS, _table, direct

AMBIGUOUS_CAP = 4096  # values at a histogram bin's edge a chunk may hold (else: numpy's path)
_HIGH = 1 << 16  # the medians' buckets of the upper 16 bits of a float32
_SLIVER = 0x000FFFFFC0000000  # ``tolerance._SLIVER``: where numpy's ulp takes its log2 path
_EXPONENT = 0x7FF0000000000000  # float64's exponent field (all set: inf, NaN)
_F32_MAX = float(np.finfo(np.float32).max)


@intrinsic
def _bits64(typingctx, x):
    """A float64's bit pattern as an int64 (LLVM's bitcast: no memory round trip)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits32(typingctx, x):
    """A float32's bit pattern as a uint32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))
    return types.uint32(types.float32), codegen


@kernel
def _chunk(hi, lo, got, E, hi_bits, status, kept, upper, codes, table, shift, amb, top_at,
           top_bad, stats, consts, sizes, value_column, kind32, medians, ranked, floor,
           excused):
    """The loop (the module docstring); returns (0: done, 1: left to numpy, -1: unused), the
    excused count, the ambiguous count and the candidates' count in ``top_*``."""
    c_safety, c_floor, tiny, dmax = consts[0], consts[1], consts[2], consts[4]
    zero_below, loss_ulps, c_scale, half_eps = consts[5], consts[6], consts[7], consts[8]
    inv_scale = consts[9]  # 1 / c_scale where a power of two (exact), else 0
    sizes, inverses = sizes[0], sizes[1]
    n, w = hi.shape
    worst_ulps, worst_ratio, worst_all, worst_rel = 0.0, -np.inf, -np.inf, -np.inf
    resolution = np.inf
    nonfinite_ulps = False
    n_excused, n_amb, n_top = 0, 0, 0
    for i in range(n):
        for j in range(w):
            h = hi[i, j]
            bits = hi_bits[i, j]
            if (bits & _SLIVER) == _SLIVER or (bits & _EXPONENT) == _EXPONENT:
                return 1, 0, 0, 0  # numpy's log2 path (or a non-finite exact value)
            g = got[i, j]
            err = abs((g - h) - np.float64(lo[i, j]))
            k = (bits >> 52) & 0x7FF  # (``_spacing``: by the exponent field)
            size, inverse = sizes[k], inverses[k]  # (x / 2^m = x * 2^-m: the same rounding)
            g_finite = math.isfinite(g)
            a = abs(np.float64(E[i, j])) * c_safety + c_floor
            if math.isnan(a):
                a = np.inf
            if inverse > 0:
                ulps, allowed = err * inverse, a * inverse
            else:
                ulps, allowed = err / size, a / size
            if not g_finite:
                ulps = np.inf
            magnitude = abs(h)
            # the terms' scale (``measured_ulps``) and the ULPs shown
            se = (a - c_floor) * inv_scale if inv_scale > 0 else (a - c_floor) / c_scale
            if not (se != se) and not (se >= tiny):
                se = tiny  # np.maximum(se, tiny): NaN kept
            zero = magnitude <= se * half_eps
            scale = se if zero else magnitude
            shown = ulps
            if zero:
                if se == np.inf:
                    shown = err / np.inf
                else:
                    sb = _bits64(se)
                    if (sb & _SLIVER) == _SLIVER or (sb & _EXPONENT) == _EXPONENT:
                        return 1, 0, 0, 0
                    ks = (sb >> 52) & 0x7FF
                    shown = err * inverses[ks] if inverses[ks] > 0 else err / sizes[ks]
            # the status, in ``compare``'s order (each later rule overrides; & not ``and``:
            # no branch to mispredict on the data)
            exact_ok = magnitude <= dmax
            within = err <= a
            loss = (ulps > loss_ulps) & within & (shown > loss_ulps)
            nonzero = (magnitude > zero_below * a) | (not math.isfinite(a))
            open_ = nonzero & (a >= magnitude) & within & (err > 0)
            st = INCONCLUSIVE if open_ else (LOSS if loss else OK)
            if err > a:
                st = MISMATCH
            if value_column and j == 0 and err > magnitude and h != 0:
                st = MISMATCH
            if not g_finite:
                st = NONFINITE
            if not exact_ok:
                st = OVERFLOW
            status[i, j] = st
            # the figures (``entry_measures``, ``fold``)
            if not g_finite:
                shown = np.inf
            relative = err / scale
            ratio = err / a
            if not (a > 0):
                ratio = 0.0 if err == 0 else np.inf
            if not g_finite:
                ratio = np.inf
            is_excused = excused[st]
            if is_excused:
                n_excused += 1
            if math.isfinite(shown):
                if shown > worst_ulps:
                    worst_ulps = shown
            else:
                nonfinite_ulps = True
            if ratio > worst_all:  # (|exact| finite: always here)
                worst_all = ratio
            if not is_excused:
                if ratio > worst_ratio:
                    worst_ratio = ratio
                if relative > worst_rel:
                    worst_rel = relative
                if magnitude > 0 and math.isfinite(a):
                    r = a / magnitude
                    if r < resolution:
                        resolution = r
            if medians:
                u32 = np.float32(shown)
                kept[i * w + j] = u32
                upper[_bits32(u32) >> 16] += 1
            if not ranked:
                continue
            # the compare's ULPs and allowance as kept (``fit``), their histogram and badness
            if kind32:
                fu = np.float32(ulps)
                if math.isinf(fu) and math.isfinite(ulps):
                    fu = np.float32(_F32_MAX) if ulps > 0 else np.float32(-_F32_MAX)
                fa = np.float32(allowed)
                if math.isinf(fa) and math.isfinite(allowed):
                    fa = np.float32(_F32_MAX) if allowed > 0 else np.float32(-_F32_MAX)
                code = table[_bits32(fu) >> shift]
                fu64, fa64 = np.float64(fu), np.float64(fa)
            else:
                code = table[np.uint64(_bits64(ulps)) >> np.uint64(shift)]
                fu64, fa64 = ulps, allowed
            codes[code] += 1
            if code == AMBIGUOUS:
                if n_amb == amb.size:
                    return 1, 0, 0, 0
                amb[n_amb] = fu64
                n_amb += 1
            bad = np.float32(fu64 / fa64)
            if not math.isfinite(fu64):
                bad = np.float32(np.inf)
            if math.isnan(bad):
                bad = np.float32(-1.0)
            if bad >= floor:  # the top 3 by (badness down, position up)
                at = i * w + j
                slot = n_top
                while slot > 0 and bad > top_bad[slot - 1]:
                    slot -= 1
                if slot < top_at.size:
                    last = min(n_top, top_at.size - 1)
                    for s in range(last, slot, -1):
                        top_at[s], top_bad[s] = top_at[s - 1], top_bad[s - 1]
                    top_at[slot], top_bad[slot] = at, bad
                    n_top = min(n_top + 1, top_at.size)
    stats[0] = np.inf if nonfinite_ulps else worst_ulps
    stats[1], stats[2], stats[3], stats[4] = worst_ratio, worst_all, worst_rel, resolution
    return 0, n_excused, n_amb, n_top


@dataclass
class FusedChunk:
    """What one chunk's loop made (the statuses are written into the caller's array)."""

    stats: dict  # ``figure_scan.fold`` of the chunk's figures
    excused: int  # entries with an excused status
    high: tuple | None  # ``order_stats.ChunkMedian.counted`` of the kept ULPs (plain), or None
    counts: np.ndarray | None  # ``compare.ulp_counts`` of the ULPs as kept (ranked)
    found: tuple | None  # (positions in the chunk, badness) of its worst candidates (ranked)


def compare_chunk(hi: np.ndarray, lo: np.ndarray, got: np.ndarray, E: np.ndarray,
                  status: np.ndarray, *, dtype: str, tol: Tolerance, value_column: bool, kind,
                  excused: np.ndarray, floor: float, width: int, first: int,
                  kept: np.ndarray | None = None, ranked: bool = True,
                  top: int = 3) -> FusedChunk | None:
    """``compare`` of one chunk (no kinks, uncertain entries or enclosure) and its summary
    figures, in one loop; the statuses written into ``status`` and, with ``kept``, the chunk's
    float32 ULPs as shown (row-major) into ``kept``.

    Arguments:
        hi, lo, got, E: the chunk's (n, w) oracle parts, float64 values and bound (lo, E:
            float32 or float64).
        status: (n, w) int8, written.
        dtype, tol: the backend's dtype and the tolerance.
        value_column: whether the chunk's column 0 is the loss value.
        kind: np.float32 or np.float64, how the comparison keeps ULPs and allowances (``fit``).
        excused: a bool table of the excused statuses by their uint8 code.
        floor: the badness a worst entry needs (``Scan.floor``).
        width, first: the comparison's width and the chunk's first column (flat indices).
        kept: a float32 array of n * w entries for the ULPs shown, or None (no medians).
        ranked: whether the histogram and the worst entries are made.
        top: how many worst entries.
    Returns:
        A ``FusedChunk``, or None where the chunk is left to numpy (module docstring)."""
    info = dtype_info(dtype)
    hi, lo, got, E = arrays = tuple(np.asarray(a) for a in (hi, lo, got, E))  # (a spilled
    #                                                  file's np.memmap: its plain array)
    if not (all(isinstance(a, np.ndarray) and a.ndim == 2 for a in arrays)
            and hi.dtype == got.dtype == np.float64
            and lo.dtype in (np.float32, np.float64) and E.dtype in (np.float32, np.float64)):
        return None
    consts = np.array([tol.safety * (info.eps / 2), tol.floor * info.tiny, info.tiny,
                       2.0 ** -info.digits, info.max, tol.zero_below, tol.precision_loss_ulps,
                       tol.safety * info.eps / 2, info.eps / 2,
                       _inverse(tol.safety * info.eps / 2)])
    table, shift, _ = _table(np.dtype(kind))
    n, w = hi.shape
    upper = np.zeros(_HIGH if kept is not None else 1, np.int64)
    codes = np.zeros(AMBIGUOUS + 1, np.int64)
    amb = np.empty(AMBIGUOUS_CAP)
    top_at, top_bad = np.zeros(top, np.int64), np.zeros(top, np.float32)
    stats = np.empty(5)
    done, n_excused, n_amb, n_top = _chunk(
        hi, lo, got, E, hi.view(np.int64), status,
        np.asarray(kept) if kept is not None else np.empty(1, np.float32), upper, codes,
        table, shift, amb, top_at, top_bad, stats, consts, _sizes(info), value_column,
        kind is np.float32, kept is not None, ranked,
        np.float32(floor) if floor > -np.inf else np.float32(-np.inf), excused)
    if done:
        return None
    high = None
    if kept is not None and not upper[0x7F80:].any():
        high = np.zeros(_HIGH, np.int64)
        high[1 << 15:] = upper[:1 << 15]
        high = (0, n * w, high, True)
    counts = found = None
    if ranked:
        counts = codes[:BINS].copy()
        if n_amb:
            counts += direct(amb[:n_amb])
        at = top_at[:n_top]
        found = (at // w * width + at % w + first, top_bad[:n_top].copy())
    st = {"worst_ulps": max(0.0, float(stats[0])),
          "worst_ratio": max(0.0, _masked(stats[1])), "worst_rel": max(0.0, _masked(stats[3])),
          "resolution": min(float("inf"), float(stats[4])),
          "worst_ratio_all": max(0.0, _masked(stats[2]))}
    return FusedChunk(st, int(n_excused), high, counts, found)


_SIZES: dict = {}


def _sizes(info) -> np.ndarray:
    """numpy's ``ulp`` of every finite, normal-path float64 by its exponent field: max(2^(k -
    1023), tiny) 2^-digits (0 for k = 0), formed by the same numpy operations; under it each
    one's ``_inverse``."""
    key = (info.tiny, info.digits)
    if key not in _SIZES:
        k = np.arange(2048)
        with np.errstate(over="ignore"):
            p2 = np.where(k == 0, 0.0, np.ldexp(1.0, k - 1023))
        sizes = np.maximum(p2, info.tiny)
        sizes *= 2.0 ** -info.digits
        _SIZES[key] = np.stack([sizes, [_inverse(x) for x in sizes]])
    return _SIZES[key]


def _inverse(x: float) -> float:
    """1 / x where x is a power of two whose inverse is a finite float64 (x * it = x / 1/it,
    bit for bit), else 0."""
    m, _ = np.frexp(x)
    inverse = 1.0 / x if m == 0.5 and x >= 2.0 ** -1022 else 0.0
    return inverse if np.isfinite(inverse) else 0.0


def _masked(top: float) -> float:
    """``figure_scan.masked_max``'s value from a running maximum (-inf: none, 0.0)."""
    return 0.0 if top == -np.inf else float(top)
