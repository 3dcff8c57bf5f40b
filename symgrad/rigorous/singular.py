"""A singular point reached by rounding: where correct code may compute NaN or inf.

The rigorous enclosure (``balls``) holds every value correct code can compute in a dtype. Where
the ball of an operation's *argument* holds that operation's singular point - 0 for a division,
a negative power (the derivative of a norm or a square root), a log; a domain boundary for a
sqrt, acos, ... - a correct computation may land on it: its rounded argument can be exactly
the singular point (triplet_margin_loss's x - y + 1e-6 at x = 0, y = 1e-6, which torch rounds
to exactly 0), and there the exact derivative is infinite or undefined. A NaN or inf from the
code under test at such an entry is then no evidence of a bug (``compare.singular``: the
entry is inconclusive, with the singular operation named), while a NaN or inf where every
argument ball stays clear of its singular points is still a failure.

**The walk.** The program is walked once more in the rounded balls of ``balls.Rounding``
(every operation widened by its own rounding in the dtype), with two changes:

- the dtype's range is not enforced: an intermediate beyond the largest finite number is held
  by ``arb`` as it is. An overflow is no singular point of the function: exp(w) / exp(w) at
  w = 1000 encloses 1 here, so float64's inf / inf = NaN stays a failure (the code could
  scale first);
  Nor below its smallest number: a value that underflows to 0 is held as it is, so a
  division by a square that underflows (addcdiv's z * z at z = 1e-30 in float32) stays a
  failure, as an overflow does (the code could scale first);
- where an operation's argument ball holds its singular point, the result is a NaN ball (it
  propagates to every entry that depends on it) and the operation is recorded - unless the
  ball is that point exactly (radius 0: no rounding behind it, so the exact computation
  lands there too and the exact derivative avoids it - a norm's sqrt at an exact zero vector
  under a clamp): correct code must avoid it as well, and a NaN there stays a failure.

An entry is *reached* when its ball comes out non-finite and the walk recorded at least one
singular operation (a NaN constant, a Piecewise's undefined branch, does not count). As with
the enclosure itself the balls may be wider than the set of computed values (ball arithmetic
forgets correlations): so "reached" is what the enclosure cannot exclude, never a pass.
The attribution is per walk, not per entry: a NaN ball that a walk's other NaN source made (a
NaN constant, a Piecewise's undefined branch taken by an undecided condition) is excused too
once that walk recorded a singular operation anywhere. Telling them apart needs each entry's
dependence on the recorded operations (a second, boolean walk over the same nodes); a walk in
which the singular operations return finite wide balls instead is no substitute (those balls
make later conditions undecided and later functions singular: NaN sources of its own).

>>> import numpy as np
>>> from flint import arb
>>> R = SingularRounding("float64", 4.0)
>>> R.ripow(arb("0 +/- 1e-30"), -1).is_finite(), R.events
(False, ['x**-1 at x in [-1e-30, 1e-30], which holds 0'])
>>> R.widen(arb(10) ** 400, R.u).is_finite()  # beyond float64's range: held, not singular
True
"""

from __future__ import annotations

import numpy as np
from flint import arb

from ..backends import arb as arb_backend
from .balls import UNIT, Rounding

MAX_EVENTS = 3  # singular operations named per walk


def _interval(b: arb) -> str:
    if not b.is_finite():
        return "a non-finite ball"
    lo, hi = float(b.lower()), float(b.upper())
    return f"[{lo:.3g}, {hi:.3g}]"


