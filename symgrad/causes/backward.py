"""Bugs of a hand-written backward, named from the failing block's entries as data.

A derivative that is wrong while the loss value agrees (the first split's "derivative wrong")
often has a recognisable shape across the entries of the failing block (one parameter or
input, every compared sample): the backend's gradient is nonzero where the exact derivative is
exactly 0 (a **leak** into entries the output does not depend on: a clamp of a mask in the
backward only), exactly 0 over the whole block where the exact derivative is not (**no
gradient reaches** it: a ``.detach()``, ``.data``, a backward returning None for it), or off by
float32's rounding in a float64 run (**float32 arithmetic inside the backward**: named as
likely, and only with evidence - the values are float32 numbers, or their relative errors
scatter in sign and size within float32's rounding, where a wrong constant factor is one
number). Each detector reads ``Entries`` (``block_entries``: views of the comparison's arrays)
and returns the cause's name with its data, or None; the table is ``BACKWARD``.

>>> import numpy as np
>>> from .kinds import Context
>>> e = Entries("x", np.array([[0.0, 2.0]]), np.array([[True, False]]),
...             np.array([[1e-7, 2.0]]), np.array([[True, False]]), 0, 0)
>>> class F: kind, backend, output, got, expected = "mismatch", "torch_fn", "d/dx[0]", 1e-7, 0.0
>>> named(F, Context(block=e)).name
'gradient leaks into entries the output does not depend on (exact 0 at 1 of 1 failing entries)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..compare import MISMATCH
from .kinds import Cause, Context, Entries, as_user_code

BLOCK_UP_TO = 4_000_000  # samples x entries of one block read for these detectors (GPT-2's
#                          embedding at 38M entries a sample is not: its failures keep the split)
U32 = 2.0 ** -24  # float32's unit roundoff
F32_SPREAD = 64 * U32  # the relative errors a few float32 roundings can leave (3.8e-6)
F32_SHARE = 0.9  # the share of failing entries whose got must be float32 numbers (evidence A)
F32_SCATTERED = 4  # at least this many failing entries for the scatter evidence (B)


def block_entries(comp, row: int, column: int,
                  blocks: list[tuple[str, int, int]]) -> Entries | None:
    """The failing block's entries over every compared sample, as views of ``comp``'s arrays.

    Arguments:
        comp: the backend's ``symgrad.compare.Comparison`` (status, got, expected, exact_lo:
            shape (samples, 1 + K)).
        row: the failure's row in those arrays; column: its column (-1: unknown).
        blocks: (name, first column, end column) of each parameter block.
    Returns:
        ``Entries``, or None where the column is unknown, the comparison was reduced (its
        entries no longer kept) or the block is larger than ``BLOCK_UP_TO`` entries.

    >>> from types import SimpleNamespace as S
    >>> c = S(status=np.array([[0, 2]]), got=np.array([[1.0, 0.0]]),
    ...       expected=np.array([[1.0, 3.0]]), exact_lo=None)
    >>> block_entries(c, 0, 1, [("s", 1, 2)]).failing
    array([[ True]])
    """
    found = [(name, a, b) for name, a, b in blocks if a <= column < b]
    got, status = getattr(comp, "got", None), comp.status
    if (not found or got is None or np.ndim(got) != 2 or got.shape != status.shape
            or comp.expected.shape != status.shape):
        return None
    name, a, b = found[0]
    if status.shape[0] * (b - a) > BLOCK_UP_TO:
        return None
    hi = np.asarray(comp.expected[:, a:b], np.float64)
    lo = comp.exact_lo
    zero = (hi == 0) & (True if lo is None or np.shape(lo) != status.shape else lo[:, a:b] == 0)
    return Entries(name, hi, zero, np.asarray(got[:, a:b], np.float64),
                   status[:, a:b] == MISMATCH, row, column - a)


def _leak(ctx: Context, failure, rel: float) -> str | None:
    """This entry's exact derivative is exactly 0 (every term of its bound is 0: the output
    does not depend on the entry here) and the backend's is not."""
    e = ctx.block
    if not (e.exact_zero[e.row, e.column] and failure.got != 0 and np.isfinite(failure.got)):
        return None
    leaked = int((e.failing & e.exact_zero & (e.got != 0)).sum())
    return (f"gradient leaks into entries the output does not depend on (exact 0 at {leaked} "
            f"of {int(e.failing.sum())} failing entries)")


