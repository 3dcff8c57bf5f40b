"""The verdict's knobs and units: each dtype's unit roundoff and range (``DTYPES``), the
``Tolerance`` (every knob, in one place, written into every report), the allowance
``safety * u * E + floor * tiny`` and the ULP. Part of the one comparer (``symgrad.compare``).

>>> a = allowance(np.array([2.0]), "float64", Tolerance())
>>> float(a[0]) == 4 * 2.0**-53 * 2 + 4 * 2.0**-1022
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SymgradError, checked_keywords


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


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
@dataclass(frozen=True)
class Tolerance:
    """Every knob of the verdict, in one place; written into every report."""

    safety: float = 4.0  # x the running bound: covers <=2-ulp elementary functions and reordering
    floor: float = 4.0  # absolute floor in units of the dtype's smallest normal (underflow)
    precision_loss_ulps: float = 2.0**10  # larger errors that the bound excuses are flagged
    block_floor: float = 2.0**14  # block test: |projection| must exceed this many u ...
    block_sigmas: float = 8.0  # ... and this many of its rounding-noise scales (t-statistic)
    block_min_entries: float = 4.0  # effective entries a block needs for the block test
    block_resolved: float = 1.0  # a block is resolved where ||exact|| > this x ||allowance||
    #                              (below, correct code may return anything aligned: no test)
    rerun_floor: float = 1.0  # where a float64 re-run of the same code decides (the user's
    #   code in a narrower dtype: rerun64): the block test's floor and the common mode's, in u.
    #   One shared rounding to nearest (an upstream adjoint every entry is multiplied by) moves
    #   every entry by the same relative delta, |delta| <= u / (1 + u) < u: a bias beyond u is
    #   more than one shared rounding does, and the re-run tells a code's bias (it survives
    #   float64) from rounding (it shrinks by 2^29 from float32); refuted there, it is dropped
    #   (inf: the usual floors alone, as the op catalogue keeps them: opcatalog/run.py)
    rerun_min_entries: float = 2.0  # ... and the effective entries it needs: the residual
    #   r = e - p g says nothing about the noise sigma with fewer than 2 (one entry: r = 0)
    pooled_floor: float = 8.0  # pooled test: |projection| over samples must exceed this many u
    pooled_sigmas: float = 4.0  # ... and lam self-normalised scales: P(false) <= 2 e^(-lam^2/2)
    #                             (2 e^-8 = 6.7e-4 for lam = 4; a suspicion, confirmed apart)
    pooled_reach: float = 0.9  # with fewer than (lam / reach)^2 effective samples the pooled
    #                            suspicion is raised at |T| > reach sqrt(n_eff) (the most |T|
    #                            can be is sqrt(n_eff)): nearly every sample of one sign
    pooled_min_samples: float = 8.0  # effective samples a pooled suspicion needs
    confirm_samples: int = 32  # fresh samples drawn at least to confirm a suspicion (sqrt(32)
    #                            = 5.7: the pooled test can reach lam = 4 with room for noise)
    confirm_cost: float = 4.0  # ... unless that is more than this x the oracle's sample budget:
    #                            then the suspicion stays unconfirmed (inconclusive)
    entry_bound: str = "probabilistic"  # tensor programs' E: min(E, entry_sigmas * sigma),
    # rounding errors as independent, mean-zero variables (Higham & Mary): sqrt(n) growth in
    # contractions, no compounding with depth (reports/bound_tightness.md); "worst": the
    # first-order worst case E alone (sound for any rounding, 1e5-1e7x looser per GPT layer)
    entry_sigmas: float = 8.0  # lam of the probabilistic bound: P(|error| > lam sigma) <= 2e^(-lam^2/2)
    entry_sqrt_terms: int = 1024  # sqrt(n) growth up to this many terms, linear beyond: one by
    # one float32 summation of equal terms rounds alike (2^20 x 0.1: 5x the sqrt(n) allowance)
    zero_below: float = 2.0**-40  # an exact value below this fraction of its allowance is an
    # exact zero (a mathematical zero, e.g. the key bias's gradient, comes out of the
    # double-double oracle as ~2^-100 of its terms): judged by the allowance alone, never
    # "inconclusive" for want of a sign
    function_ulps: float = 4.0  # the rigorous enclosure's table (symgrad.rigorous): every
    # elementary function (exp, log, tanh, erf, pow, ...) within this many ulps of its correctly
    # rounded value (glibc <= 2; numpy's SIMD float32 kernels are documented at <= 4)

    def __post_init__(self) -> None:
        if self.entry_bound not in ("worst", "probabilistic"):
            raise SymgradError(f"Tolerance(entry_bound={self.entry_bound!r}): choose 'worst' "
                               "(first-order worst case) or 'probabilistic'")
        if not (self.entry_sigmas > 0 and self.entry_sqrt_terms >= 1):
            raise SymgradError(f"Tolerance: entry_sigmas={self.entry_sigmas!r} must be > 0 and "
                               f"entry_sqrt_terms={self.entry_sqrt_terms!r} >= 1")

    def rule(self) -> str:
        return (f"|got - exact| <= {self.safety:g} * u * E + {self.floor:g} * tiny, where u is the "
                "unit roundoff of the backend's dtype, tiny its smallest normal number, and E the "
                "first-order running error bound of the model's computation (units of u); errors "
                f"over {self.precision_loss_ulps:g} ULPs (at an exact value below u * E: ULPs "
                "of E) that the bound excuses are flagged as precision loss; an allowance >= |exact| is inconclusive (an exact value below "
                f"{self.zero_below:g} of its allowance is an exact zero; a loss value wrong by "
                "more than itself is a mismatch); per parameter block and sample, the error's "
                "projection p on the exact gradient (blocks with ||exact|| > "
                f"{self.block_resolved:g} ||allowance||) is suspect when |p| > "
                f"max({self.block_floor:g} u, {self.block_sigmas:g} sigma)"
                + (f" (where a float64 re-run of the same code decides: max({self.rerun_floor:g} "
                   f"u, {self.block_sigmas:g} sigma), the common mode too, from "
                   f"{self.rerun_min_entries:g} effective entries)" if np.isfinite(
                       self.rerun_floor) else "") + "; pooled over samples "
                f"when |p| > max({self.pooled_floor:g} u, {self.pooled_sigmas:g} sigma); an entry "
                "beyond the allowance fails only outside the rigorous enclosure (the program in "
                "ball arithmetic, each operation widened by its rounding, elementary functions "
                f"by {self.function_ulps:g} ulps), else it is suspect; a suspicion fails only "
                "once confirmed: by the backend re-run in float64, or by the pooled test on >= "
                f"{self.confirm_samples} fresh samples"
                + ("; tensor programs' E is the worst case" if self.entry_bound == "worst" else
                   f"; tensor programs' E is probabilistic: min(E, {self.entry_sigmas:g} sigma), "
                   "rounding errors taken as independent and mean-zero (Higham & Mary), sqrt(n) "
                   f"growth up to {self.entry_sqrt_terms} terms, linear beyond"))

    def as_dict(self) -> dict:
        return {"safety": self.safety, "floor": self.floor,
                "precision_loss_ulps": self.precision_loss_ulps,
                "block_floor": self.block_floor, "block_sigmas": self.block_sigmas,
                "block_min_entries": self.block_min_entries,
                "block_resolved": self.block_resolved, "rerun_floor": (  # inf: off (JSON has no inf)
                    self.rerun_floor if np.isfinite(self.rerun_floor) else None),
                "rerun_min_entries": self.rerun_min_entries, "pooled_floor": self.pooled_floor,
                "pooled_sigmas": self.pooled_sigmas, "pooled_reach": self.pooled_reach,
                "pooled_min_samples": self.pooled_min_samples,
                "confirm_samples": self.confirm_samples, "confirm_cost": self.confirm_cost,
                "entry_bound": self.entry_bound,
                "entry_sigmas": self.entry_sigmas, "entry_sqrt_terms": self.entry_sqrt_terms,
                "zero_below": self.zero_below, "function_ulps": self.function_ulps,
                "rule": self.rule()}


def ulp(x: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` numbers at |x| (a float64 array): 2^(max(floor(log2 |x|),
    log2 tiny) - digits), |x| = 0 or NaN read as tiny, inf where that is not finite (each step
    in place on one array)."""
    info = dtype_info(dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.abs(np.asarray(x, dtype=np.float64))
        if mag.ndim == 0:
            mag = mag.reshape(1)
            return _spacing(mag, info).reshape(())
        return _spacing(mag, info)


_EXPONENT = np.int64(0x7FF0000000000000)  # float64's exponent field: x & it is 2^floor(log2 x)
_SLIVER = np.int64(0x000FFFFFC0000000)  # the top 30 mantissa bits: all set within 2^-30 of the
#   next power of two, where log2 may round up to it (``_spacing_by_log2`` decides those)


def _spacing(mag: np.ndarray, info) -> np.ndarray:
    """``_spacing_by_log2`` of the nonnegative (or NaN) float64 ``mag``, in place, the same
    numbers from the exponent bits: 2^floor(log2 |x|) is |x| with its mantissa cleared (no log2,
    floor or exp2 per entry: 4x faster, the ULPs are read many times per entry at GPT-2's 163M).
    Where log2's rounding can reach the next power of two (the top 30 mantissa bits all set:
    2^-30 below it), and at inf or NaN, the entries are taken from ``_spacing_by_log2`` itself,
    so every entry is that function's number (``tests/test_compare_ulp.py`` checks every
    exponent and the edges)."""
    bits = mag.view(np.int64)  # (any strides: the same item size)
    edge = np.bitwise_and(bits, _SLIVER)
    odd = edge == _SLIVER
    np.bitwise_and(bits, _EXPONENT, out=edge)
    odd |= edge == _EXPONENT  # inf, NaN
    del edge
    kept = _spacing_by_log2(mag[odd], info) if odd.any() else None
    np.bitwise_and(bits, _EXPONENT, out=bits)  # 2^floor(log2 |x|); 0 at 0 and subnormals
    np.maximum(mag, info.tiny, out=mag)
    mag *= 2.0 ** -info.digits  # a power of two: exact
    if kept is not None:
        mag[odd] = kept
    return mag


def _spacing_by_log2(mag: np.ndarray, info) -> np.ndarray:
    """2^(max(floor(log2 mag), log2 tiny) - digits), mag = 0 or NaN read as tiny, inf where
    that is not finite, in place (``_spacing``'s definition, for its edge entries)."""
    np.putmask(mag, ~(mag > 0), info.tiny)
    np.log2(mag, out=mag)
    np.floor(mag, out=mag)
    np.maximum(mag, np.log2(info.tiny), out=mag)
    mag -= info.digits
    np.exp2(mag, out=mag)
    np.putmask(mag, ~np.isfinite(mag), np.inf)
    return mag


def tie_band(dtypes, tol: Tolerance) -> float:
    """How close a Max/Min's arguments (in units of their bounds E) must be for the computed
    arguments to cross: |a - b| <= tie (Ea + Eb) with tie = safety * u of the widest of
    ``dtypes`` (each argument may move by its allowance; none given: of every dtype symgrad
    runs, ``rounding.NEAR_TIE`` with the default safety). Read by the tensor bound
    (``symgrad.tensor.bound.evaluate_bound``'s ``tie``).

    >>> tie_band(["float32"], Tolerance()) == 4 * 2.0**-24
    True
    """
    return max(tol.safety * (dtype_info(d).eps / 2) for d in (dtypes or DTYPES))


def allowance(bound: np.ndarray, dtype: str, tol: Tolerance, *,
              out: np.ndarray | None = None) -> np.ndarray:
    """The absolute allowance ``safety * u * E + floor * tiny`` for a bound E in ``dtype``
    (also how far from a kink rounding can carry an argument: ``symgrad.tensor.kinks``).
    A float32 E (a large model's, stored rounded away from zero: ``symgrad.tensor.upward``)
    is widened to float64 first: the allowance is always formed in float64. ``out``: a
    float64 array of E's shape to form it in (a reused buffer: the block tests' chunks),
    for a float32 or float64 array E; the same numbers."""
    info = dtype_info(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        wide = isinstance(bound, np.ndarray) and bound.dtype == np.float32
        if out is not None and isinstance(bound, np.ndarray) and bound.dtype in (
                np.float32, np.float64):
            mag = np.abs(bound, dtype=np.float64, out=out)
        else:
            mag = np.abs(bound, dtype=np.float64) if wide else np.abs(bound)
        if isinstance(mag, np.ndarray) and mag.ndim and mag.dtype == np.float64:
            mag *= tol.safety * (info.eps / 2)  # in place: the same products, no temporary
            mag += tol.floor * info.tiny
            return mag
        return tol.safety * (info.eps / 2) * mag + tol.floor * info.tiny


def entry_errors(exact_hi: np.ndarray, exact_lo: np.ndarray, got: np.ndarray,
                 bound: np.ndarray, dtype: str, tol: Tolerance) -> tuple[np.ndarray, ...]:
    """Each entry's error and allowance, absolute and in ULPs of ``dtype`` at the exact value:
    what ``compare`` judges, entry by entry (any shape, elementwise: the entries of a slice or
    a gather are the same numbers as those of the whole arrays; the streaming compare of a
    large model recomputes them where read, ``symgrad.tensor.streaming_figures``).

    Arguments:
        exact_hi, exact_lo: the oracle's double-double parts.
        got: the backend's values, float64.
        bound: the running error bound E in units of u.
        dtype, tol: the backend's dtype and the tolerance.
    Returns:
        (err = |(got - hi) - lo|, the ULP size at |hi|, err in ULPs (inf where ``got`` is not
        finite), the absolute allowance (NaN -> inf), the allowance in ULPs), float64 arrays.

    >>> e = entry_errors(np.array([1.0]), np.array([0.0]), np.array([1.0 + 2**-51]),
    ...                  np.array([1.0]), "float64", Tolerance())
    >>> [float(x[0]) for x in (e[2], e[4])]
    [2.0, 2.0]
    """
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.subtract(got, exact_hi)  # |(got - hi) - lo|, in place on one array
        err -= exact_lo
        np.abs(err, out=err)
        size, ulps = error_ulps(err, exact_hi, got, dtype)
        allowed_abs = np.asarray(allowance(bound, dtype, tol))  # a new array: NaN -> inf
        np.putmask(allowed_abs, np.isnan(allowed_abs), np.inf)   # in place
        allowed = allowed_abs / size
    return err, size, ulps, allowed_abs, allowed


def error_ulps(err: np.ndarray, exact_hi: np.ndarray, got: np.ndarray,
               dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The ULP size of ``dtype`` at |exact_hi| and ``err`` in those ULPs, inf where ``got`` is
    not finite: ``entry_errors``' ULPs, for a reader that holds the errors (the reports'
    figures, ``symgrad.measures``: the same numbers as the compare's, by construction).

    >>> [float(x[0]) for x in error_ulps(np.array([2.0**-51]), np.array([1.0]),
    ...                                  np.array([np.inf]), "float64")]
    [2.220446049250313e-16, inf]
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        size = ulp(exact_hi, dtype)
        ulps = err / size
        np.putmask(ulps, ~np.isfinite(got), np.inf)
    return size, ulps


def measured_ulps(err: np.ndarray, exact: np.ndarray, allowed_abs: np.ndarray,
                  ulps: np.ndarray, dtype: str, tol: Tolerance) -> tuple[np.ndarray, np.ndarray]:
    """Each entry's error in the ULPs that mean something, and the scale they are ULPs of: of
    |exact|, but at an exact value below the rounding scale of its own terms (zero, or nearly
    zero by cancellation: u * E >= |exact|) of E, the magnitude of those terms, read back from
    the allowance (``safety * u * E + floor * tiny``). ULPs of a zero would count subnormal
    steps (a bias before a train-mode BatchNorm: exact 2.3e-33, got 7.6e-17 from terms ~1e-1,
    2.2e32 ULPs of the zero, 0.005 ULPs of its terms). The one formula behind the
    precision-loss flag (``compare``) and the reports' figures (``symgrad.measures``);
    elementwise, any shape.

    Arguments:
        err: |got - exact|, absolute.
        exact: the exact value (float64).
        allowed_abs: the absolute allowance (inf: no scale, every error 0 ULPs of it).
        ulps: ``err`` in ULPs of |exact| (``entry_errors``).
        dtype, tol: the backend's dtype and the tolerance.
    Returns:
        (the error in ULPs of that scale, the scale: E at a zero, else |exact|).

    >>> u, s = measured_ulps(np.array([7.63e-17]), np.array([2.3e-33]), np.array([1.8e-15]),
    ...                      np.array([2.2e32]), "float64", Tolerance())
    >>> float(u[0]) < 1, bool(s[0] > 1)
    (True, True)
    """
    info = dtype_info(dtype)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # E, the magnitude of the terms: max((allowed - floor tiny) / (safety u), tiny), each
        # step in place on one array
        scale_e = np.asarray(np.subtract(allowed_abs, tol.floor * info.tiny), np.float64)
        np.divide(scale_e, tol.safety * info.eps / 2, out=scale_e)
        np.maximum(scale_e, info.tiny, out=scale_e)
        magnitude = np.abs(np.asarray(exact, np.float64))
        shape = np.broadcast_shapes(np.shape(err), np.shape(ulps), magnitude.shape,
                                    scale_e.shape)
        out = np.multiply(scale_e, info.eps / 2)  # (u E: then the ULPs' copy, same size)
        zero = magnitude <= out
        if magnitude.shape == shape and scale_e.shape == shape:  # (|exact| becomes the scale)
            np.copyto(magnitude, scale_e, where=zero)
            scale = magnitude
        else:
            scale = np.where(zero, scale_e, magnitude)
        del magnitude
        kind = np.result_type(err, ulps, scale_e)
        if out.shape == shape and out.dtype == kind:
            np.copyto(out, ulps)
        else:
            out = np.array(np.broadcast_to(ulps, shape), kind)
        if zero.any():  # the ULP of the terms' scale only there (elsewhere: ``ulps``)
            at = np.broadcast_to(zero, shape)
            out[at] = (np.broadcast_to(err, shape)[at]
                       / ulp(np.broadcast_to(scale_e, shape)[at], dtype))
        return out, scale


def losing(err: np.ndarray, exact: np.ndarray, allowed_abs: np.ndarray, ulps: np.ndarray,
           within: np.ndarray, dtype: str, tol: Tolerance) -> np.ndarray:
    """Where ``compare`` flags precision loss: an entry within its allowance more than
    ``precision_loss_ulps`` ULPs off in the measure the tables show (``measured_ulps``: at an
    exact value below the rounding of its own terms, ULPs of the terms' scale, never subnormal
    ULPs of the zero). Measured only at the entries beyond that many ULPs of |exact| (no
    whole-size float temporary; the terms' scale is never finer than |exact|).

    Arguments:
        err, exact, allowed_abs, ulps: ``entry_errors``' figures (``exact``: the oracle's high
            part), one shape.
        within: err <= allowed_abs.
        dtype, tol: the backend's dtype and the tolerance.
    Returns:
        A bool array of that shape.

    >>> losing(np.array([7.6e-17, 1e-12]), np.array([2.3e-33, 1.0]),  # a zero; a real loss
    ...        np.array([1.8e-15, 1e-11]), np.array([2.2e32, 4.5e3]), np.ones(2, bool),
    ...        "float64", Tolerance()).tolist()
    [False, True]
    """
    out = (ulps > tol.precision_loss_ulps) & within
    at = np.nonzero(out)
    if at[0].size:
        shown, _ = measured_ulps(err[at], np.asarray(exact)[at], allowed_abs[at], ulps[at],
                                 dtype, tol)
        out[at] = shown > tol.precision_loss_ulps
    return out
