"""A large comparison's ULPs and allowances, computed where they are read instead of held
(``compare_compact(deferred=True)``): each entry's figures are elementwise functions of the
oracle's (hi, lo), the bound E and the backend's value (``symgrad.compare.entry_errors``), all
of which the compare holds anyway, so a read of any slice, gather or single entry recomputes
exactly the numbers a whole array would hold. GPT-2 at 163M entries: no 0.65 GB float32 ULPs
and 0.65 GB allowance per backend; the findings, the figures and the reduction read them a
chunk at a time (each read about 8 float64 operations an entry).

>>> import numpy as np
>>> from symgrad.compare import Tolerance
>>> hi = np.array([[1.0, 2.0, 4.0]])
>>> got = hi + np.array([[0.0, 2**-51, 2**-49]])
>>> f = EntryFigures(hi, 0 * hi, got, np.ones_like(hi), "float64", Tolerance(), np.float64)
>>> f.ulps[:, 1:].tolist(), float(f.ulps[0, 2]), f.ulps.reshape(-1)[[0, 2]].tolist()
([[1.0, 2.0]], 2.0, [0.0, 2.0])
>>> bool((np.asarray(f.allowed) == f.allowed[:, :]).all()), f.ulps.shape
(True, (1, 3))
"""

from __future__ import annotations

import threading

import numpy as np

from ..compare import Tolerance, entry_errors
from .spill import release

FIGURE_CHUNK = 1 << 20  # entries per chunk when a whole figure is asked for (``__array__``)


def fit(x: np.ndarray, kind) -> np.ndarray:
    """``x`` as ``kind``: float64 as is; float32 with finite values beyond its range (errors at
    exactly-zero entries, in ULPs of 0) as float32's largest number instead of inf.

    >>> fit(np.array([1e300, np.inf, 2.0, -1e300, np.nan]), np.float32).tolist()
    [3.4028234663852886e+38, inf, 2.0, -3.4028234663852886e+38, nan]
    """
    if kind is np.float64:
        return x
    with np.errstate(over="ignore"):  # beyond float32's range: inf, put back below
        out = np.asarray(x).astype(np.float32)
    over = np.isinf(out)  # (one pass over the float32 copy; the clip of every entry was 4)
    if over.any():
        over &= np.isfinite(x)
        out[over] = np.copysign(np.finfo(np.float32).max, np.asarray(x)[over])
    return out