def _detached(ctx: Context, failure, rel: float) -> str | None:
    """The backend's gradient is exactly 0 at every entry of the block at every compared
    sample, the exact one is not at this entry."""
    e = ctx.block
    if failure.got != 0 or failure.expected == 0 or not (e.got == 0).all():
        return None
    return (f"no gradient reaches {e.name}: detached or not returned by the backward (0.0 at "
            f"all {e.got.size} entries, {len(e.got)} samples; exact nonzero at "
            f"{int((~e.exact_zero).sum())})")


def _float32(ctx: Context, failure, rel: float) -> str | None:
    """A float64 run whose failing entries of the block all err by float32-sized relative
    errors (<= ``F32_SPREAD``), with evidence of float32 rounding: the values got are float32
    numbers (``F32_SHARE`` of them), or the relative errors scatter - both signs and sizes a
    factor 2 apart over ``F32_SCATTERED`` entries or more (a constant factor is one number)."""
    e = ctx.block
    if ctx.dtype != "float64" or not F32_SPREAD >= rel > 0:
        return None
    pick = e.failing & (e.expected != 0) & np.isfinite(e.got)
    hi, got = e.expected[pick], e.got[pick]
    r = (got - hi) / np.abs(hi)
    if r.size == 0 or np.abs(r).max() > F32_SPREAD:
        return None
    size = f"relative errors {np.abs(r).min():.2g}..{np.abs(r).max():.2g} at {r.size} entries"
    with np.errstate(over="ignore"):
        exact32 = int((got.astype(np.float32).astype(np.float64) == got).sum())
    if exact32 >= F32_SHARE * r.size:
        return (f"float32 arithmetic inside the float64 backward, likely ({size}; got is a "
                f"float32 number at {exact32} of {r.size})")
    a = np.abs(r)
    if r.size >= F32_SCATTERED and (r > 0).any() and (r < 0).any() and a.max() >= 2 * a.min():
        return (f"float32 arithmetic inside the float64 backward, likely ({size}, of both "
                f"signs: float32 rounding's size and scatter; a constant slightly off in one "
                f"term of the backward scatters alike, e.g. (1 - t)(1 + t)(1 + 1e-9))")
    return None


@dataclass(frozen=True)
class Detector:
    """A backward bug: its class, explanation, and the detector naming it (None: not it)."""

    klass: str
    explanation: str
    applies: Callable[[Context, object, float], str | None]  # (context, failure, rel. error)


BACKWARD = (
    Detector("derivative wrong", "the backend's gradient is nonzero at entries whose exact "
             "derivative is exactly 0 (every term of the chain rule there is 0: the output "
             "does not depend on them at this point, e.g. masked rows): the backward "
             "computes something the forward does not (a clamp or eps in the backward only)",
             _leak),
    Detector("derivative wrong", "the backend's gradient of this block is exactly 0 at every "
             "entry and sample while the exact one is not: the block is cut off from the "
             "graph (.detach(), .data, torch.no_grad) or the backward returns None or 0 for it",
             _detached),
    Detector("derivative wrong", "the errors are the size of float32's rounding in a float64 "
             "run, with the evidence named: a .float() (or a float32 constant or buffer) inside "
             "the backward; compute it in the input's dtype", _float32),
)


def named(failure, ctx: Context) -> Cause | None:
    """The first backward bug (``BACKWARD``) that names a first-order gradient failure of the
    user's code, from the failing block's entries (``ctx.block``); None if none does.

    Arguments:
        failure: a ``symgrad.result.Failure`` classed "derivative wrong" (the value agrees).
        ctx: the context; without ``block`` nothing is named.
    Returns:
        The ``Cause``, its name carrying the detector's data.
    """
    if (ctx.block is None or ctx.order != 1 or failure.kind != "mismatch"
            or as_user_code(failure.backend) != "torch_fn"
            or not failure.output.startswith("d/d")):
        return None
    rel = abs(failure.got - failure.expected) / max(abs(failure.expected), 1e-300)
    for d in BACKWARD:
        name = d.applies(ctx, failure, rel)
        if name:
            return Cause(d.klass, name, d.explanation)
    return None
