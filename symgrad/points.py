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

from typing import Callable

import numpy as np

from .domains import Bernoulli, Choice, LogUniform, Uniform
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


def _entry(v: np.ndarray, bad: np.ndarray) -> str:
    """Where the first offending entry sits, in words (nothing when there is one entry)."""
    if v.size <= 1:
        return ""
    i = np.argwhere(bad)[0]
    return f" (sample {int(i[0])}" + (f", entry {[int(j) for j in i[1:]]})" if len(i) > 1 else ")")


def _allowed(domain) -> tuple[Callable[[np.ndarray], np.ndarray], str] | None:
    """(mask of v's allowed entries as a function, the allowed values in words) of a domain
    that restricts its values; None for an unbounded one (Normal)."""
    if isinstance(domain, Choice):
        values = np.asarray(domain.values)
        return (lambda v: np.isin(v, values),
                "one of " + ", ".join(f"{x:g}" for x in domain.values))
    if isinstance(domain, Bernoulli):
        return (lambda v: (v == 0) | (v == 1)), "0 or 1"
    if isinstance(domain, (Uniform, LogUniform)):
        low, high = float(domain.low), float(domain.high)
        return (lambda v: (v >= low) & (v <= high)), f"values in [{low:g}, {high:g}]"
    return None


def check_domain(block, v: np.ndarray, what: str) -> None:
    """A value outside its block's domain is an error naming the block, the entry and the
    allowed values: an Integers input takes whole numbers in its range (never a silent
    truncation), a Choice one of its values, a Bernoulli 0 or 1, a Uniform / LogUniform a value
    in its closed range; a Normal anything.

    Arguments:
        block: the block (``.name``, ``.domain``).
        v: its values as float64, (N, *block shape) (or the block's shape).
        what: the argument's name in messages.
    Raises:
        SymgradError: the first offending entry, in one line.
    """
    domain = block.domain
    if domain.integer:
        nonint = ~np.isfinite(v) | (v != np.round(v))
        if nonint.any():
            shown = float(v[nonint].ravel()[0])
            raise SymgradError(f"{what}: input {block.name!r} is {domain!r} but got the "
                               f"non-integer value {shown!r}; give whole numbers"
                               + _entry(v, nonint))
        low, high = getattr(domain, "low", None), getattr(domain, "high", None)
        if low is not None and high is not None and v.size:
            out = (v < int(low)) | (v > int(high))
            if out.any():
                raise SymgradError(f"{what}: input {block.name!r} is {domain!r} but got "
                                   f"{float(v[out].ravel()[0])!r}; give ids in "
                                   f"{int(low)}..{int(high)}" + _entry(v, out))
        return
    rule = _allowed(domain)
    if rule is None or not v.size:
        return
    ok, words = rule
    with np.errstate(invalid="ignore"):
        bad = ~ok(v)
    if bad.any():
        raise SymgradError(f"{what}: input {block.name!r} is {domain!r} but got "
                           f"{float(v[bad].ravel()[0])!r}; give {words}" + _entry(v, bad))


check_integers = check_domain  # the name the pipelines import (one validation for every domain)


def check_finite(block, v: np.ndarray, what: str, *, kind: str | None = None,
                 name: str | None = None) -> None:
    """A NaN anywhere, or an infinite parameter, is an error naming the block and the entry:
    the loss and its gradient are undefined there, so a verdict could only read "domain" (the
    model undefined), never say whether the gradient is right. An input may be infinite (an
    additive -inf mask).

    Arguments:
        block: the block (``.name``; ``.is_param`` on a tensor block, parameters of a plain
            model are tensor blocks too).
        v: its values as float64, (N, *block shape) (or the block's shape).
        what: the argument's name in messages.
        kind: what the block is, in messages (default "parameter" or "input").
        name: its name in messages (default ``block.name``).
    Raises:
        SymgradError: the first offending entry, in one line.

    >>> from types import SimpleNamespace as B
    >>> check_finite(B(name="w", is_param=True), np.array([[1.0], [np.inf]]), "at")
    Traceback (most recent call last):
    ...
    symgrad.errors.SymgradError: at: parameter 'w' is inf (sample 1, entry [0]); give finite numbers: the loss and its gradient are undefined there
    """
    param = bool(getattr(block, "is_param", False))
    bad = ~np.isfinite(v) if param else np.isnan(v)
    if bad.any():
        kind = kind or ("parameter" if param else "input")
        raise SymgradError(f"{what}: {kind} {name or block.name!r} is "
                           f"{float(v[bad].ravel()[0])!r}" + _entry(v, bad)
                           + "; give finite numbers: the loss and its gradient are undefined "
                           "there")


def one_point(model, point: dict, what: str) -> dict[str, np.ndarray]:
    """One point for ``exact_at`` / ``explain`` (scalar or tensor model), checked: by name (or
    symbol), every block given, each of its block's shape, whole numbers for an Integers input,
    no NaN and no infinite parameter (``check_finite``).

    Arguments:
        model: the model (its ``blocks``: ``.name``, ``.shape``, ``.domain``, in order).
        point: block name (or symbol) -> a number, a decimal string or a nested list.
        what: the argument's name in messages (``"exact_at"``).
    Returns:
        Block name -> object array of the block's shape (the values as given, in block order).
    """
    given = by_name(model, point, what, complete=True)
    out = {}
    for b in model.blocks:
        v = np.asarray(given[b.name], dtype=object)
        if b.domain.integer and not isinstance(v.ravel()[0] if v.size else 0, str):
            try:
                floats = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise SymgradError(f"{what}: {b.name!r} must be numbers, got {given[b.name]!r}"
                                   ) from None
            check_domain(b, floats, what)
        if v.shape != tuple(b.shape):
            raise SymgradError(f"{what}: {b.name!r} has shape {tuple(b.shape)}, got {v.shape}")
        try:  # a decimal string is kept as given; "nan" and "inf" are refused as the floats are
            floats = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            floats = None
        if floats is not None:
            check_finite(b, floats, what)
        out[b.name] = v
    return out


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
    values, n, first = {}, None, None
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
        check_domain(b, v, what)
        check_finite(b, v, what)
        if v.shape[1:] != tuple(b.shape):
            many = "(N, " + "".join(f"{d}, " for d in b.shape).rstrip(" ,") + ")"
            raise SymgradError(f"{what}: {b.name!r} must have its block's shape {tuple(b.shape)} "
                               f"for one sample or {many.replace(', )', ',)')} for N samples; "
                               f"got shape {np.shape(at[b.name])}")
        if n is not None and v.shape[0] != n:
            raise SymgradError(f"{what}: {b.name!r} has {v.shape[0]} sample(s) but {first!r} "
                               f"has {n}; give every block the same number of samples")
        n, first = (v.shape[0], b.name) if n is None else (n, first)
        values[b.name] = v
    return values
