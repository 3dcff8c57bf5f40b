"""The one comparer: errors in ULPs of each backend's dtype against the oracle, and the verdict.

This is the only place a threshold lives. The rule (also in the README and in every report):

    |got - exact| <= safety * u * E + floor * tiny

``u`` is the unit roundoff of the backend's dtype (eps / 2), ``tiny`` its smallest normal number,
and ``E`` a first-order running error bound of the model's own computation, in units of ``u``,
computed alongside the exact value (``symgrad.bounds``): every operation contributes its rounding
(|result|), every sum the magnitudes of the terms it adds, every function its condition
(|f'(u)| times the error of its argument). An entry that is tiny through cancellation gets the
tolerance of the terms that cancelled; a well-conditioned entry gets a few ULPs.

>>> import numpy as np
>>> from symgrad.compare import compare, Tolerance, MISMATCH
>>> exact = np.array([[1.0]])
>>> c = compare(exact, np.zeros_like(exact), exact * (1 + 1e-12), np.array([[3.0]]),
...             backend="torch", dtype="float64", tol=Tolerance())
>>> c.status[0, 0] == MISMATCH
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SymgradError

# status codes of one compared entry
OK, LOSS, MISMATCH, NONFINITE, DOMAIN, OVERFLOW, KINK = 0, 1, 2, 3, 4, 5, 6
STATUS_NAMES = {OK: "ok", LOSS: "precision loss", MISMATCH: "mismatch", NONFINITE: "non-finite",
                DOMAIN: "domain", OVERFLOW: "overflow", KINK: "kink"}
FAILING = (MISMATCH, NONFINITE, DOMAIN, OVERFLOW)

EXPLANATIONS = {
    "ok": "within the rounding-error bound of the exact derivative",
    "mismatch": "the backend's value is outside the rounding-error bound of the exact derivative",
    "non-finite": "the backend produced NaN or inf where the exact value is finite "
                  "(overflow, 0/0, or a NaN leaking from an untaken branch)",
    "domain": "the exact value itself is not a finite real number at this sample "
              "(e.g. log of a negative number): the model is undefined there; "
              "narrow the input's domain or guard the expression",
    "overflow": "the exact value is beyond the range of the backend's dtype: no backend can "
                "represent it; narrow the domains or rescale the model",
    "kink": "the derivative does not exist here (a ReLU/Max/Heaviside argument is exactly 0); "
            "any value in the subgradient interval is accepted",
    "precision loss": "within the bound, but more than `precision_loss_ulps` ULPs: the model as "
                      "written is ill-conditioned here (cancellation); a stable form would avoid it",
}


@dataclass(frozen=True)
class DTypeInfo:
    eps: float  # spacing of 1.0
    tiny: float  # smallest positive normal number
    digits: int  # mantissa bits after the leading one
    max: float  # largest finite number


DTYPES = {
    "float64": DTypeInfo(2.0**-52, 2.0**-1022, 52, float(np.finfo(np.float64).max)),
    "float32": DTypeInfo(2.0**-23, 2.0**-126, 23, float(np.finfo(np.float32).max)),
    "float16": DTypeInfo(2.0**-10, 2.0**-14, 10, 65504.0),
    "bfloat16": DTypeInfo(2.0**-7, 2.0**-126, 7, 3.3895313892515355e38),
}


def dtype_info(dtype: str) -> DTypeInfo:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise SymgradError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}") from None


@dataclass(frozen=True)
class Tolerance:
    """Every knob of the verdict, in one place; written into every report."""

    safety: float = 4.0  # x the running bound: covers <=2-ulp elementary functions and reordering
    floor: float = 4.0  # absolute floor in units of the dtype's smallest normal (underflow)
    precision_loss_ulps: float = 2.0**10  # larger errors that the bound excuses are flagged

    def rule(self) -> str:
        return (f"|got - exact| <= {self.safety:g} * u * E + {self.floor:g} * tiny, where u is the "
                "unit roundoff of the backend's dtype, tiny its smallest normal number, and E the "
                "first-order running error bound of the model's computation (units of u); errors "
                f"over {self.precision_loss_ulps:g} ULPs that the bound excuses are flagged as "
                "precision loss")

    def as_dict(self) -> dict:
        return {"safety": self.safety, "floor": self.floor,
                "precision_loss_ulps": self.precision_loss_ulps, "rule": self.rule()}


def ulp(x: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` numbers at |x| (a float64 array)."""
    info = dtype_info(dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.abs(np.asarray(x, dtype=np.float64))
        exponent = np.floor(np.log2(np.where(mag > 0, mag, info.tiny)))
        spacing = np.exp2(np.maximum(exponent, np.log2(info.tiny)) - info.digits)
    return np.where(np.isfinite(spacing), spacing, np.inf)


@dataclass(frozen=True)
class Comparison:
    """Per-entry errors of one backend: arrays of shape (N samples, K entries)."""

    backend: str
    dtype: str
    ulps: np.ndarray  # |got - exact| / ulp(exact)
    allowed_ulps: np.ndarray  # the tolerance, in the same ULPs
    status: np.ndarray  # OK / LOSS / MISMATCH / NONFINITE / DOMAIN
    got: np.ndarray
    expected: np.ndarray  # the exact value rounded to float64
    kink_position: np.ndarray  # at a kink: where got sits in [low, high] (0..1), else NaN
    error: np.ndarray | None = None  # |got - exact|, absolute (reports; never overflows)
    allowed: np.ndarray | None = None  # the allowance safety * u * E + floor * tiny, absolute

    @property
    def ok(self) -> bool:
        return not np.isin(self.status, FAILING).any()


def compare(exact_hi: np.ndarray, exact_lo: np.ndarray, got: np.ndarray, bound: np.ndarray, *,
            backend: str, dtype: str, tol: Tolerance,
            kink: tuple[np.ndarray, np.ndarray] | None = None) -> Comparison:
    """Compare ``got`` with the exact value ``exact_hi + exact_lo`` (a double-double).

    Arguments:
        exact_hi, exact_lo: the oracle's value split in two float64 parts, shape (N, K).
        got: the backend's values (any float dtype), shape (N, K).
        bound: the running error bound E in units of u, shape (N, K).
        backend, dtype: names used in messages and for the ULP size.
        tol: the tolerance settings.
        kink: optional (low, high) arrays: where finite, the sample sits on a kink and any
            value in [low, high] (the subgradient) is exact.
    Returns:
        A ``Comparison`` with ULP errors, allowed ULPs and a status per entry.
    """
    info = dtype_info(dtype)
    got64 = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((got64 - exact_hi) - exact_lo)
        size = ulp(exact_hi, dtype)
        ulps = err / size
        allowed_abs = tol.safety * (info.eps / 2) * np.abs(bound) + tol.floor * info.tiny
        allowed_abs = np.where(np.isnan(allowed_abs), np.inf, allowed_abs)
        allowed = allowed_abs / size
        exact_ok = np.isfinite(exact_hi) & (np.abs(exact_hi) <= info.max)
        status = np.full(err.shape, OK, dtype=np.int8)
        status[(ulps > tol.precision_loss_ulps) & (err <= allowed_abs)] = LOSS
        status[err > allowed_abs] = MISMATCH
        status[exact_ok & ~np.isfinite(got64)] = NONFINITE
        status[~exact_ok] = OVERFLOW
        status[np.isnan(exact_hi)] = DOMAIN
        position = np.full(err.shape, np.nan)
        if kink is not None:
            low, high = kink
            at_kink = np.isfinite(low) & np.isfinite(high) & (high > low) & exact_ok
            inside = (got64 >= low - allowed_abs) & (got64 <= high + allowed_abs)
            accepted = at_kink & inside & (status == MISMATCH)
            status[accepted] = KINK
            with np.errstate(divide="ignore"):
                position = np.where(at_kink, (got64 - low) / (high - low), np.nan)
        ulps = np.where(np.isfinite(got64), ulps, np.inf)
    return Comparison(backend, dtype, ulps, allowed, status, got64, np.asarray(exact_hi),
                      position, error=err, allowed=allowed_abs)
