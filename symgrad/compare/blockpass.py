"""The block test's three passes over a large block's column chunk (``blocks``'
``_projection_chunked``) as compiled loops (``symgrad.jit``), each forming in one read of hi,
lo, got (and E) what numpy formed in ~15 passes: the usable entries and each row's scale; the
per-entry products whose row sums give p, sigma's weights and pi (g^2, g^4, e g, al^2, and
whether each row's allowance is finite); the residual's g^2 r^2. The sums themselves stay
numpy's (``.sum(1)`` of the same contiguous arrays: the same order, the same bits); every
per-entry number is the numpy expression's, bit for bit (- * / abs and comparisons only).

>>> import numpy as np
>>> hi = np.array([[1.0, -4.0, 2.0]]); got = hi * 1.5
>>> use = np.empty(hi.shape, bool)
>>> usable(hi, 0 * hi, got, np.zeros(hi.shape, np.int8), USABLE, use).tolist(), use.tolist()
([4.0], [[True, True, True]])
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import kernel
from .entries import INCONCLUSIVE, LOSS, MISMATCH, OK, SUSPECT
from .tolerance import Tolerance, dtype_info

USABLE = np.zeros(256, bool)  # the statuses a block test reads (``systematic_blocks``)
USABLE[[OK, LOSS, MISMATCH, INCONCLUSIVE, SUSPECT]] = True


@kernel
def _usable(hi, lo, got, status, table, use, scale):
    n, w = hi.shape
    for i in range(n):
        top, bottom = 0.0, 0.0
        for j in range(w):
            h = hi[i, j]
            err = (got[i, j] - h) - np.float64(lo[i, j])
            u = math.isfinite(err) and math.isfinite(h) and table[np.uint8(status[i, j])]
            use[i, j] = u
            g = h if u else 0.0
            if j == 0 or g > top:
                top = g
            if j == 0 or g < bottom:
                bottom = g
        scale[i] = max(top, -bottom)


def usable(hi, lo, got, status, table, use) -> np.ndarray:
    """The chunk's usable entries into ``use`` (finite error and exact value, a status of
    ``table``) and each row's max |exact| over them (``blocks._row_scale``; 0 where none).

    Arguments:
        hi, lo, got: the chunk's (n, w) oracle parts and the backend's values (float64; lo
            float32 or float64); status: its int8 statuses; table: bool by uint8 status code.
        use: (n, w) bool, written.
    Returns:
        The rows' scales (n,); for w = 0 zeros."""
    scale = np.zeros(hi.shape[0])
    _usable(hi, lo, got, status, table, use, scale)
    return scale


@kernel
def _products(hi, lo, got, E, use, scale, c_safety, c_floor, g2, g4, eg, al2, finite):
    n, w = hi.shape
    for i in range(n):
        s = scale[i]
        ok = True
        for j in range(w):
            h = hi[i, j]
            if use[i, j]:
                e = ((got[i, j] - h) - np.float64(lo[i, j])) / s
                g = h / s
                a = abs(np.float64(E[i, j])) * c_safety + c_floor
                if math.isnan(a):
                    a = math.inf
                a = a / s
            else:
                e, g, a = 0.0 / s, 0.0 / s, 0.0 / s
            q = g * g
            g2[i, j] = q
            g4[i, j] = q * q
            eg[i, j] = e * g
            al2[i, j] = a * a
            ok = ok and math.isfinite(a)
        finite[i] = finite[i] and ok


def products(hi, lo, got, E, use, scale, dtype: str, tol: Tolerance, out) -> np.ndarray:
    """The sums' per-entry products of a chunk (``blocks._sums`` of ``_scaled``'s e, g and
    al): g^2, g^4 as (g^2)^2, e g and al^2 into the four (n, w) float64 arrays ``out``.

    Arguments:
        hi, lo, got, E: the chunk's arrays (lo, E: float32 or float64); use: its usable
            entries; scale: the rows' block scales (n,), > 0.
        dtype, tol: the backend's dtype and the tolerance (the allowance).
        out: four float64 (n, w) arrays, written.
    Returns:
        Whether each row's allowance is finite over the chunk (n,)."""
    info = dtype_info(dtype)
    finite = np.ones(hi.shape[0], bool)
    _products(hi, lo, got, E, use, np.ascontiguousarray(scale, np.float64).reshape(-1),
              tol.safety * (info.eps / 2), tol.floor * info.tiny, *out, finite)
    return finite


@kernel
def _residual(hi, lo, got, use, scale, p, t):
    n, w = hi.shape
    for i in range(n):
        s, q = scale[i], p[i]
        for j in range(w):
            h = hi[i, j]
            if use[i, j]:
                e = ((got[i, j] - h) - np.float64(lo[i, j])) / s
                g = h / s
            else:
                e, g = 0.0 / s, 0.0 / s
            r = e - q * g
            t[i, j] = ((g * g) * r) * r


def residual(hi, lo, got, use, scale, p, out) -> np.ndarray:
    """g^2 r^2 per entry, r = e - p g (``blocks._residual`` of ``_scaled``'s e and g), into
    the (n, w) float64 array ``out`` (returned).

    Arguments:
        hi, lo, got: the chunk's arrays; use: its usable entries; scale: the rows' block
            scales; p: the rows' projections (n,)."""
    _residual(hi, lo, got, use, np.ascontiguousarray(scale, np.float64).reshape(-1),
              np.ascontiguousarray(p, np.float64), out)
    return out


def projection(arrays, status: np.ndarray, spans, ws, dtype: str, tol: Tolerance, *,
               whole: bool = False) -> dict:
    """``blocks._projection_chunked`` by the compiled passes (``whole``: ``_projection`` of
    a block read at once, its sums taken as they are, not added to zeros): the same numbers,
    bit for bit.

    Arguments:
        arrays: (c, d) -> the hi, lo, got and E of columns c..d-1.
        status: the comparison's statuses; spans: the block's column chunks (c, d).
        ws: a ``blocks.Workspace`` for the products; dtype, tol: the allowance's.
    Returns:
        ``_projection_chunked``'s dict (p, sigma, pi, n_eff, ok_rows, scale)."""
    n = len(status)
    scale, uses = np.zeros(n), {}
    for c, d in spans:
        hi, lo, got, _ = arrays(c, d)
        use = uses[c, d] = np.empty((n, d - c), bool)
        if d > c:
            scale = np.maximum(scale, usable(hi, lo, got, status[:, c:d], USABLE, use))
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    gg, g4, eg, aa = (np.zeros(n) for _ in range(4))
    al_finite = np.ones(n, bool)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for c, d in spans:
            hi, lo, got, E = arrays(c, d)
            out = [ws.take(k, (n, d - c)) for k in ("g", "e", "al", "t")]
            al_finite &= products(hi, lo, got, E, uses[c, d], scale, dtype, tol, out)
            sums = [x.sum(1) for x in out]
            gg, g4, eg, aa = sums if whole else (
                gg + sums[0], g4 + sums[1], eg + sums[2], aa + sums[3])
        p = eg / gg
        rr = np.zeros(n)
        for c, d in spans:
            hi, lo, got, _ = arrays(c, d)
            t = residual(hi, lo, got, uses[c, d], scale, p, ws.take("t", (n, d - c))).sum(1)
            rr = t if whole else rr + t
        sigma = np.sqrt(rr) / gg
        pi = np.where(al_finite, gg / aa, 0.0)
        n_eff = gg**2 / g4
    return {"p": p, "sigma": sigma, "pi": pi, "n_eff": n_eff,
            "ok_rows": (gg > 0) & np.isfinite(p), "scale": scale}