class EntryFigures:
    """The ULPs (``ulps``) and allowances in ULPs (``allowed``) of one backend's comparison,
    (N, K) each, computed from the arrays they depend on when read, stored as ``kind``.

    Arguments:
        hi, lo: the oracle's value, (N, K) (lo may be float32).
        got: the backend's values, float64, (N, K).
        E: the entry bound, (N, K).
        dtype, tol: the backend's dtype and the tolerance.
        kind: np.float64 or np.float32 (as ``compare_compact`` keeps them: ``fit``).
    """

    def __init__(self, hi: np.ndarray, lo: np.ndarray, got: np.ndarray, E: np.ndarray,
                 dtype: str, tol: Tolerance, kind) -> None:
        shapes = {np.shape(a) for a in (hi, lo, got, E)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"EntryFigures: hi, lo, got and E must share one (N, K) shape, "
                             f"not {sorted(shapes)}")
        self.arrays = (hi, lo, got, E)
        self.shape = hi.shape
        self.dtype, self.tol, self.kind = dtype, tol, kind
        # (key, ulps, allowed) of this thread's last read: measures read both in turn. Per
        # thread: the pool's threads (``symgrad.parallel``) read one comparison's figures at
        # once, and a shared entry could be replaced between its check and its use
        self._last = threading.local()
        self.scan = None  # the summary's pass its compare fed (``figure_scan.Scan``), if any

    def __getstate__(self) -> dict:  # a thread's cache does not travel (pickle, copy)
        return {k: v for k, v in self.__dict__.items() if k != "_last"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _last=threading.local())

    @property
    def ulps(self) -> "Figure":
        """The errors in ULPs (made on each access: a figure refers to its source, never the
        other way round, so no reference cycle keeps GPT-2's arrays alive until a garbage
        collection once the comparison is reduced)."""
        return Figure(self, 0, False)

    @property
    def allowed(self) -> "Figure":
        """The allowances in ULPs."""
        return Figure(self, 1, False)

    def absolute(self, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """The absolute errors and allowances (float64, NaN allowance -> inf) of the columns
        ``cols``: ``entry_errors``' own, the numbers the compare judged (``symgrad.measures``
        reads them where a comparison keeps no error array)."""
        err, _, _, allowed_abs, _ = self.errors(cols)
        return err, allowed_abs

    def errors(self, cols: slice) -> tuple[np.ndarray, ...]:
        """``entry_errors`` of the columns ``cols`` (error, ULP size, ULPs, absolute allowance,
        allowance in ULPs; float64, not yet ``kept``): every figure of those entries from one
        evaluation (``symgrad.figure_scan.scan``)."""
        hi, lo, got, E = (np.asarray(a[:, cols]) for a in self.arrays)
        out = entry_errors(hi, lo, np.asarray(got, np.float64), E, self.dtype, self.tol)
        release()  # spilled hi, lo, E (``tensor.spill``): this chunk's pages out of the RSS
        return out

    def kept(self, x: np.ndarray) -> np.ndarray:
        """ULPs or allowances as the comparison keeps them (``fit`` to its ``kind``)."""
        return fit(x, self.kind)

    def at(self, key, flat: bool) -> tuple[np.ndarray, np.ndarray]:
        """(ULPs, allowances) of the entries ``key`` selects (of the flat entries: ``flat``)."""
        token = _token(key, flat)
        last = getattr(self._last, "read", None)
        if token is not None and last is not None and last[0] == token:
            return last[1], last[2]
        parts = [(a.reshape(-1) if flat else a)[key] for a in self.arrays]
        scalar = np.ndim(parts[0]) == 0
        hi, lo, got, E = (np.atleast_1d(np.asarray(p)) for p in parts)
        _, _, ulps, _, allowed = entry_errors(hi, lo, np.asarray(got, np.float64), E,
                                              self.dtype, self.tol)
        release()
        ulps, allowed = fit(ulps, self.kind), fit(allowed, self.kind)
        if scalar:
            ulps, allowed = ulps[0], allowed[0]
        self._last.read = (token, ulps, allowed)
        return ulps, allowed


class Figure:
    """One of ``EntryFigures``' two arrays: indexed like an ndarray (slices, integers, index
    arrays, masks), ``reshape(-1)`` its flat entries; ``np.asarray`` of it forms it whole
    (chunk by chunk: what the deferred compare avoids; only a comparison kept whole for a
    confirmation asks for it)."""

    ndim = 2

    def __init__(self, source: EntryFigures, which: int, flat: bool) -> None:
        self.source, self.which, self.flat = source, which, flat
        n, k = source.shape
        self.shape = (n * k,) if flat else (n, k)
        self.ndim = 1 if flat else 2
        self.size = n * k
        self.dtype = np.dtype(source.kind)

    def __getitem__(self, key):
        return self.source.at(key, self.flat)[self.which]

    def reshape(self, *shape) -> "Figure":
        if tuple(shape) not in ((-1,), ((-1,),)):
            raise ValueError(f"a deferred figure reshapes only to its flat entries (-1), "
                             f"not {shape}")
        return Figure(self.source, self.which, True)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.size, self.dtype)
        flat = self.reshape(-1)
        for a in range(0, self.size, FIGURE_CHUNK):
            out[a:a + FIGURE_CHUNK] = flat[a:a + FIGURE_CHUNK]
        out = out.reshape(self.shape)
        return out if dtype is None else out.astype(dtype, copy=False)


def _token(key, flat: bool):
    """A comparable stand-in for an index: slices and integers by value, arrays by identity."""
    items = key if isinstance(key, tuple) else (key,)
    out = [flat]
    for k in items:
        if isinstance(k, slice):
            out.append(("s", k.start, k.stop, k.step))
        elif isinstance(k, (int, np.integer)):
            out.append(("i", int(k)))
        else:
            return None  # an index array: not remembered (it may be freed and its id reused)
    return tuple(out)
