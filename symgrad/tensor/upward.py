"""A large model's entry bound E stored in float32, each entry rounded away from zero.

E is a bound: the allowance a backend's entry gets is ``safety * u * |E| + floor * tiny``
(``symgrad.compare.allowance``, formed in float64 from a float32 E). Storing E in float32
rounded *away from zero* keeps it a bound: for a float64 E = x,

* rounding to nearest gives f = fl32(x); if |f| < |x|, x lies strictly between f and the next
  float32 away from zero, f' = nextafter(f, ±inf), so |f'| > |x|; otherwise |f| >= |x| already.
  Beyond float32's range fl32(x) is ±inf, or the largest float32 below |x|, nudged to ±inf:
  |f'| >= |x| in every case (an infinite allowance: the entry is inconclusive, never ok).
  A value below float32's smallest subnormal rounds to 0 and is nudged to 2^-149 > |x|; 0 stays
  0 and NaN stays NaN (``tensor.limits.limit_bounds`` still finds it).
* the allowance is monotone in |E| (a product by a positive constant and a sum, each rounded
  to nearest, in float64), so every entry's allowance from the stored E is at least the one
  from the float64 E: a larger allowance of a valid bound is a valid bound. A verdict can move
  only towards the cautious side (err between the two allowances: ok instead of a mismatch
  only if the larger one is still a bound - it is; A >= |x*| makes an ok inconclusive), and
  by at most a relative 2^-24 of the allowance.

It saves 4 bytes an entry: 0.61 GiB at GPT-2's 163,009,536 entries (``FLOAT32_FROM``: a large
model's, ``config.LARGE_MODEL_ENTRIES``, from which the oracle's low part is kept in float32 too,
``tensor.views.oracle_view``).

>>> x = np.array([1.0 + 2.0**-30, 0.0, 1e-300, 1e39, -3.0 - 2.0**-40, np.nan, np.inf])
>>> out = np.empty(x.shape, np.float32)
>>> store_away(out, x)
>>> seen = ~np.isnan(x)
>>> bool(np.all(np.abs(out[seen].astype(np.float64)) >= np.abs(x[seen])))
True
>>> out.tolist()[1:4], bool(np.isnan(out[5]))
([0.0, 1.401298464324817e-45, inf], True)
"""

from __future__ import annotations

import threading

import numpy as np

from ..config import LARGE_MODEL_ENTRIES
from ..parallel import each
from .spill import release

# entries (samples x (1 + parameters)) from which E is kept in float32: a large model's
# (``config.LARGE_MODEL_ENTRIES``)
FLOAT32_FROM = LARGE_MODEL_ENTRIES
CHUNK = 1 << 20  # entries rounded at a time: the temporaries stay ~10 MB


def bound_kind(entries: int) -> type:
    """The storage dtype of an entry bound of ``entries`` entries: float32 (rounded away from
    zero by ``store_away``) from ``FLOAT32_FROM`` on, else float64 (stored as computed).

    Arguments:
        entries: samples x (1 + parameters), the size of the whole E.
    Returns:
        ``np.float32`` or ``np.float64``.

    >>> bound_kind(10), bound_kind(163_009_537)
    (<class 'numpy.float64'>, <class 'numpy.float32'>)
    """
    return np.float32 if entries >= FLOAT32_FROM else np.float64


def store_away(out: np.ndarray, x: np.ndarray) -> None:
    """Write ``x`` into ``out``: as is when ``out`` is float64, else each entry rounded to
    float32 away from zero (``|out| >= |x|``; NaN stays NaN), in chunks of ``CHUNK`` entries.

    Arguments:
        out: the destination, float64 or float32, of ``x``'s shape after broadcasting
            (a view into the whole E: a block's columns).
        x: the float64 values (broadcast to ``out``'s shape).
    Returns:
        None (``out`` is written).

    >>> out = np.empty((1, 2), np.float32)
    >>> store_away(out, np.array([[0.1, -0.1]]))
    >>> [float(v) >= 0.1 for v in np.abs(out[0])]
    [True, True]
    """
    if out.dtype == np.float64:
        out[...] = x
        release()
        return
    if out.dtype != np.float32:
        raise TypeError(f"store_away: the bound's storage must be float64 or float32, "
                        f"not {out.dtype}")
    x = np.broadcast_to(np.asarray(x, np.float64), out.shape)
    if out.ndim != 2:  # E's blocks are 2-d views (samples, columns); anything else as one row
        out, x = out.reshape(1, -1), x.reshape(1, -1)  # (a 1-d array: a view, written through)
    cols = min(out.shape[1], CHUNK) or 1
    rows = max(1, CHUNK // cols)

    def chunk(at: tuple[int, int]) -> None:  # on ``symgrad.parallel``'s threads: each chunk
        a, c = at  #                             its own entries, the same bits on any count
        _away(out[a:a + rows, c:c + cols], x[a:a + rows, c:c + cols])
        release()  # a spilled E (``tensor.spill``): the chunk's pages out of the RSS
    each(chunk, [(a, c) for a in range(0, out.shape[0], rows)
                 for c in range(0, out.shape[1], cols)])


def _away(out: np.ndarray, x: np.ndarray) -> None:
    """One chunk: round to nearest, then one float32 step away from zero where that fell
    short of |x| (the proof is the module's docstring). The step is the bit pattern plus one:
    float32 is sign and magnitude, so the magnitude bits counting up move away from zero on
    either side (+-0 to +-2^-149, the largest finite to inf), and where it fell short the
    rounded value has x's sign (-0.0 too): ``nextafter(near, copysign(inf, x))`` bit for bit,
    without its gathers of about half the entries (8x less CPU a chunk). The rounding goes
    into this thread's float32 scratch chunk and is compared as float32 |near| with |x| inside
    the comparison (numpy casts it in its buffers): no fresh float32 or float64 copy of the
    chunk; ``out`` (a spilled E's pages, which another thread's ``release`` may drop at any
    time) is written once (2.7 against 6.3-11 CPU ms per 1M entries, the same bits)."""
    near = _scratch(x.size).reshape(x.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        np.copyto(near, x, casting="unsafe")  # round to nearest (overflow: inf)
        short = np.less(np.abs(near), np.abs(x))  # NaN: False, stays NaN
        bits = near.view(np.int32)
        bits += short
    out[...] = near


_SCRATCH = threading.local()  # each pool thread's float32 chunk for ``_away``


def _scratch(size: int) -> np.ndarray:
    """This thread's float32 scratch array of at least ``size`` entries (kept: CHUNK entries,
    4 MiB a thread), its first ``size`` entries."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < size:
        buf = _SCRATCH.buf = np.empty(max(size, CHUNK), np.float32)
    return buf[:size]
