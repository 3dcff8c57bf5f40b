"""Compiled elementwise kernels: numba's ``njit`` with symgrad's settings, in one place.

numpy makes one pass over memory per operation, and at GPT-2's scale most of a verify's time
outside its GEMMs goes to such passes (the compare's per-entry measures, the bound's elementwise
steps, the double-double sums). A loop compiled by numba (LLVM) fuses a chain of elementwise steps
into one pass over the entries, which numpy cannot; numba is a well-kept library, so no C of our
own. The settings, the same for every kernel:

- ``fastmath=False``: IEEE arithmetic as numpy does it (no FMA contraction, no reassociation, NaN
  and inf honoured), so a kernel of + - * /, sqrt, comparisons, abs and min/max gives the bits of
  the numpy expression it replaces. Transcendental functions (exp, log, ...) are libm's in numba
  and numpy's own SIMD code in numpy: they may differ in the last bit, so keep those in numpy;
- ``cache=True``: compiled once per machine, kept in the module's ``__pycache__`` (or
  ``NUMBA_CACHE_DIR``);
- ``nogil=True``: the pool's threads run kernels side by side;
- ``error_model="numpy"``: a division by zero gives inf or NaN, as in numpy, not an exception.

Every kernel is checked bit for bit against the numpy expression it replaces in its module's tests
(NaN, inf, signed zeros and subnormals included).

>>> import numpy as np
>>> from symgrad.jit import kernel
>>> def _halves(a, out):
...     for i in range(a.size):
...         out[i] = a[i] * 0.5
>>> halves = kernel(cache=False)(_halves)  # a doctest has no file to cache in
>>> out = np.empty(3)
>>> halves(np.array([1.0, -3.0, np.inf]), out)
>>> out
array([ 0.5, -1.5,  inf])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def kernel(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """numba's ``njit`` with symgrad's settings (above); ``options`` override them.

    Arguments:
        fn: the Python function to compile (as a bare decorator, ``@kernel``).
        options: numba ``njit`` options that replace the defaults (``cache=False`` where there is no
            file to cache in).

    Returns:
        the compiled dispatcher, or (without ``fn``) a decorator that makes one.

    >>> import numpy as np
    >>> kernel(cache=False)(lambda a: a.size)(np.zeros(4))
    4
    """
    settings = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy", **options}
    if fn is None:
        return lambda f: numba.njit(**settings)(f)
    return numba.njit(**settings)(fn)
