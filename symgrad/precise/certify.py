"""Certification of double-double results by arb balls, and precision escalation for the balls.

DD is not rigorous by itself. Given the DD values v and ARB balls B of the same quantities, the
error of v is bounded rigorously by e = sup |v - B| (ball arithmetic on the exact value of v):
whatever the exact value x in B, |v - x| <= e. An entry is *certified* when e is within the
claimed DD accuracy, e <= rel*|v| + abs; non-finite entries are certified only when the ball
agrees (both NaN, or an infinity and a ball wholly beyond float64's largest value on its side:
the exact value overflows float64 as the DD value did). `escalate` raises ARB's precision until every radius is
below a fraction of its entry's allowance (or a cap), and says how many bits that took.

Example:
    >>> import numpy as np, sympy as sp
    >>> from symgrad.precise import ARB_OPS, DD_OPS
    >>> x = sp.Symbol("x"); xs = np.array([0.5, 3.0])
    >>> dd = DD_OPS.map(sp.tanh(x), {x: xs})
    >>> run = escalate(lambda ops: ops.map(sp.tanh(x), {x: xs}), 1e-30)
    >>> certify(*DD_OPS.to_float64(dd), run.balls).ok
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from flint import arb, ctx

from ..errors import SymgradError
from .arb import ARB_OPS, ArbOps
from .rational import EXACT_PREC, arb_fraction, overflow_sign, round_up
from .underflow import in_zone, nearest

@dataclass(frozen=True)
class CertifyConfig:
    rel: float = 1e-28  # claimed relative accuracy of a DD result (ddmath documents <= 1e-29)
    abs: float = 0.0  # plus an absolute allowance (e.g. for entries that cancel to ~0)


@dataclass(frozen=True)
class Certificate:
    """Outcome of `certify`: per-entry rigorous error bounds and the verdict."""

    error_bound: np.ndarray  # sup |v - ball| per entry, rounded up (inf where not finite)
    certified: np.ndarray  # bool per entry
    n: int
    n_certified: int
    max_rel_error: float  # max over finite, nonzero entries of error_bound / |v|
    worst: tuple | None  # index of the worst uncertified entry (or of the max relative error)
    failures: list = field(default_factory=list)  # "index: DD v, ball [m +/- r], bound e > allowance a"
    radius: np.ndarray | None = None  # each ball's radius, rounded up (inf: not finite)
    value: np.ndarray | None = None  # the DD high parts certified (what the bounds refer to)
    nearest: np.ndarray | None = None  # per entry in the DD's underflow zone (0 < |v| < 2^-969):
    #   v is the ball rounded to nearest on the 2^-1074 grid (``underflow.nearest``: exact, where
    #   error_bound, a float64, resolves a whole spacing only); True elsewhere
    narrow: np.ndarray | None = None  # ... and the ball narrow enough to tell; True elsewhere

    @property
    def ok(self) -> bool:
        return self.n_certified == self.n

    def summary(self) -> str:
        head = f"{self.n_certified}/{self.n} DD entries certified; max certified relative error {self.max_rel_error:.3g}"
        return head if self.ok else head + "; first failures: " + "; ".join(self.failures[:3])


def certify(hi: np.ndarray, lo: np.ndarray, balls: np.ndarray, *, config: CertifyConfig = CertifyConfig(),
            abs_allowance: np.ndarray | None = None) -> Certificate:
    """Certify DD values (hi + lo) against ARB balls of the same quantities.

    Arguments:
        hi, lo: the DD result (DD_OPS.to_float64), any shape.
        balls: object array of flint.arb of the same shape (an ARB_OPS result).
        config: the claimed accuracy (relative and absolute).
        abs_allowance: optional per-entry absolute allowance added to the claim (e.g. 1e-30 |A||B|
            for a product, whose entries may cancel far below their terms).
    Returns:
        a Certificate with rigorous per-entry error bounds of the DD values.
    """
    hi = np.asarray(hi, dtype=float)
    lo = np.broadcast_to(np.asarray(lo, dtype=float), hi.shape)
    balls = np.asarray(balls, dtype=object)
    if balls.shape != hi.shape:
        raise SymgradError(f"certify: DD shape {hi.shape} and ball shape {balls.shape} differ; "
                           f"evaluate the same quantities")
    extra = np.zeros(hi.shape) if abs_allowance is None else np.broadcast_to(np.asarray(abs_allowance, float), hi.shape)
    bound, radius = np.empty(hi.shape), np.full(hi.shape, np.inf)
    near, narrow = np.ones(hi.shape, bool), np.ones(hi.shape, bool)
    zone = in_zone(hi)
    ok = np.zeros(hi.shape, dtype=bool)
    failures: list[str] = []
    max_rel, worst = 0.0, None
    with ctx.workprec(EXACT_PREC):
        for idx in np.ndindex(hi.shape):
            h, l, b = float(hi[idx]), float(lo[idx]), balls[idx]
            if b.is_finite():
                radius[idx] = round_up(arb_fraction(b.rad()))
            if not np.isfinite(h):
                agree = (np.isnan(h) and b.is_nan()) or (np.isinf(h) and not b.is_nan()
                                                        and overflow_sign(b) == np.sign(h))
                bound[idx] = 0.0 if agree else np.inf
                ok[idx] = agree
                if not agree:
                    failures.append(f"{idx}: DD {h} but ball {b.str(10, radius=True)}")
                continue
            if not b.is_finite():
                bound[idx] = np.inf
                failures.append(f"{idx}: DD {h} but ball {b.str(10, radius=True)}")
                continue
            e = round_up(arb_fraction((arb(h) + arb(l) - b).abs_upper()))
            if zone[idx]:
                near[idx], narrow[idx] = nearest(h, l, b)
            bound[idx] = e
            v = abs(h)
            allow = config.rel * v + config.abs + float(extra[idx])
            ok[idx] = e <= allow
            if v > 0 and e / v > max_rel:
                max_rel, worst = e / v, idx
            if not ok[idx]:
                failures.append(f"{idx}: DD {h!r} + {l!r}, ball mid {b.mid().str(40, radius=False)} "
                                f"radius {round_up(arb_fraction(b.rad())):.3g}, error bound {e:.3g} > allowance {allow:.3g}")
    bad = [i for i in np.ndindex(hi.shape) if not ok[i]]
    return Certificate(bound, ok, int(hi.size), int(ok.sum()), max_rel, bad[0] if bad else worst, failures,
                       radius, hi, near, narrow)


@dataclass(frozen=True)
class Escalation:
    balls: np.ndarray  # the ARB result at the final precision
    bits: int  # precision used
    converged: bool  # every radius <= fraction * allowance
    worst_ratio: float  # max radius / allowance at the final precision


def escalate(evaluate: Callable[[ArbOps], np.ndarray], allowance, *, fraction: float = 0.01,
             start: int = 128, cap: int = 4096) -> Escalation:
    """Evaluate with ARB at rising precision (doubling from `start`) until every ball's radius is
    at most `fraction` of its entry's allowance, or `cap` bits.

    Arguments:
        evaluate: ops -> object array of balls (the same program at the given table's precision).
        allowance: per-entry allowance (array broadcastable to the result, or a scalar), > 0.
        fraction: the radius must be below this fraction of the allowance.
        start, cap: first and largest precision in bits.
    Returns:
        an Escalation with the balls, the bits needed and whether it converged.
    """
    if start < 53 or cap < start:
        raise SymgradError(f"escalate: need 53 <= start ({start}) <= cap ({cap}) bits")
    bits = start
    while True:
        ops = ARB_OPS.at(bits)
        balls = np.asarray(evaluate(ops), dtype=object)
        rad = ops.radius(balls)
        allow = np.broadcast_to(np.asarray(allowance, dtype=float), rad.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(allow > 0, rad / allow, np.where(rad == 0, 0.0, np.inf))
        nan_balls = np.array([b.is_nan() for b in balls.ravel()], dtype=bool).reshape(balls.shape)
        ratio = np.where(nan_balls, 0.0, ratio)  # undefined entries: no precision makes them tighter
        worst = float(np.max(ratio)) if ratio.size else 0.0
        if worst <= fraction or bits >= cap:
            return Escalation(balls, bits, worst <= fraction, worst)
        bits = min(cap, bits * 2)


def recertify(evaluate: Callable[[ArbOps], np.ndarray], hi: np.ndarray, lo: np.ndarray,
              run: Escalation, cert: Certificate, *, config: CertifyConfig = CertifyConfig(),
              cap: int = 4096) -> tuple[Certificate, int]:
    """A certificate that missed entries whose ball was too wide to tell (not finite, or a
    radius above half the entry's claim), retried at doubled precision up to ``cap`` bits
    until every entry is certified: cancellation far below the balls' precision (BCE of a
    sigmoid at x = 1000: 1 - s is e^-1000, a ball around 0 below ~1450 bits, whose log is NaN)
    costs bits, as the oracle's own escalation does. Certified entries keep their balls; a
    missed entry whose ball is already narrow (the double-double value is off) stops the
    retries, which more bits cannot change. A certificate that is ok costs nothing more.

    Arguments:
        evaluate: ops -> object array of balls (as ``escalate``'s).
        hi, lo: the double-double values certified.
        run: the escalation ``cert`` was made from (its balls and bits).
        cert: ``certify(hi, lo, run.balls, config=config)``.
        config: the claimed accuracy.
        cap: the largest precision in bits (``VerifyConfig.oracle_max_bits``' default).
    Returns:
        (the certificate, the bits its last balls took).

    >>> import sympy as sp
    >>> from symgrad.precise import ARB_OPS
    >>> x = sp.Symbol("x"); xs = np.array([1000.0])
    >>> f = sp.log(1 - 1 / (1 + sp.exp(-x)))  # -1000 - log1p(e^-1000): -1000 in float64
    >>> run = escalate(lambda ops: ops.map(f, {x: ops.asarray(xs)}), 1e-30, cap=512)
    >>> cert = certify(np.array([-1000.0]), np.array([0.0]), run.balls)
    >>> cert.ok, run.bits  # a NaN ball at 512 bits: no precision below ~1450 bits tells
    (False, 128)
    >>> again, bits = recertify(lambda ops: ops.map(f, {x: ops.asarray(xs)}), np.array([-1000.0]),
    ...                         np.array([0.0]), run, cert)
    >>> again.ok, bits
    (True, 2048)
    """
    balls, bits = np.asarray(run.balls, dtype=object), run.bits
    hi = np.asarray(hi, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        claim = config.rel * np.abs(hi) + config.abs
    while not cert.ok and bits < cap:
        missed = ~np.asarray(cert.certified, bool)
        radius = np.asarray(cert.radius, float) if cert.radius is not None else np.full(
            hi.shape, np.inf)
        with np.errstate(invalid="ignore"):
            wide = missed & ~(radius <= 0.5 * claim)
        if not wide.any():
            break
        bits = min(cap, bits * 2)
        balls = np.where(missed, np.asarray(evaluate(ARB_OPS.at(bits)), dtype=object), balls)
        cert = certify(hi, lo, balls, config=config)
    return cert, bits
