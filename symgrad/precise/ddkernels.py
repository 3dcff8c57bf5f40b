"""``dd.add``, ``dd.mul`` and ``dd.div`` as compiled kernels (``symgrad.jit``): each entry in one pass.

In numpy a DD product is ~25 passes over its operands (Dekker's TwoProd with two Veltkamp splits,
the cross terms, FastTwoSum, ``_finish``'s finiteness masks), a sum ~15, a quotient ~80; the
oracle's elementwise maps (``ddops.DDKernels``, the walk's + * /) make them on every block. The
kernels below do per entry the same IEEE operations in the same order as ``dd`` (the split's
overflow-safe branch per entry: numpy's whole-array branch gives every entry under the limit the
plain split's bits), so the bits are ``dd``'s (``tests/test_ddkernels.py``): + - * / only,
fastmath off (no FMA contraction: Dekker's TwoProd, not an FMA's).

>>> import numpy as np
>>> one, three = np.array([1.0]), np.array([3.0])
>>> hi, lo = div(one, np.zeros(1), three, np.zeros(1))
>>> float(hi[0]), float(lo[0])
(0.3333333333333333, 1.850371707708594e-17)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import cache

import numpy as np
from numba import types as nt

from ..jit import kernel
from . import dd
from .dd import DD

_SPLITTER = 134217729.0  # dd's constants
_SPLIT_LIMIT = 2.0**995
_SPLIT_DOWN = 2.0**-28
_SPLIT_UP = 2.0**28


@kernel
def _split(a):  # pragma: no cover  (compiled)
    if abs(a) > _SPLIT_LIMIT:  # dd.split's scaled copy (NaN: not big, as np.abs(nan) > limit)
        s = a * _SPLIT_DOWN
        c = _SPLITTER * s
        h = c - (c - s)
        return h * _SPLIT_UP, (s - h) * _SPLIT_UP
    c = _SPLITTER * a
    h = c - (c - a)
    return h, a - h


@kernel
def _two_prod(a, b):  # pragma: no cover
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@kernel
def _two_sum(a, b):  # pragma: no cover
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@kernel
def _finish(hi, lo, plain):  # pragma: no cover
    if np.isfinite(plain) and np.isfinite(hi):
        return hi, lo
    return plain, 0.0


@kernel
def _add1(ah, al, bh, bl):  # pragma: no cover  (dd.add)
    s1, s2 = _two_sum(ah, bh)
    plain = s1
    t1, t2 = _two_sum(al, bl)
    s2 = s2 + t1
    s = s1 + s2
    s2 = s2 - (s - s1)
    s1 = s
    s2 = s2 + t2
    s = s1 + s2
    s2 = s2 - (s - s1)
    return _finish(s, s2, plain)


@kernel
def _mul_f64(ah, al, b):  # pragma: no cover  (dd.mul_f64)
    p, e = _two_prod(ah, b)
    plain = p
    e = e + al * b
    s = p + e
    return _finish(s, e - (s - p), plain)


def _add(ah, al, bh, bl, oh, ol):  # pragma: no cover
    for i in range(oh.size):
        oh[i], ol[i] = _add1(ah[i], al[i], bh[i], bl[i])


def _mul(ah, al, bh, bl, oh, ol):  # pragma: no cover  (dd.mul)
    for i in range(oh.size):
        p, e = _two_prod(ah[i], bh[i])
        plain = p
        e = e + (ah[i] * bl[i] + al[i] * bh[i])
        s = p + e
        oh[i], ol[i] = _finish(s, e - (s - p), plain)


def _div(ah, al, bh, bl, oh, ol):  # pragma: no cover  (dd.div: three quotient digits)
    for i in range(oh.size):
        a, b = ah[i], bh[i]
        q1 = a / b
        mh, ml = _mul_f64(b, bl[i], q1)
        rh, rl = _add1(a, al[i], -mh, -ml)
        q2 = rh / b
        mh, ml = _mul_f64(b, bl[i], q2)
        rh, rl = _add1(rh, rl, -mh, -ml)
        q3 = rh / b
        s = q1 + q2  # quick_two_sum(q1, q2)
        q2 = q2 - (s - q1)
        q1 = s
        s1, s2 = _two_sum(q1, q3)  # add_f64((q1, q2), q3)
        plain = s1
        s2 = s2 + q2
        s = s1 + s2
        hi, lo = _finish(s, s2 - (s - s1), plain)
        if not np.isfinite(q1) or b == 0 or not np.isfinite(a) or not np.isfinite(b):
            hi, lo = a / b, 0.0  # IEEE quotient of the leading parts
        oh[i] = hi
        ol[i] = lo


@kernel
def _mul_raw(ah, al, bh, bl):  # pragma: no cover  (dd.mul_raw: no overflow split, no _finish)
    p = ah * bh
    c = _SPLITTER * ah
    h1 = c - (c - ah)
    l1 = ah - h1
    c = _SPLITTER * bh
    h2 = c - (c - bh)
    l2 = bh - h2
    e = ((h1 * h2 - p) + h1 * l2 + l1 * h2) + l1 * l2
    e = e + (ah * bl + al * bh)
    s = p + e
    return s, e - (s - p)


@kernel
def _add_raw(ah, al, bh, bl):  # pragma: no cover  (dd.add_raw)
    s1, s2 = _two_sum(ah, bh)
    t1, t2 = _two_sum(al, bl)
    s2 = s2 + t1
    s = s1 + s2
    s2 = s2 - (s - s1)
    s2 = s2 + t2
    s1 = s + s2
    return s1, s2 - (s1 - s)


_EXP_HI = 709.782712893384  # ddmath's
_EXP_LO = -745.2
_MAX = np.finfo(np.float64).max


def _exp(xh0, xl0, c, coeffs, th, tl, oh, ol):  # pragma: no cover  (ddmath.exp, per entry)
    c1, c2, c3, c12 = c[0], c[1], c[2], c[3]
    nd = 6  # ddmath._DD_TERMS; coeffs: the 11 inverse factorials (hi, lo)
    for i in range(oh.size):
        x = xh0[i]
        v = 0.0 if x != x else (_MAX if x == np.inf else (-_MAX if x == -np.inf else x))
        xh = min(max(v, _EXP_LO), _EXP_HI)  # np.clip(np.nan_to_num(x))
        xl = xl0[i] if x == xh else 0.0
        k = np.rint(xh / c12)
        rh, rl = _add_raw(xh - k * c1, 0.0, xl, 0.0)
        rh, rl = _add_raw(rh, rl, -(k * c2), -(k * c3))
        ki = np.int64(k)
        q = (ki + 32) // 64
        j = ki - 64 * q + 32
        tail = 0.0  # _horner: the float64 tail, then DD
        for m in range(coeffs.shape[0] - 1, nd - 1, -1):
            tail = tail * rh + coeffs[m, 0]
        sh, sl = _add_raw(tail * rh, 0.0, coeffs[nd - 1, 0], coeffs[nd - 1, 1])
        for m in range(nd - 2, -1, -1):
            ph, pl = _mul_raw(sh, sl, rh, rl)
            sh, sl = _add_raw(ph, pl, coeffs[m, 0], coeffs[m, 1])
        ph, pl = _mul_raw(sh, sl, rh, rl)  # expm1(r)
        ph, pl = _mul_raw(th[j], tl[j], ph, pl)
        sh, sl = _add_raw(th[j], tl[j], ph, pl)
        hi, lo = math.ldexp(sh, q), math.ldexp(sl, q)
        if x > _EXP_HI:  # _patch
            hi, lo = np.inf, 0.0
        elif x < _EXP_LO:
            hi, lo = 0.0, 0.0
        if x != x:
            hi, lo = np.nan, 0.0
        oh[i] = hi
        ol[i] = lo


_IN = nt.Array(nt.float64, 1, "A", readonly=True)
_OUT = nt.Array(nt.float64, 1, "C")
_LOADING = threading.Lock()


@cache
def _load(name: str):
    if name == "exp":
        c = nt.Array(nt.float64, 1, "C", readonly=True)
        return kernel(signature_or_function=nt.void(
            _IN, _IN, c, nt.Array(nt.float64, 2, "C", readonly=True), c, c, _OUT, _OUT))(_exp)
    return kernel(signature_or_function=nt.void(_IN, _IN, _IN, _IN, _OUT, _OUT))(
        {"add": _add, "mul": _mul, "div": _div}[name])


def _run(name: str, ah, al, *rest) -> tuple[np.ndarray, np.ndarray]:
    with _LOADING:
        k = _load(name)
    oh, ol = np.empty(ah.shape), np.empty(ah.shape)
    k(ah, al, *rest, oh, ol)
    return oh, ol


def add(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray) -> tuple:
    """``dd.add`` of (ah, al) and (bh, bl): 1-d float64 arrays of one length (any strides).

    Arguments:
        ah, al, bh, bl: the operands' high and low parts.
    Returns:
        (hi, lo) of the sum, new arrays.

    >>> hi, lo = add(np.array([1.0]), np.zeros(1), np.array([2.0**-60]), np.zeros(1))
    >>> float(hi[0]), float(lo[0]) == 2.0**-60
    (1.0, True)
    """
    return _run("add", ah, al, bh, bl)


def mul(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray) -> tuple:
    """``dd.mul`` of (ah, al) and (bh, bl), as ``add``.

    Arguments:
        ah, al, bh, bl: the operands' high and low parts.
    Returns:
        (hi, lo) of the product, new arrays.

    >>> hi, lo = mul(np.array([1.0 + 2.0**-30]), np.zeros(1), np.array([1.0 + 2.0**-30]), np.zeros(1))
    >>> float(hi[0]) == 1.0 + 2.0**-29, float(lo[0]) == 2.0**-60
    (True, True)
    """
    return _run("mul", ah, al, bh, bl)


def div(ah: np.ndarray, al: np.ndarray, bh: np.ndarray, bl: np.ndarray) -> tuple:
    """``dd.div`` of (ah, al) by (bh, bl), as ``add`` (module docstring's example).

    Arguments:
        ah, al, bh, bl: the operands' high and low parts.
    Returns:
        (hi, lo) of the quotient, new arrays.
    """
    return _run("div", ah, al, bh, bl)


FUSED_FROM = 64  # entries: a smaller operation stays in numpy (a kernel call costs ~1 us)


def fused(name: str, a: DD, b: DD) -> DD | None:
    """``dd``'s ``name`` ("add", "mul", "div") of a and b by the kernel where both have one shape
    of at least ``FUSED_FROM`` entries whose parts flatten without a copy; else None (numpy's).

    Arguments:
        name: the operation; a, b: its DD operands.
    Returns:
        the DD result, or None.

    >>> x = DD(np.full(100, 3.0))
    >>> float(fused("div", DD(np.ones(100)), x).lo[0])
    1.850371707708594e-17
    """
    shape = a.hi.shape
    parts = _flat(a, b) if b.hi.shape == shape else None
    if parts is None:
        return None
    hi, lo = _run(name, *parts)
    return DD(hi.reshape(shape), lo.reshape(shape))


def _flat(*xs: DD) -> list | None:
    """The parts of ``xs`` (one shape, >= ``FUSED_FROM`` entries) flattened without a copy;
    None where that is not so."""
    if xs[0].hi.size < FUSED_FROM:
        return None
    try:
        return [np.reshape(v, -1, copy=False) for x in xs for v in (x.hi, x.lo)]
    except ValueError:  # a part that only a copy flattens
        return None


def exp(x: DD, ln2_64: tuple, coeffs: np.ndarray, th: np.ndarray, tl: np.ndarray) -> DD | None:
    """``ddmath.exp`` of x by the kernel (its tables given: ln2/64 as C1 + C2 + C3, the inverse
    factorials (hi, lo), 2**(j/64) (hi, lo)); None where x's parts do not flatten (``_flat``).

    Arguments:
        x: the argument; ln2_64, coeffs, th, tl: ``ddmath``'s constants.
    Returns:
        the DD result, or None.
    """
    parts = _flat(x)
    if parts is None:
        return None
    c1, c2, c3 = ln2_64
    hi, lo = _run("exp", *parts, np.array([c1, c2, c3, c1 + c2]), coeffs, th, tl)
    return DD(hi.reshape(x.shape), lo.reshape(x.shape))


def _by_kernel(name: str, plain: Callable[[DD, DD], DD]) -> Callable[[DD, DD], DD]:
    """``plain`` (``dd.add``, ``dd.mul``, ``dd.div``) by the kernel ``name`` where ``fused``
    takes the operands: the same bits either way."""
    def op(a: DD, b: DD) -> DD:
        got = fused(name, a, b)
        return plain(a, b) if got is None else got
    op.__name__ = op.__qualname__ = f"dd_{name}"
    op.__doc__ = f"``dd.{name}``, by the kernel where ``fused`` takes the operands."
    return op


dd_add, dd_mul, dd_div = (_by_kernel(n, f) for n, f in (("add", dd.add), ("mul", dd.mul),
                                                         ("div", dd.div)))
