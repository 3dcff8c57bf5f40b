"""One failure's root cause, from data alone: its kind, then the catalogue, then the split.

>>> from .kinds import Context
>>> class F: kind, backend, output, got, expected = "mismatch", "torch", "d/dw", 0.5, 1.0
>>> classify_failure(F, Context(), has_branch=False).name
'real derivative error'
"""

from __future__ import annotations

from .backward import named
from .catalogue import CATALOGUE
from .kinds import (DERIVATIVE_WRONG, SECOND_DERIVATIVE_WRONG, Cause, Context, as_user_code,
                    by_kind, function_differs, refine)


def classify_failure(failure, ctx: Context, *, has_branch: bool,
                     guard_zero: str | None = None) -> Cause:
    """The root cause of one failure of any program (scalar steps or tensor nodes), from data
    alone: the catalogue's entries that explain a NaN or inf (a non-finite failure; after a
    guard constant of the model's own), the kind (``by_kind``), then the catalogue of torch
    behaviours (``CATALOGUE``, read from ``ctx``), then the first split (``first_split``).

    Arguments:
        failure: a ``symgrad.result.Failure``.
        ctx: what the pipeline knows about the failing sample.
        has_branch: the program has a branch (Piecewise, Max, Min: a where-trap is possible).
        guard_zero: a constant of the program that rounds to 0 in the dtype, as text.
    Returns:
        The ``Cause``; its explanation ends with the catalogue entry's detail, if one applied.
    """
    value_finite = failure.output != "value" and ctx.value_status != "non-finite"
    rel = abs(failure.got - failure.expected) / max(abs(failure.expected), 1e-300)
    if failure.kind == "non-finite" and guard_zero is None:  # a catalogued NaN first
        found = _catalogued(failure, ctx, rel, nonfinite=True)
        if found is not None:
            return found
    cause = by_kind(failure.kind, failure.backend, has_branch, failure.got, failure.expected,
                    value_finite=value_finite, guard_zero=guard_zero)
    if cause is not None:
        return cause
    return _catalogued(failure, ctx, rel, nonfinite=False) or first_split(failure, ctx)


def _catalogued(failure, ctx: Context, rel: float, *, nonfinite: bool) -> Cause | None:
    """The first catalogue entry (of those that explain a NaN or inf gradient, or of the others)
    that applies, its detail in parentheses; None if none does."""
    for e in CATALOGUE:
        if (e.nonfinite == nonfinite and as_user_code(failure.backend) in e.backends
                and ctx.order in e.orders):
            detail = e.applies(ctx, failure, rel)
            if detail:
                return Cause(e.cause.klass, e.cause.name, f"{e.cause.explanation} ({detail})")
    return None


def first_split(failure, ctx: Context) -> Cause:
    """Function differs (the loss value of the same backend and sample fails, or a departure
    search located where the forward departs) versus derivative wrong (it agrees); a
    derivative wrong in a way a backward's own bug leaves is named (``backward.BACKWARD``)."""
    value_failed = ctx.value_status in ("mismatch", "non-finite", "systematic")
    if failure.output == "value" or value_failed or ctx.departure or ctx.random:
        return function_differs(ctx, failure.output)
    bug = named(failure, ctx)
    if bug is not None:
        return bug
    if ctx.forward_agrees:
        return refine(DERIVATIVE_WRONG.klass + ": " + DERIVATIVE_WRONG.name, ctx, failure.output)
    return SECOND_DERIVATIVE_WRONG if ctx.order == 2 else DERIVATIVE_WRONG
