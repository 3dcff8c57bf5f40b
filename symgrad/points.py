"""One reading of a point given by the user (``at=`` of verify, explain and exact_at): keys are
block names or the blocks' own objects (sympy symbols, tensor leaves), every one checked - the
same validation for scalar and tensor models (``given_samples``: every block given, numbers,
whole numbers for an Integers input, one shape), each error one line, before anything runs.
Rounding to the run's dtype stays with the caller (a tensor model keeps integer inputs int64).

>>> import numpy as np
>>> from types import SimpleNamespace as B
>>> from symgrad.domains import Integers, Normal
>>> m = B(blocks=[B(name="w", shape=(2,), domain=Normal()),
...               B(name="k", shape=(), domain=Integers(0, 3))])
>>> v = given_samples(m, {"w": [1.0, 2.0], "k": 2}, "at")
>>> v["w"].shape, v["k"].tolist()
((1, 2), [2.0])
>>> given_samples(m, {"w": [1.0, 2.0], "k": 2.5}, "at")
Traceback (most recent call last):
...
symgrad.errors.SymgradError: at: input 'k' is Integers(low=0, high=3) but got the non-integer value 2.5; give whole numbers
"""

from __future__ import annotations

import numpy as np

from .errors import SymgradError


def by_name(model, given: dict, what: str, *, complete: bool = False) -> dict:
    """Keys of ``at=`` / a point as block names: strings, or the blocks' sympy symbols.

    Arguments:
        model: the model whose ``blocks`` the keys name.
        given: the user's dict, block name or symbol -> values.
        what: how the error names the argument (``"at"``, ``"exact_at"``).
        complete: every block must have a value.
    Returns:
        A new dict, block name -> values.
    Raises:
        SymgradError: ``given`` is no dict, a key is neither a name nor a symbol, or names no
            block, or (``complete``) a block has none (the message lists the blocks).

    >>> import sympy as sp
    >>> from symgrad import zoo
    >>> sorted(by_name(zoo.get("neuron"), {sp.Symbol("w"): 1, "x": 2, "b": 0, "y": 1}, "at"))
    ['b', 'w', 'x', 'y']
    """
    if not isinstance(given, dict):
        raise SymgradError(f"{what} must be a dict of block name (or symbol) -> values, got "
                           f"{type(given).__name__}")
    out = {}
    for k, v in given.items():
        name = getattr(k, "name", None) if not isinstance(k, str) else k
        if not isinstance(name, str):
            raise SymgradError(f"{what}: key {k!r} is neither a block name nor a symbol; "
                               f"blocks: {', '.join(b.name for b in model.blocks)}")
        out[name] = v
    known = {b.name for b in model.blocks}
    unknown, missing = sorted(set(out) - known), sorted(known - set(out))
    if unknown:  # a typo names itself, and the block it probably meant
        raise SymgradError(f"{what}: unknown name(s) {unknown}"
                           + (f"; missing {missing}" if missing else "")
                           + f"; the blocks are {', '.join(b.name for b in model.blocks)}")
    if complete and missing:
        raise SymgradError(f"{what}: no value for {missing[0]!r}; give every parameter and "
                           f"input: {', '.join(b.name for b in model.blocks)}")
    return out


def check_integers(block, v: np.ndarray, what: str) -> None:
    """A non-integer value for an Integers input is an error, never a silent truncation.

    Arguments:
        block: the block (``.name``, ``.domain``).
        v: its values as float64.
        what: the argument's name in messages.
    """
    if block.domain.integer:
        bad = v[np.isfinite(v) & (v != np.round(v))] if v.size else v
        if bad.size or not np.isfinite(v).all():
            shown = float(bad.ravel()[0] if bad.size else v[~np.isfinite(v)].ravel()[0])
            raise SymgradError(f"{what}: input {block.name!r} is {block.domain!r} but got the "
                               f"non-integer value {shown!r}; give whole numbers")
        low, high = getattr(block.domain, "low", None), getattr(block.domain, "high", None)
        if low is not None and high is not None and v.size:
            out = v[(v < int(low)) | (v > int(high))]
            if out.size:
                raise SymgradError(f"{what}: input {block.name!r} is {block.domain!r} but got "
                                   f"{float(out.ravel()[0])!r}; give ids in {int(low)}..{int(high)}")


def given_samples(model, at: dict, what: str = "at") -> dict[str, np.ndarray]:
    """Explicit samples for every block of ``model`` (scalar or tensor), checked: by name (or
    symbol), every block given, numbers, whole numbers for an Integers input, shape
    (N, *block shape) with one N (or one sample's value, shape = the block's shape).

    Arguments:
        model: the model (its ``blocks``: ``.name``, ``.shape``, ``.domain``, in order).
        at: block name (or symbol) -> array.
        what: the argument's name in messages.
    Returns:
        Block name -> float64 array (N, *shape), not yet rounded to any dtype.
    """
    at = by_name(model, at, what)
    values, n = {}, None
    for b in model.blocks:
        if b.name not in at:
            raise SymgradError(f"{what}: no values for {b.name!r}; give every block: "
                               f"{', '.join(x.name for x in model.blocks)}")
        try:
            v = np.asarray(at[b.name], dtype=np.float64)
        except (TypeError, ValueError):
            raise SymgradError(f"{what}: {b.name!r} must be numbers, got {at[b.name]!r}") from None
        if v.shape == tuple(b.shape):  # one sample
            v = v[None]
        check_integers(b, v, what)
        if v.shape[1:] != tuple(b.shape) or (n is not None and v.shape[0] != n):
            shape = ", ".join(map(str, b.shape))
            raise SymgradError(f"{what}: {b.name!r} must have shape (N, {shape}) with the same "
                               f"N for every block; got {v.shape}")
        n = v.shape[0]
        values[b.name] = v
    return values
