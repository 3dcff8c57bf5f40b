"""Run small float64 GEMMs on one OpenBLAS thread (and put the thread count back afterwards).

numpy's OpenBLAS splits even a (4 x 2048) @ (2048 x 147) product over every core, and on a
shared, loaded machine its threads spin waiting for each other: measured on this project's
2-core box at load 5, that product took 5-190 ms on 2 threads and 0.06-0.4 ms on one, and the
double-double convolutions of a ResNet-shaped oracle spent 24 of 58 s there. The Ozaki slices'
level products are exact integers on a shared grid, so the thread count cannot change them;
only the one rounded residual GEMM may sum in another order (within its stated bound).

The library is found among the shared objects this process has loaded (``/proc/self/maps``,
Linux): any OpenBLAS exporting ``openblas_set_num_threads`` (or the ``scipy_openblas`` /
64-bit-integer spellings). Elsewhere (MKL, Accelerate, no /proc) ``one_thread`` does nothing.

Example:
    >>> import numpy as np
    >>> with one_thread():
    ...     float((np.ones((2, 3)) @ np.ones((3, 2)))[0, 0])
    3.0
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Iterator

_NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
          ("openblas_get_num_threads", "openblas_set_num_threads"))

_LIBS: list | None = None  # (get, set) per loaded OpenBLAS, found once


def _found() -> list:
    global _LIBS
    if _LIBS is None:
        _LIBS = []
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({ln.split()[-1] for ln in f if ".so" in ln.split()[-1]
                                and "openblas" in ln.split()[-1].lower()})
        except OSError:
            paths = []
        for p in paths:
            try:
                lib = ctypes.CDLL(p)
            except OSError:
                continue
            for get, set_ in _NAMES:
                if hasattr(lib, get) and hasattr(lib, set_):
                    g, s = getattr(lib, get), getattr(lib, set_)
                    g.restype, s.restype, s.argtypes = ctypes.c_int, None, [ctypes.c_int]
                    _LIBS.append((g, s))
                    break
    return _LIBS


def current() -> int | None:
    """The threads numpy's OpenBLAS runs a GEMM on now (the most of any loaded copy); None where
    none was found (another BLAS: unknown).

    >>> with one_thread():
    ...     current() in (1, None)
    True
    """
    libs = _found()
    return max(g() for g, _ in libs) if libs else None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Inside: numpy's OpenBLAS runs on one thread; on leaving, each library's own count is
    restored (also on an exception). Nested uses are cheap (two C calls per library).

    Returns:
        a context manager.
    """
    libs = _found()
    before = [g() for g, _ in libs]
    try:
        for (_, s), n in zip(libs, before):
            if n != 1:
                s(1)
        yield
    finally:
        for (_, s), n in zip(libs, before):
            if n != 1:
                s(n)
