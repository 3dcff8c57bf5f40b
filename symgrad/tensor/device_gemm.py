"""The bound's large float64 contractions (its |A||B| products, E and sigma terms, and the
float64 values its walk forms: ``tensor/operands.py``, ``tensor/bound.py``) as torch einsums
on a device, while a run's ``VerifyConfig.oracle_products`` names one (``using``, entered by
each phase of ``tensor/verify.py``); numpy's otherwise, and for small ones (below ``FROM``
multiply-adds the transfer costs more than the GEMM saves).

The same sums in another order: the products of non-negative terms differ from numpy's in
their last bits (each within K u of the exact sum either way, the rounding a bound of K
roundings already carries), so E and the allowances it gives differ from numpy's in their
last digits only.

Example:
    >>> import numpy as np
    >>> a, b = np.ones((2, 300, 300)), np.ones((2, 300, 300))
    >>> einsum("zij,zjk->zik", a, b) is None  # no device chosen: the caller's numpy
    True
    >>> with using("cpu"):
    ...     float(einsum("zij,zjk->zik", a, b)[1, 2, 3])
    300.0
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

FROM = 1 << 22  # multiply-adds from which a two-operand einsum runs on the device
_DEVICE: list = [None]  # the device of the run now (a plain global, not a ContextVar: the
#  bound's blocks run on ``symgrad.parallel``'s pool threads, which must see it too)


@contextlib.contextmanager
def using(products: str | None) -> Iterator[None]:
    """Within it, large two-operand contractions run on ``products`` (a torch device; "numpy"
    or None: on numpy). The previous setting is restored after."""
    before = _DEVICE[0]
    _DEVICE[0] = None if products in (None, "numpy") else products
    try:
        yield
    finally:
        _DEVICE[0] = before


def einsum(spec: str, *ops) -> np.ndarray | None:
    """``np.einsum(spec, *ops)`` as a float64 torch einsum on the chosen device, where one is
    chosen and the product is a large two-operand one with no broadcast axis; else None."""
    device = _DEVICE[0]
    if device is None or len(ops) != 2 or "..." in spec:
        return None
    ins = spec.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for sub, op in zip(ins, ops):
        shape = np.shape(op)
        if len(sub) != len(shape):
            return None
        for c, n in zip(sub, shape):
            if sizes.setdefault(c, n) != n:  # a broadcast (size-1) axis: numpy's
                return None
    if int(np.prod(list(sizes.values()), dtype=np.int64)) < FROM:
        return None
    dev = torch.device(device)
    return torch.einsum(spec, *(on(o, dev) for o in ops)).cpu().numpy()


def on(x: np.ndarray, dev: torch.device) -> torch.Tensor:
    """``x`` as a float64 tensor on ``dev`` (a read-only array copied: torch wants to own it)."""
    a = np.ascontiguousarray(x, dtype=np.float64)
    return torch.from_numpy(a if a.flags.writeable else a.copy()).to(dev)


def np_einsum(spec: str, *ops, **kw) -> np.ndarray:
    """``einsum`` on the device where it applies, else ``np.einsum(spec, *ops, **kw)``."""
    got = einsum(spec, *ops)
    return np.einsum(spec, *ops, **kw) if got is None else got
