"""The float64 rule check: the user's code, run in a narrower dtype, also run once in float64.

A backward rule can be wrong where the narrow dtype rounds the error away: SiLU's derivative
with its backward 1 for x > 20 is within 4e-8 of 1 there, under half a float32 ulp, so the
buggy float32 gradient *is* the correctly rounded exact value and no float32 number shows the
bug. Where the user's code re-runs in float64 (``symgrad.backends.float64``: a ``torch_fn``,
``sg.gradcheck``, an eager module path), it runs once more in float64 on the compared samples
and is compared against the same oracle (the exact values are the same points) with float64's
allowance (E is dtype-free: ``allowance(E, "float64", tol)``) and float64's rigorous enclosure
(``rigorous.tensor_enclosure``, lazy: computed only for rows beyond the fast allowance), at the
kinks by their sides. Its findings are a backend of their own, ``"<backend> in float64"``, and
only where they are proven: an entry fails only where the float64 run leaves float64's
enclosure, the oracle's certificate holds to float64's allowance (``tensor.doubt``), the row
took no limit, the narrow backend itself decided the entry (ok or precision loss) or left it
undecided within its allowance (bfloat16 cannot resolve SiLU's derivative above 20), and the
float64 run's value is within float64's allowance at every sample (a value that departs says
the code computes another function in float64, a constant chosen by dtype such as
``torch.finfo(x.dtype).eps``: no check then). Nothing
else of the check is reported: it adds failures, never an inconclusive entry, and drops out
where it finds nothing. Each finding says what it is: the backward rule is wrong, seen in
float64, while the narrow dtype's result rounds to (or within its allowance of) the exact value.

The float64 run is the run's one (``backends.float64.Float64Runs``): the confirmation's
re-run reads the same. What the check could see is recorded (``RuleCheck.seen``: the smallest
backward scale it proves, and whether the block test had the float64 re-run floor) for
``Result.resolution``.

The check is off with ``VerifyConfig(rule_check=False)`` (``sg.gradcheck(..., rule_check=False)``),
never runs above ``CERTIFY_UP_TO`` parameters (no enclosure there), nor where the code does not
compute in float64 (an inner ``.float()``: ``run64`` refuses it), nor for a plain model whose
oracle was checked against a stable rewrite only to the narrow dtype's allowance.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable

import numpy as np
import torch

from ..backends.float64 import Float64Runs
from ..compare import (INCONCLUSIVE, LOSS, MISMATCH, OK, SUSPECT, Comparison,
                       mark_singular)
from ..result import BackendRun, Failure
from ..rigorous import tensor_enclosure
from .comparing import compare_compact
from .doubt import mark_doubt
from .sides import rejudge

SUFFIX = " in float64"  # the rule check's backend: "torch_fn in float64", "module in float64"


class RuleCheck:
    """The float64 rule check of one run (module doc).

    Arguments:
        model: the tensor model; sub: the compared samples; cfg: the run's ``VerifyConfig``.
        torch_fn, extra: the user's code (``verify_tensor``'s).
        textbook: the textbook program (a user's code is allowed the union of enclosures).
        certificate: ``E0 -> OracleDoubt``, sample 0's certificate judged for float64.
        skip_rows: rows whose entries are limits (decided to the narrow allowance only).
        on: False where the run cannot hold the check (too large, a stable rewrite).
        enclosures: the run's lazy enclosures by (user code?, dtype), shared with its
            comparisons (``verify_tensor``): one float64 enclosure for every rule backend,
            its rows' balls walked once.
        runs64: the run's float64 runs of the user's code (``Float64Runs`` on ``sub``),
            shared with the confirmation's re-run: the code runs in float64 once.
    """

    def __init__(self, model, sub: dict, cfg, torch_fn: Callable | None, extra: dict,
                 textbook, certificate: Callable, skip_rows=(), *, on: bool = True,
                 enclosures: dict | None = None, runs64: Float64Runs | None = None) -> None:
        self.model, self.sub, self.cfg, self.textbook = model, sub, cfg, textbook
        self.runs64 = runs64 or Float64Runs(model.blocks, sub, device=cfg.device,
                                            torch_fn=torch_fn, extra=extra or {})
        self.enclosures = {} if enclosures is None else enclosures
        self.torch_fn, self.extra, self.certificate = torch_fn, extra or {}, certificate
        self.skip_rows = list(skip_rows)
        self.on = on and cfg.rule_check and cfg.dtype != "float64"
        self.dtypes: dict[str, str] = {}  # rule backend -> the narrow dtype it checked
        self.seen: dict[str, Seen] = {}  # backend -> what float64 could see on it (``Seen``)

    def __call__(self, name: str, dtype: str, comp: Comparison, hi, lo, Eb, kinks, *,
                 rerun: bool = False) -> tuple[str, BackendRun, Comparison] | None:
        """Backend ``name``'s rule check: None (nothing proven, or no float64 run), or
        (the rule backend's name, its run, its comparison). ``rerun``: the block test had
        the float64 re-run's lower floor on this backend (recorded in ``seen``)."""
        if rerun:
            self.seen.setdefault(name, Seen())["rerun_floor"] = self.cfg.tolerance.rerun_floor
        if not self.on or dtype == "float64" or lo is None:
            return None
        tol = self.cfg.tolerance
        got = self.runs64.get(name)  # None: no re-run, a narrowing, or float64 refused
        if got is None:  # nor can a float64 re-run decide the block test's lower floor
            self.seen.get(name, {}).pop("rerun_floor", None)
            return None
        seconds = self.runs64.seconds[name]
        rule = name + SUFFIX
        key = (self.textbook is not None, "float64")  # as verify_tensor keys a user's code
        if key not in self.enclosures:
            self.enclosures[key] = tensor_enclosure(self.model, self.sub, hi, lo, "float64",
                                                    tol.function_ulps, textbook=self.textbook)
        enclosure = self.enclosures[key]
        c = compare_compact(hi, lo, got, Eb, backend=rule, dtype="float64", tol=tol,
                            rigorous=enclosure)
        if kinks is not None:
            c = rejudge(c, kinks, hi, lo, got, Eb, tol, enclosure)
        c = mark_doubt(mark_singular(c, enclosure), self.certificate(np.asarray(Eb[0])))
        if np.isin(c.status[:, 0], (MISMATCH, SUSPECT)).any():  # the value departs: the code
            self.seen.setdefault(name, Seen())["rule_check_off"] = OFF_VALUE  # computes another
            return None  # function in float64 (a dtype's eps, finfo): no check (said: OFF_VALUE)
        judged = np.isin(comp.status, (OK, LOSS)) | _within(comp)  # entries it may prove
        judged[self.skip_rows] = False
        self.seen.setdefault(name, Seen())["rule_check"] = _Later(
            partial(_walk_scale, *_scale_bounds(c, judged), enclosure))  # walked when read
        proven = (c.status == MISMATCH) & judged
        if not proven.any():
            return None
        self.dtypes[rule] = dtype
        status = np.where(proven, MISMATCH, np.where(np.isin(c.status, (OK, LOSS)), c.status,
                                                     INCONCLUSIVE)).astype(c.status.dtype)
        reason = (f"the float64 rule check decides only what it proves; {name} in {dtype} "
                  "judges this entry")
        undecided = {int(r): reason for r in np.flatnonzero((status == INCONCLUSIVE).any(1))}
        run = BackendRun(rule, "float64", self.cfg.device, "loop, float64 rule check", seconds,
                         len(got))
        return rule, run, replace(c, status=status, undecided={**(c.undecided or {}),
                                                               **undecided},
                                  evidence=(_evidence(name, dtype, comp, proven),))

    def annotate(self, failures: list[Failure]) -> list[Failure]:
        """Each rule backend's failure saying what it is (module doc): in its note, and in its
        cause, which its one line keeps (``result_text.short_note`` keeps only "proven")."""
        def said(f: Failure) -> Failure:
            dtype = self.dtypes[f.backend]
            return replace(f, note=f"{_what(dtype)}; {f.note}" if f.note else _what(dtype),
                           cause=f"{f.cause + ' — ' if f.cause else ''}the backward rule, seen "
                                 f"in float64 ({dtype} rounds the error away here)")
        return [said(f) if f.backend in self.dtypes else f for f in failures]


OFF_VALUE = ("the float64 rule check did not run: your code's loss value in float64 departs "
             "from the exact one beyond float64's allowance (a constant or table computed in "
             "the run's dtype, finfo(dtype).eps, a cast), so its float64 gradient is of "
             "another function")


class _Later:
    """A value computed when first read (``Seen``)."""

    def __init__(self, compute: Callable[[], object]) -> None:
        self.compute = compute


class Seen(dict):
    """What the float64 rule check could see on one backend (``Result.resolution`` reads it):
    "rerun_floor", and "rule_check", the smallest backward scale it proves, whose rigorous
    radii are walked only when it is first read (a run whose resolution nobody reads pays no
    walk: 57 % of tiny_gpt's float32 verify), then kept; the same value either way (the
    enclosure's rows are the same balls walked alone or together). Pickled as a plain dict,
    every value read.

    >>> s = Seen(rerun_floor=2.0)
    >>> s["rule_check"] = _Later(lambda: 0.5)
    >>> s.get("rule_check"), "rule_check" in s, dict(s)
    (0.5, True, {'rerun_floor': 2.0, 'rule_check': 0.5})
    """

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, _Later):
            value = value.compute()
            super().__setitem__(key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]

    def __iter__(self):
        return iter(list(super().keys()))

    def __reduce__(self):
        return (dict, (dict(self.items()),))


def _scale_bounds(c: Comparison, judged: np.ndarray) -> tuple:
    """What ``_walk_scale`` reads of the rule check's comparison: each gradient entry's
    |exact|, float64 allowance, and whether it may resolve a scale."""
    exact, allowed = np.abs(c.expected[:, 1:]), np.asarray(c.allowed_abs)[:, 1:]
    kink = np.isfinite(c.kink_position[:, 1:]) if np.ndim(c.kink_position) == 2 else False
    use = (judged[:, 1:] & np.isin(c.status[:, 1:], (OK, LOSS, MISMATCH, SUSPECT)) & ~kink
           & np.isfinite(allowed) & (exact > 0) & np.isfinite(exact))
    return exact, allowed, use


def _walk_scale(exact: np.ndarray, allowed: np.ndarray, use: np.ndarray,
                enclosure) -> float | None:
    """The smallest backward scale s (got = (1 + s) x exact) the rule check proves on some
    gradient entry: an entry is proven where its float64 error exceeds both float64's
    allowance and the rigorous enclosure's radius (``compare.prove``), so s is the least
    max(allowance, radius) / |exact| over the entries it may prove (``use``: judged, not at a
    kink, nor in doubt or singular: inconclusive in the comparison; ``_scale_bounds``). The
    allowance alone bounds it from below, so the radii are walked only for the rows that could
    still hold the least (best first; cached: a row a proof asks for again costs nothing).
    None: no entry resolves one."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        low = np.where(use, allowed / exact, np.inf)  # each entry's least possible s
        best = np.inf
        for r in np.argsort(low.min(axis=1), kind="stable"):
            if low[r].min() >= best:  # no entry of this row (or a later one) can do better
                break
            radius = np.asarray(enclosure(np.array([r])), dtype=np.float64)[0, 1:]
            s = np.where(use[r] & np.isfinite(radius), np.maximum(allowed[r], radius), np.inf)
            best = min(best, float(np.min(s / exact[r])))
    return best if np.isfinite(best) else None


def _within(comp: Comparison) -> np.ndarray | bool:
    """The narrow run's undecided entries that are within its allowance (bfloat16 cannot
    resolve SiLU's derivative above 20 either way): the rule check may prove them wrong (an
    entry in doubt, singular or at a kink is not proven by the float64 comparison either:
    it is marked and judged there the same way). False where the ULPs are not kept."""
    ulps, allowed = comp.ulps, comp.allowed_ulps
    if comp.reduced or not isinstance(ulps, np.ndarray) or ulps.shape != comp.status.shape:
        return False
    with np.errstate(invalid="ignore"):
        return (comp.status == INCONCLUSIVE) & (ulps <= allowed)


def _what(dtype: str) -> str:
    return (f"the backward rule is wrong, seen in float64 (the same code run in float64 on "
            f"the same points); its {dtype} result is within {dtype}'s rounding of the exact "
            f"value here, which hides it")


def _evidence(name: str, dtype: str, comp: Comparison, proven: np.ndarray) -> str:
    """The rule check's one line: how many entries it proved wrong, and whether the narrow
    dtype's gradient there is the exact value correctly rounded (the SiLU case)."""
    exact = comp.expected[proven]
    tdt = getattr(torch, dtype)
    rounded = torch.as_tensor(exact).to(tdt).double().numpy()  # as the user's dtype rounds
    same = int((rounded == comp.got[proven]).sum())
    return (f"{name}: the backward rule is wrong, seen in float64: {int(proven.sum())} "
            f"entr(y/ies) proven wrong when the same code runs in float64; in {dtype} "
            + ("every one is the correctly rounded exact value (bit for bit)" if same ==
               proven.sum() else f"{same} are the correctly rounded exact value and every one"
               " is within its allowance")
            + f": {dtype} rounds the error away here")