class SingularRounding(Rounding):
    """``balls.Rounding`` without the dtype's range, recording each operation whose finite
    argument ball holds its singular point (``events``, in words) and giving a NaN ball there.

    Arguments:
        dtype: the dtype whose rounding is modelled.
        function_ulps: the elementary functions' error (``Tolerance.function_ulps``).
    """

    watch = True
    finite_results = False  # which entries may come out non-finite: 0 * NaN spreads the NaN

    def __init__(self, dtype: str, function_ulps: float) -> None:
        super().__init__(dtype, function_ulps, strict=False)
        self.events: list[str] = []

    def _record(self, name: str, arg) -> None:
        arg = arb_backend._a(arg)
        if arg.rad() == 0:  # exactly at the point, no rounding behind it: the exact
            return          # computation lands there too, so correct code must avoid it
        point = "0" if 0 in arg else "its domain's boundary"
        event = f"{name} at x in {_interval(arg)}, which holds {point}"
        if len(self.events) < MAX_EVENTS and event not in self.events:
            self.events.append(event)

    def note(self, name: str, args: tuple, result) -> None:
        """Record each entry of ``result`` that is non-finite while its arguments are finite."""
        out = np.asarray(result, dtype=object).reshape(-1)
        parts = [np.broadcast_to(np.asarray(a, dtype=object), np.shape(result)).reshape(-1)
                 for a in args]
        for i, v in enumerate(out):
            if len(self.events) >= MAX_EVENTS:
                return
            if not arb_backend._a(v).is_finite() and all(
                    arb_backend._a(p[i]).is_finite() for p in parts):
                self._record(name, parts[0][i])

    def widen(self, r, rel: arb, scale=None) -> arb:
        r = arb_backend._a(r)
        if not r.is_finite():
            return arb.nan()
        mag = abs(r if scale is None else scale).upper()
        return r + rel * mag * UNIT  # no underflow term: the range is not enforced either way

    def _check(self, r) -> arb:
        r = arb_backend._a(r)
        return r if r.is_finite() else arb.nan()

    def rsqrt(self, x) -> arb:
        try:
            return super().rsqrt(x)
        except arb_backend.Imprecise:
            self._record("sqrt(x)", x)
            return arb.nan()

    def ripow(self, b, k: int) -> arb:
        b = arb_backend._a(b)
        try:
            r = super().ripow(b, k)
        except arb_backend.Imprecise:
            r = arb.nan()
        if k < 0 and not r.is_finite() and b.is_finite():
            self._record(f"x**{k}", b)
        return r

    def rdiv(self, a, b) -> arb:
        a, b = arb_backend._a(a), arb_backend._a(b)
        r = super().rdiv(a, b)
        if not r.is_finite() and a.is_finite() and b.is_finite():
            self._record("a division by x", b)
        return r


# symgrad.stable's rules (by name) as torch spells their stable forms, for a user's code
TORCH_FORMS = {"log-sum-exp": "torch.logsumexp", "softmax": "torch.softmax",
               "log-sigmoid": "F.logsigmoid(t)", "log-one-minus-sigmoid": "-F.softplus(t)",
               "softplus": "F.softplus", "sigmoid": "torch.sigmoid",
               "one-minus-sigmoid": "torch.sigmoid(-t)", "expm1": "torch.expm1",
               "log1p": "torch.log1p"}
BCE_RULES = ("log-sigmoid", "log-one-minus-sigmoid")  # a log of a sigmoid: a BCE's terms


def reason(events: list[str], dtype: str, written_only: tuple[str, ...] = ()) -> str:
    """One line: the singular operations the rounded enclosure reached.

    Arguments:
        events: the singular operations recorded (``SingularRounding.events``).
        dtype: the rounding model's dtype.
        written_only: where only the formula as written reached them and the stable form
            symgrad runs (its ``symgrad.stable`` rules, by name) stays clear: those rules.
    Returns:
        The line.

    >>> reason(["x**-1 at x in [-1, 1], which holds 0"], "float32")[:48]
    'a singular point within rounding: x**-1 at x in '
    >>> reason(["log(x) at x in [-1, 1], which holds 0"], "float64",
    ...        ("log-one-minus-sigmoid",)).split("; ")[-1][:60]
    'the formula as written reaches it by rounding, the stable fo'
    """
    line = (f"a singular point within rounding: {'; '.join(events)} (the ball of every value "
            f"correct {dtype} code computes there); rounding can land on it, where the exact "
            f"derivative is infinite or undefined, so a NaN or inf here is no evidence of a "
            f"bug, nor of correctness")
    if not written_only:
        return line
    forms = ", ".join(f"{r} as {TORCH_FORMS[r]}" if r in TORCH_FORMS else r
                      for r in written_only)
    bce = (", a BCE of a sigmoid as F.binary_cross_entropy_with_logits"
           if set(BCE_RULES) & set(written_only) else "")
    return (f"{line}; the formula as written reaches it by rounding, the stable form symgrad "
            f"runs does not: code written in that form ({forms}{bce}) avoids it")
