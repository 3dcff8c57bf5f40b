"""The probabilistic bound's quadratures without underflow: sqrt(sum of squares) of sigma
terms where a square falls below float64's normal range.

sigma is carried in float64 and squared for each quadrature, so a term below ~1.5e-154
(2^-511) squares into the subnormals and one below ~2.2e-162 to 0: F.silu's gradient at
x = -481 (sigma 2.7e-206) then kept only its own rounding (0.034 ULPs allowed against a
0.33-ULP error, reports/wolf_hunt.md). Each helper forms the quadrature as before, then
re-forms only the entries whose result lies below ``LOW`` (the square of ``TINY``: no term of
such an entry reaches ``TINY``), so every other entry is bit-identical to the plain formula:

    entries below LOW       re-formed as
    map's parts             sqrt(sum (p 2^600)^2) 2^-600 (a power of two: exact scaling)
    sum, scatter of sigma   the same, over sigma 2^600
    einsum term             max(sqrt(quad), einsum(|x_1| .. sigma_i .. |x_k|)): the term's
                            L1 norm, at least its L2 norm (a valid, larger allowance), since
                            an operand's |x| may be tiny too and cannot be scaled apart

>>> import numpy as np
>>> float(hypot([np.array(2.7e-206)]))
2.7e-206
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

TINY = 2.0 ** -480  # a term at least this large squares to a normal float64 (2^-960)
LOW = TINY * TINY  # a quadrature below this has no term >= TINY: re-formed
SCALE, UNSCALE = 2.0 ** 600, 2.0 ** -600  # exact: terms below TINY scale to below 2^120


def hypot(parts: Iterable) -> np.ndarray:
    """sqrt(sum of the parts squared), summed in order, without underflow.

    Arguments:
        parts: arrays (or scalars) of one broadcast shape; NaN propagates.
    Returns:
        the root: bit-identical to ``sqrt(p_1^2 + .. + p_m^2)`` wherever that is at least
        ``TINY``; below it, the same sum of the parts scaled by 2^600, unscaled after.

    >>> float(hypot([np.array(3e-200), np.array(4e-200)]))
    5e-200
    """
    parts = list(parts)
    sq = 0.0
    for part in parts:
        sq = sq + part * part
    root = np.sqrt(sq)
    low = np.asarray(sq < LOW)
    if not np.any(low):
        return root
    with np.errstate(over="ignore", invalid="ignore"):  # large entries: not read below
        scaled = 0.0
        for part in parts:
            p = part * SCALE
            scaled = scaled + p * p
    return np.where(low, np.sqrt(scaled) * UNSCALE, root)


def root(squares: Callable[[np.ndarray], np.ndarray], sigma: np.ndarray) -> np.ndarray:
    """sqrt(squares(sigma^2)) for a linear map ``squares`` of nonnegative terms (a sum over
    axes, a scatter), without underflow.

    Arguments:
        squares: the map, applied to sigma^2 (and, where needed, to (2^600 sigma)^2).
        sigma: the terms (>= 0).
    Returns:
        the root, bit-identical to ``np.sqrt(squares(sigma * sigma))`` wherever that is at
        least ``TINY``.

    >>> float(root(np.sum, np.array([3e-200, 4e-200])))
    5e-200
    """
    quad = squares(sigma * sigma)
    out = np.sqrt(quad)
    low = quad < LOW
    if not np.any(low):
        return out
    with np.errstate(over="ignore", invalid="ignore"):  # large entries: not read below
        s = sigma * SCALE
        again = np.sqrt(squares(s * s)) * UNSCALE
    return np.where(low, again, out)


def root_or_linear(quad: np.ndarray, linear: Callable[[], np.ndarray]) -> np.ndarray:
    """sqrt(quad) of an einsum's sigma term, its L1 form ``linear()`` where quad < ``LOW``.

    Arguments:
        quad: einsum(x_1^2 .. sigma_i^2 .. x_k^2), a fresh array (its root formed in place).
        linear: einsum(|x_1| .. sigma_i .. |x_k|), called only where some entry is low.
    Returns:
        sqrt(quad), and max(sqrt(quad), linear) on the low entries (the L1 norm bounds the
        L2 norm: a valid allowance where the squares underflowed).

    >>> float(root_or_linear(np.array(0.0), lambda: np.array(2.7e-206)))
    2.7e-206
    """
    low = quad < LOW
    out = np.sqrt(quad, out=quad if isinstance(quad, np.ndarray) and quad.flags.writeable
                  else None)
    if not np.any(low):
        return out
    return np.where(low, np.maximum(out, linear()), out)
