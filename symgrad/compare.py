"""The one comparer: errors in ULPs of each backend's dtype against the oracle, and the verdict.

This is the only place a threshold lives. Three tests and a confirmation, in this order (also in the README and in
every report):

1. **Entry test** (first order; sound, except the probabilistic E of tensor programs below).
   For each entry

       |got - exact| <= safety * u * E + floor * tiny

   ``u`` is the unit roundoff of the backend's dtype (eps / 2), ``tiny`` its smallest normal
   number, and ``E`` a first-order running error bound of the model's own computation, in units
   of ``u`` (``symgrad.bounds``). Inside it, but with an allowance as large as the exact value
   itself (the bound would accept 0 or a flipped sign): **inconclusive** - the dtype cannot
   resolve this entry, so it is counted and shown, never "ok". Outside it, the entry fails
   only on proof: a **mismatch** where the error also exceeds the radius of the *rigorous
   enclosure* (``symgrad.rigorous``: the program in ball arithmetic, every operation widened by
   its own rounding in the dtype - a theorem, second-order effects included), else **suspect**
   (inside it, or the enclosure is unbounded). The loss value is judged by the same proof: one
   wrong by more than itself (float32 ``nn.BCELoss`` returning 100 for 16.8) is a mismatch
   when outside the enclosure. Without an enclosure (tensor programs above 200k parameters)
   beyond the allowance is a mismatch, and so is a value wrong by more than itself.

2. **Block test** (a *suspicion*, one sample). A worst-case bound compounds with depth while
   real rounding errors are small and nearly orthogonal to the gradient; a wrong backward (a
   scale, sign or zeroing bug on a parameter block) is fully aligned with it. For every
   parameter block and sample, the error e = got - exact is projected on the exact gradient g:

       p = <e, g> / <g, g>,   sigma = sqrt(sum g_i^2 r_i^2) / <g, g>,   r = e - p g

   The block is **suspect** when both |p| and |p - m| exceed max(block_floor * u,
   block_sigmas * sigma), on a block with at least ``block_min_entries`` effective entries
   ((sum g^2)^2 / sum g^4) that is *resolved*: ||g|| > ``block_resolved`` x ||allowance||.
   An unresolved block takes part in no test: correct code may return anything within its
   allowance, its direction included, so p means nothing (the key-bias third of a GPT's
   attention bias has an exact gradient of 0: the oracle's 1e-37 against float64's 1e-21
   rounding gave p = 1.4e16). ``m``, the median of p over the sample's blocks, is the common
   mode (an upstream adjoint near the loss rounded once and shared by every block).

3. **Pooled test** (a *suspicion*, across samples). The per-sample projections p_s, weighted by
   how well each sample's bound resolves the block (pi_s = <g, g> / <a, a>), over the samples
   where the block is resolved: p = sum pi_s p_s / sum pi_s. If the signs of the p_s are
   symmetric and independent across samples (the rounding of correct code on independent
   draws), the self-normalised sum obeys P(|sum pi_s p_s| > lam sqrt(sum pi_s^2 p_s^2)) <=
   2 exp(-lam^2 / 2) (Efron 1969). Since |sum pi p| <= sqrt(n_eff) sqrt(sum pi^2 p^2)
   (Cauchy-Schwarz), |T| can never exceed sqrt(n_eff): the suspicion level is
   lam = min(pooled_sigmas, pooled_reach sqrt(n_eff)) (4, i.e. 2e^-8 = 6.7e-4, from 20
   effective samples; below, "nearly every sample of one sign"), from ``pooled_min_samples``
   effective samples, and |p| must also exceed ``pooled_floor`` u (rounded constants shared by
   every sample: 1/T, 1/sqrt(d)). With fewer samples the result says what is not resolved
   (``Comparison.resolution``).

4. **Confirmation** (``symgrad.confirm``). A suspicion fails nothing until an independent
   experiment reproduces it; flagged entries are SUSPECT until then.
   a. In a dtype narrower than float64 the suspected backend - the same code - is re-run in
      float64 on the flagged samples (if its float64 loss value passes float64's entry test,
      i.e. it really computes in float64). Confirmed when p64 has the same sign, |p64 - p| <=
      |p| / 2 and |p64| > max(block_floor u64, block_sigmas sigma64). *Assumption*: rounding
      errors scale with u (they shrink by 2^29 from float32), a bug in the code does not; so
      correct code reproduces a float32 suspicion in float64 only if its float64 errors are
      themselves beyond float64's block threshold - the same test, at a u 2^29 smaller.
   b. Otherwise (float64, or (a) not reproducing / not possible) M fresh samples are drawn from
      the model's domains (seed ``SeedSequence([seed, 1])``, M = max(confirm_samples, min(2 N,
      the oracle budget's samples)), none if M > confirm_cost x that budget) and the pooled
      test at lam = pooled_sigmas - or a sign test at the same level (k of n projections of
      one sign, binomial tail <= 2 e^(-lam^2/2), the pooled mean of that sign beyond
      pooled_floor u; unlike T it keeps its power when the resolution weights vary) - must
      flag the same block with the same sign. *Assumption*: as in 3, on fresh independent
      samples: P(confirming a correct block) <= 2 x 2 e^(-lam^2/2) = 1.3e-3 per suspected
      block, independent of how the suspicion arose (the fresh samples share nothing with it). A per-sample rounding outlier does not repeat; a shared rounding
      of varying sign (exp(t) - 1 at tiny t) has no common sign; a x1.5 / x0 / x-1 bug fires on
      every sample.
   Confirmed: SYSTEMATIC (failing), with the evidence in the finding. Refuted by (b): the
   entries return to their entry-test status and the suspicion is kept as a note
   (``Comparison.unconfirmed``). Not testable (samples given by ``at=``, a backend that cannot
   be re-run, no budget), or (a) not reproducing while (b) flags it (a bias of the dtype's
   arithmetic: numpy's float32 exp near 1 has a mean error of 0.6 of its spread, or a kernel
   wrong only in that dtype - rounding cannot be told from a bug there): INCONCLUSIVE. Entry
   suspicions (beyond the fast bound, within the rigorous enclosure) go through the same two
   experiments: the float64 error at those entries of the same sign and >= half, or entries of
   the same block beyond the fast bound again on fresh samples -> MISMATCH; else inconclusive.

Entries whose error has the sign of a suspected p are marked; every finding is kept on the
``Comparison`` (``systematic``) with ``confirmed`` and ``evidence``.

Tensor programs (``symgrad.tensor.bound``) pass a probabilistic E by default
(``Tolerance.entry_bound``): min(worst case, lam * sigma), rounding errors taken as independent
and mean-zero (Higham & Mary), sqrt(n) growth in contractions up to ``entry_sqrt_terms`` terms.
The worst case compounds 1e5-1e7x per GPT layer against real errors, which stay at <= 12 % of
the probabilistic bound (``reports/bound_tightness.md``); ``entry_bound="worst"`` restores it. The
block and pooled tests only raise suspicions; what makes one a failure is its confirmation (4).

>>> import numpy as np
>>> from symgrad.compare import compare, Tolerance, MISMATCH
>>> exact = np.array([[1.0]])
>>> c = compare(exact, np.zeros_like(exact), exact * (1 + 1e-12), np.array([[3.0]]),
...             backend="torch", dtype="float64", tol=Tolerance())
>>> bool(c.status[0, 0] == MISMATCH)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import warnings

import numpy as np

from .errors import SymgradError

# status codes of one compared entry
OK, LOSS, MISMATCH, NONFINITE, DOMAIN, OVERFLOW, KINK = 0, 1, 2, 3, 4, 5, 6
INCONCLUSIVE, SYSTEMATIC, SUSPECT = 7, 8, 9
STATUS_NAMES = {OK: "ok", LOSS: "precision loss", MISMATCH: "mismatch", NONFINITE: "non-finite",
                DOMAIN: "domain", OVERFLOW: "overflow", KINK: "kink",
                INCONCLUSIVE: "inconclusive", SYSTEMATIC: "systematic", SUSPECT: "suspect"}
FAILING = (MISMATCH, NONFINITE, DOMAIN, OVERFLOW, SYSTEMATIC)

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
    "kink": "the derivative does not exist here, or the backend's rounding may have crossed a "
            "kink (a ReLU/Max/Abs/Heaviside/Piecewise argument within its rounding-error bound "
            "of the kink): any convex combination of the one-sided derivatives is accepted",
    "inconclusive": "the dtype or the oracle cannot decide this entry: the rounding-error bound "
                    "is as large as the exact value (0 or a flipped sign would pass too), or the "
                    "oracle's ball stayed wide at its precision cap, or, at many interacting "
                    "kinks, the gradient lies in the proven enclosure of the subgradients but "
                    "outside the hull of the sides evaluated; neither ok nor failing, counted "
                    "and shown",
    "systematic": "the backend's errors on this parameter block are aligned with the exact "
                  "gradient (a scale, sign or zeroing error): far beyond what rounding, which is "
                  "nearly orthogonal to it, produces",
    "suspect": "beyond the fast (first-order or probabilistic) bound, or flagged by a block or "
               "pooled test, but not proven: inside the rigorous enclosure of what correct code "
               "can produce, or a statistical suspicion awaiting its independent confirmation; "
               "neither ok nor failing",
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
    block_floor: float = 2.0**14  # block test: |projection| must exceed this many u ...
    block_sigmas: float = 8.0  # ... and this many of its rounding-noise scales (t-statistic)
    block_min_entries: float = 4.0  # effective entries a block needs for the block test
    block_resolved: float = 1.0  # a block is resolved where ||exact|| > this x ||allowance||
    #                              (below, correct code may return anything aligned: no test)
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
                f"over {self.precision_loss_ulps:g} ULPs that the bound excuses are flagged as "
                "precision loss; an allowance >= |exact| is inconclusive (an exact value below "
                f"{self.zero_below:g} of its allowance is an exact zero; a loss value wrong by "
                "more than itself is a mismatch); per parameter block and sample, the error's "
                "projection p on the exact gradient (blocks with ||exact|| > "
                f"{self.block_resolved:g} ||allowance||) is suspect when |p| > "
                f"max({self.block_floor:g} u, {self.block_sigmas:g} sigma); pooled over samples "
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
                "block_resolved": self.block_resolved, "pooled_floor": self.pooled_floor,
                "pooled_sigmas": self.pooled_sigmas, "pooled_reach": self.pooled_reach,
                "pooled_min_samples": self.pooled_min_samples,
                "confirm_samples": self.confirm_samples, "confirm_cost": self.confirm_cost,
                "entry_bound": self.entry_bound,
                "entry_sigmas": self.entry_sigmas, "entry_sqrt_terms": self.entry_sqrt_terms,
                "zero_below": self.zero_below, "function_ulps": self.function_ulps,
                "rule": self.rule()}


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
    not_subgradient: np.ndarray | None = None  # each entry inside its interval, but the entries
    #                                            together are no convex combination of the sides
    side: dict | None = None  # sample row -> the side whose derivative the backend used, in words
    allowed_abs: np.ndarray | None = None  # the allowance in absolute terms
    exact_lo: np.ndarray | None = None  # the oracle's low part (double-double)
    systematic: tuple = ()  # BlockFinding of every flagged block (symgrad.compare.systematic)
    error: np.ndarray | None = None  # |got - exact|, absolute (reports; never overflows)
    undecided: dict | None = None  # sample row -> why its kink entries stay inconclusive
    rigorous: np.ndarray | None = None  # radius of the rigorous enclosure (symgrad.rigorous)
    #   where it was computed (entries beyond the fast allowance); NaN elsewhere / unbounded
    unconfirmed: tuple = ()  # suspicions the confirmation refuted or could not test, in words
    #                          (symgrad.confirm): kept as notes, they fail nothing
    evidence: tuple = ()  # entry suspicions the confirmation reproduced, in words
    resolution: str = ""  # what the block and pooled tests cannot resolve in this run, in
    #                       words (too few samples for the pooled test: ``pooled_resolution``)

    @property
    def ok(self) -> bool:
        return not np.isin(self.status, FAILING).any()


def allowance(bound: np.ndarray, dtype: str, tol: Tolerance) -> np.ndarray:
    """The absolute allowance ``safety * u * E + floor * tiny`` for a bound E in ``dtype``
    (also how far from a kink rounding can carry an argument: ``symgrad.oracle``)."""
    info = dtype_info(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return tol.safety * (info.eps / 2) * np.abs(bound) + tol.floor * info.tiny


@dataclass(frozen=True)
class KinkSides:
    """The exact outputs from every side of the kinks reached at a sample.

    ``vertices[i]`` is an (m, K) array for sample row i: one row per combination of sides
    (ReLU argument from the left / right, which tied argument of a Max wins, ...).
    """

    vertices: dict  # sample row -> (m, K) float64
    labels: dict | None = None  # sample row -> each side in words ("w*x → 0−")
    low: np.ndarray | None = None  # only for from_interval
    high: np.ndarray | None = None
    # sample row -> ``symgrad.oracle.Sides`` where the sides were not all enumerated:
    # "separable" (vertices: the base and each group's sides; the hull: their Minkowski sum) or
    # "relaxed" (vertices are an inner hull; low/high a proven enclosure)
    structure: dict | None = None

    @classmethod
    def from_interval(cls, low: np.ndarray, high: np.ndarray) -> "KinkSides":
        return cls({}, None, low, high)

    def interval(self, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        if self.low is not None:
            return self.low, self.high
        low, high = np.full(shape, np.nan), np.full(shape, np.nan)
        for i, V in self.vertices.items():
            info = (self.structure or {}).get(i)
            if info is not None and info.low is not None:
                low[i], high[i] = info.low, info.high
            else:
                low[i], high[i] = V.min(axis=0), V.max(axis=0)
        return low, high

    def enclosure(self, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """A proven range of each entry over every subgradient: the sides' interval, except
        on relaxed rows (interacting kinks beyond enumeration), where the sides evaluated are
        only some of them: there, the oracle's ball enclosure."""
        low, high = self.interval(shape)
        low, high = low.copy(), high.copy()
        for i, info in (self.structure or {}).items():
            if info.kind == "relaxed":
                low[i], high[i] = info.outer_low, info.outer_high
        return low, high

    def differs(self, shape: tuple) -> np.ndarray:
        """Entries whose sides disagree (a real kink; equal sides: the function is smooth);
        on relaxed rows also those whose enclosure is wider than the rounding of its ends."""
        low, high = self.interval(shape)
        with np.errstate(invalid="ignore"):
            scale = np.fmax(np.abs(low), np.abs(high))
            out = np.isfinite(low) & np.isfinite(high) & (high - low > 2.0**-60 * scale)
            for i, info in (self.structure or {}).items():
                if info.kind == "relaxed":
                    lo_, hi_ = info.outer_low, info.outer_high
                    out[i] |= hi_ - lo_ > 4 * np.spacing(np.fmax(np.abs(lo_), np.abs(hi_)))
        return out


def convex_combination(V: np.ndarray, got: np.ndarray, allow: np.ndarray) -> bool:
    """Is ``got`` within ``allow`` (per entry) of some convex combination of the rows of V?

    Two rows: exact interval arithmetic on the weight; more: a linear program (scipy HiGHS)
    on entries scaled to their magnitude. An entry with an infinite allowance constrains
    nothing, and a non-finite one is judged elsewhere (non-finite / overflow): both are left out.
    """
    keep = np.isfinite(got) & np.isfinite(allow) & np.isfinite(V).all(axis=0)
    if not keep.all():
        V, got, allow = V[:, keep], got[keep], allow[keep]
    if V.shape[0] == 1:
        return bool(np.all(np.abs(V[0] - got) <= allow))
    if V.shape[0] == 2:
        d = V[1] - V[0]
        lo_t, hi_t = 0.0, 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (got - allow - V[0]) / d
            b = (got + allow - V[0]) / d
        flat = d == 0
        if np.any(flat & (np.abs(V[0] - got) > allow)):
            return False
        lo_t = max(lo_t, float(np.max(np.fmin(a, b)[~flat], initial=0.0)))
        hi_t = min(hi_t, float(np.min(np.fmax(a, b)[~flat], initial=1.0)))
        return lo_t <= hi_t
    from scipy.optimize import linprog
    scale = np.fmax(np.fmax(np.abs(V).max(axis=0), np.abs(got)), allow)
    scale = np.where(scale > 0, scale, 1.0)
    A = V.T / scale[:, None]
    g, a = got / scale, allow / scale
    m = V.shape[0]
    res = linprog(np.zeros(m), A_ub=np.vstack([A, -A]), b_ub=np.concatenate([g + a, a - g]),
                  A_eq=np.ones((1, m)), b_eq=[1.0], bounds=[(0, None)] * m, method="highs")
    return bool(res.status == 0)


def separable_combination(V: np.ndarray, groups: list, got: np.ndarray,
                          allow: np.ndarray) -> bool:
    """Is ``got`` within ``allow`` of base + sum_g (a convex combination of group g's changes)?

    At separable kinks the gradient is the base plus each group's own change: ``V[0]`` is the
    base (every kink on its first side), ``V[groups[g]]`` group g's sides (row 0 first; a
    ReLU: its two sides; a group of interacting kinks: their combinations). Groups that share
    no entry are independent: each set of groups linked through shared entries is one small
    problem (one group alone: ``convex_combination`` of its sides, exact for two), several one
    linear program over their weights (scipy HiGHS).
    """
    keep = np.isfinite(got) & np.isfinite(allow) & np.isfinite(V).all(axis=0)
    if not keep.all():
        V, got, allow = V[:, keep], got[keep], allow[keep]
    base = V[0]
    deltas = [V[rows] - base for rows in groups]
    touches = [np.flatnonzero(np.any(d != 0, axis=0)) for d in deltas]
    free = np.ones(len(base), bool)
    for t in touches:
        free[t] = False
    if np.any(np.abs(base[free] - got[free]) > allow[free]):
        return False
    parent = list(range(len(groups)))  # union-find of keys that share an entry

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    owner = np.full(len(base), -1)
    for i, t in enumerate(touches):
        for c in t:
            if owner[c] < 0:
                owner[c] = i
            else:
                parent[find(i)] = find(int(owner[c]))
    components: dict[int, list[int]] = {}
    for i in range(len(groups)):
        if touches[i].size:
            components.setdefault(find(i), []).append(i)
    for members in components.values():
        cols = np.unique(np.concatenate([touches[i] for i in members]))
        if len(members) == 1:
            if not convex_combination(V[groups[members[0]]][:, cols], got[cols], allow[cols]):
                return False
            continue
        from scipy.optimize import linprog
        D = np.vstack([deltas[i][:, cols] for i in members])  # one row per side
        target = got[cols] - base[cols]
        scale = np.fmax(np.fmax(np.abs(D).max(axis=0), np.abs(target)), allow[cols])
        scale = np.where(scale > 0, scale, 1.0)
        A, g, a = D.T / scale[:, None], target / scale, allow[cols] / scale
        eq = np.zeros((len(members), D.shape[0]))
        r = 0
        for j, i in enumerate(members):
            eq[j, r:r + len(groups[i])] = 1.0
            r += len(groups[i])
        res = linprog(np.zeros(D.shape[0]), A_ub=np.vstack([A, -A]),
                      b_ub=np.concatenate([g + a, a - g]), A_eq=eq, b_eq=np.ones(len(members)),
                      bounds=[(0, None)] * D.shape[0], method="highs")
        if res.status != 0:
            return False
    return True


def compare(exact_hi: np.ndarray, exact_lo: np.ndarray, got: np.ndarray, bound: np.ndarray, *,
            backend: str, dtype: str, tol: Tolerance,
            kink: "KinkSides | tuple[np.ndarray, np.ndarray] | None" = None,
            uncertain: np.ndarray | None = None,
            rigorous: "np.ndarray | Callable[[np.ndarray], np.ndarray] | None" = None
            ) -> Comparison:
    """Compare ``got`` with the exact value ``exact_hi + exact_lo`` (a double-double).

    Arguments:
        exact_hi, exact_lo: the oracle's value split in two float64 parts, shape (N, K).
        got: the backend's values (any float dtype), shape (N, K); column 0 is the loss value.
        bound: the running error bound E in units of u, shape (N, K).
        backend, dtype: names used in messages and for the ULP size.
        tol: the tolerance settings.
        kink: the one-sided derivatives where the sample sits on (or within rounding of) a kink
            (``KinkSides``; or (low, high) arrays): each entry must lie in [low, high] within its
            allowance, and the entries of one sample together must be a convex combination of
            the sides (a subgradient), within their allowances.
        uncertain: (N, K) entries the oracle could not certify: inconclusive.
        rigorous: the radius of the rigorous enclosure (``symgrad.rigorous``) per entry, (N, K)
            (NaN or inf: unbounded), or a callable rows -> (len(rows), K) asked only for the
            samples with an entry beyond the fast allowance. An entry beyond the fast allowance
            is a **mismatch** only when its error exceeds this radius (proven), else
            **suspect**; the loss value is judged by the same rule (no "wrong by more than
            itself"). None (no enclosure: tensor programs above 200k parameters): a mismatch
            beyond the fast allowance, and the value rule.
    Returns:
        A ``Comparison`` with ULP errors, allowed ULPs and a status per entry.
    """
    info = dtype_info(dtype)
    got64 = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((got64 - exact_hi) - exact_lo)
        size = ulp(exact_hi, dtype)
        ulps = err / size
        allowed_abs = allowance(bound, dtype, tol)
        allowed_abs = np.where(np.isnan(allowed_abs), np.inf, allowed_abs)
        allowed = allowed_abs / size
        exact_ok = np.isfinite(exact_hi) & (np.abs(exact_hi) <= info.max)
        status = np.full(err.shape, OK, dtype=np.int8)
        status[(ulps > tol.precision_loss_ulps) & (err <= allowed_abs)] = LOSS
        # a value below zero_below of its allowance is zero to the oracle's precision: the
        # allowance alone decides it (a sign the dtype cannot resolve is no verdict's concern)
        nonzero = np.abs(exact_hi) > tol.zero_below * allowed_abs
        # ... but an infinite allowance (a bound that is infinite or NaN: 0**(y - 1) at y = 1,
        # whose first-order sensitivity to y's rounding is log 0) resolves nothing
        nonzero |= ~np.isfinite(allowed_abs) & (exact_hi != 0)
        # an error of exactly 0 is the exact value itself: ok, whatever the bound could see
        status[nonzero & (allowed_abs >= np.abs(exact_hi)) & (err <= allowed_abs) & (err > 0)] = \
            INCONCLUSIVE
        status[err > allowed_abs] = MISMATCH
        # the value: wrong by more than itself is a mismatch whatever E says (float32 BCELoss's
        # 100 for 16.8). An exactly zero value (sinc(5) = 0) has no relative scale: E decides.
        wrong_value = (err[:, 0] > np.abs(exact_hi[:, 0])) & (exact_hi[:, 0] != 0)
        value_before = status[:, 0].copy()  # with an enclosure the value rule is its proof:
        status[:, 0][wrong_value] = MISMATCH  # proven below, or back to the fast verdict
        status[exact_ok & ~np.isfinite(got64)] = NONFINITE
        status[~exact_ok] = OVERFLOW
        status[np.isnan(exact_hi)] = DOMAIN
        position = np.full(err.shape, np.nan)
        joint = np.zeros(err.shape, bool)
        used: dict = {}
        why_open: dict = {}
        if kink is not None:
            sides = kink if isinstance(kink, KinkSides) else KinkSides.from_interval(*kink)
            low, high = sides.interval(err.shape)
            outer_low, outer_high = sides.enclosure(err.shape)
            at_kink = sides.differs(err.shape) & exact_ok
            inside = (got64 >= outer_low - allowed_abs) & (got64 <= outer_high + allowed_abs)
            accepted = at_kink & inside & (status == MISMATCH)
            status[accepted] = KINK
            for i, V in sides.vertices.items():  # one subgradient: the entries jointly
                cols = np.flatnonzero(at_kink[i])
                if sides.labels and cols.size:
                    match = np.all(np.abs(V[:, cols] - got64[i, cols]) <= allowed_abs[i, cols],
                                   axis=1)
                    if match.any():
                        used[i] = sides.labels[i][int(np.argmax(match))]
                if not cols.size:
                    continue
                info = (sides.structure or {}).get(i)
                g_i, a_i = got64[i, cols], allowed_abs[i, cols]
                if info is not None and info.kind == "separable":
                    member = separable_combination(V[:, cols], info.groups, g_i, a_i)
                else:
                    member = convex_combination(V[:, cols], g_i, a_i)
                if member:
                    continue
                open_ = np.isin(status[i, cols], (OK, LOSS, KINK, INCONCLUSIVE))
                if info is not None and info.kind == "relaxed":
                    # outside the proven enclosure is already a mismatch (``inside``); what lies
                    # in it but outside the evaluated sides' hull cannot be decided
                    status[i, cols[open_]] = INCONCLUSIVE
                    why_open[i] = info.reason
                    continue
                status[i, cols[open_]] = MISMATCH
                joint[i, cols[open_]] = True
            with np.errstate(divide="ignore"):
                position = np.where(at_kink, (got64 - low) / (high - low), np.nan)
        if uncertain is not None:
            undecided = uncertain & np.isin(status, (OK, LOSS, MISMATCH, KINK, DOMAIN))
            status[undecided] = INCONCLUSIVE
        radius = None
        if rigorous is not None:
            radius = prove(status, err, joint, rigorous)
            # the value rule only ever asked for a proof: a value within the fast allowance
            # that the enclosure does not prove wrong keeps the fast test's verdict
            back = wrong_value & (status[:, 0] == SUSPECT) & (err[:, 0] <= allowed_abs[:, 0])
            status[:, 0][back] = value_before[back]
        ulps = np.where(np.isfinite(got64), ulps, np.inf)
    return Comparison(backend, dtype, ulps, allowed, status, got64, np.asarray(exact_hi),
                      position, joint, used, allowed_abs, np.asarray(exact_lo), error=err,
                      undecided=why_open, rigorous=radius)


def prove(status: np.ndarray, err: np.ndarray, joint: np.ndarray, rigorous) -> np.ndarray:
    """Fail only on proof: a MISMATCH entry (beyond the fast allowance, or a loss value wrong by
    more than itself) stays MISMATCH only where its error exceeds the rigorous enclosure's
    radius; inside it, or where the enclosure is unbounded (NaN / inf), it becomes SUSPECT.
    A joint subgradient failure is left as it is (decided by the kink test). Edits ``status``
    in place.

    Arguments:
        status, err, joint: the comparison's (N, K) arrays.
        rigorous: (N, K) radii, or a callable rows -> (len(rows), K), asked only for the rows
            that have a candidate.
    Returns:
        (N, K) radii where computed (the candidate rows), NaN elsewhere.
    """
    radius = np.full(err.shape, np.nan)
    beyond = (status == MISMATCH) & ~joint
    rows = np.flatnonzero(beyond.any(axis=1))
    if not rows.size:
        return radius
    r = rigorous(rows) if callable(rigorous) else np.asarray(rigorous, dtype=np.float64)[rows]
    radius[rows] = r
    with np.errstate(invalid="ignore"):
        proven = beyond & (err > radius)  # NaN (unbounded) or inf: never proven
    status[beyond & ~proven] = SUSPECT
    return radius


@dataclass(frozen=True)
class BlockFinding:
    """A suspected systematic error on one parameter block: got ~ (1 + p) * exact.

    Raised by the block or pooled test as a suspicion; ``symgrad.confirm`` then sets
    ``confirmed`` (True: an independent experiment reproduced it, the entries fail; False:
    refuted or not testable) and ``evidence`` (which experiment, with its numbers)."""

    block: str  # the parameter block's name
    sample: int  # row in the comparison (-1: pooled over samples)
    projection: float  # p = <e, g> / <g, g>
    sigma: float  # its rounding-noise scale
    threshold: float  # what |p| had to exceed
    columns: tuple[int, int] = (0, 0)  # the block's columns in the comparison
    confirmed: bool | None = None  # None: not yet tested
    evidence: str = ""  # the confirming (or refuting) experiment, in words
    prior: np.ndarray | None = field(default=None, compare=False, repr=False)  # the block's
    #   statuses at its rows before the suspicion marked them (restored if it is refuted)

    @property
    def rows(self) -> np.ndarray | slice:
        return slice(None) if self.sample < 0 else slice(self.sample, self.sample + 1)

    def describe(self) -> str:
        where = "over all samples" if self.sample < 0 else f"at sample row {self.sample}"
        what = "systematic error" if self.confirmed else "suspected systematic error"
        text = (f"{what} on {self.block} {where}: got = (1 {'+' if self.projection >= 0 else '-'} "
                f"{abs(self.projection):.3g}) x exact along the gradient (allowed "
                f"{self.threshold:.3g}, noise {self.sigma:.3g})")
        return f"{text}; {self.evidence}" if self.evidence else text


def _projection(exact: np.ndarray, err: np.ndarray, allowed: np.ndarray,
                use: np.ndarray) -> dict:
    """Per sample: the projection p of the error on the exact gradient, its noise sigma, the
    effective entries and the resolution weight pi."""
    scale = np.max(np.where(use, np.abs(exact), 0), axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)  # p is scale-free; no under/overflow in squares
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        g = np.where(use, exact, 0) / scale  # a huge error at a tiny scale: inf, left out
        e = np.where(use, err, 0) / scale
        al = np.where(use, allowed, 0) / scale
        gg, g4 = (g * g).sum(1), (g**4).sum(1)
        p = (e * g).sum(1) / gg
        r = e - p[:, None] * g
        sigma = np.sqrt((g * g * r * r).sum(1)) / gg
        pi = np.where(np.isfinite(al).all(1), gg / (al * al).sum(1), 0.0)
        n_eff = gg**2 / g4
    return {"p": p, "sigma": sigma, "pi": pi,
            "n_eff": n_eff, "use": use, "e": e, "g": g, "ok_rows": (gg > 0) & np.isfinite(p)}


def systematic(comp: Comparison, blocks, tol: Tolerance) -> Comparison:
    """The block and pooled tests (module docstring, 2 and 3) on every parameter block.

    Arguments:
        comp: a ``Comparison`` from ``compare`` (columns: value, then parameter entries).
        blocks: ``(name, first column, last column + 1)`` per parameter block.
        tol: the tolerance settings.
    Returns:
        The comparison with entries carrying a suspected error marked SUSPECT and the findings
        (not yet confirmed: ``symgrad.confirm``) in ``comparison.systematic``.

    >>> import numpy as np
    >>> g = np.ones((1, 9)); got = g.copy(); got[0, 1:5] *= 1.5  # W x1.5, b right; resolved
    >>> c = compare(g, 0 * g, got, 3e6 * g, backend="b", dtype="float32", tol=Tolerance())
    >>> [(f.block, f.projection) for f in systematic(c, [("W", 1, 5), ("b", 5, 9)],
    ...                                                  Tolerance()).systematic]
    [('W', 0.5)]
    """
    if comp.allowed_abs is None:
        return comp
    lo = comp.exact_lo if comp.exact_lo is not None else np.zeros_like(comp.expected)

    def columns(a: int, b: int):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            err = (comp.got[:, a:b] - comp.expected[:, a:b]) - lo[:, a:b]
        return comp.expected[:, a:b], err, comp.allowed_abs[:, a:b]
    # at a kink the exact value is sympy's H(0) = 1/2 pass, not the subgradient the backend
    # chose: its error there says nothing about a scale (the kink test decided those entries)
    at_kink = np.isfinite(comp.kink_position)
    status, found = systematic_blocks(columns, comp.status, blocks, comp.dtype, tol,
                                      exclude=at_kink if at_kink.any() else None)
    return replace(comp, status=status, systematic=tuple(found),
                   resolution=pooled_resolution(len(status), comp.dtype, tol))


def pooled_resolution(samples: int, dtype: str, tol: Tolerance) -> str:
    """In words, what the run cannot resolve because the pooled test cannot fire with this
    few samples (it needs ``pooled_min_samples`` effective samples; |T| <= sqrt(n_eff)); ""
    when it can."""
    if samples >= tol.pooled_min_samples:
        return ""
    floor = tol.block_floor * dtype_info(dtype).eps / 2
    return (f"the pooled test needs >= {tol.pooled_min_samples:g} samples, this run compared "
            f"{samples}: a systematic error on a block smaller than the block test's floor "
            f"({floor:.2g} relative in {dtype}) is not resolved; use more samples")


def systematic_blocks(columns, status: np.ndarray, blocks, dtype: str, tol: Tolerance,
                      exclude: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """The block and pooled tests of ``systematic``, reading one block at a time:
    ``columns(a, b)`` returns (exact, error, allowance) for columns a..b-1, each (N, b - a).
    Only per-sample figures are kept between blocks, so GPT-2's 163M entries never need more
    than one block's arrays at once. ``exclude``: (N, K) entries left out (at a kink).

    Both tests raise *suspicions* (module docstring): flagged entries become SUSPECT and each
    finding keeps the statuses it replaced (``BlockFinding.prior``), for ``symgrad.confirm``.
    A sample whose block is not resolved (||exact|| <= ``block_resolved`` x ||allowance||:
    correct code may return anything there, its direction included) takes part in neither test.

    Returns:
        The new status array and the findings (``confirmed`` None: not yet tested).
    """
    u = dtype_info(dtype).eps / 2
    usable_status = (OK, LOSS, MISMATCH, INCONCLUSIVE, SUSPECT)
    markable = (OK, LOSS, INCONCLUSIVE)  # within the entry bound: a suspicion may mark them

    def stats_of(a, b):
        exact, err, allowed = columns(a, b)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            usable = (np.isfinite(err) & np.isfinite(exact)
                      & np.isin(status[:, a:b], usable_status))
            if exclude is not None:
                usable &= ~exclude[:, a:b]
        return _projection(exact, err, allowed, usable)
    keys = ("p", "sigma", "pi", "n_eff", "ok_rows")
    stats = []
    for _, a, b in blocks:
        st = stats_of(a, b)
        st = {k: st[k] for k in keys}
        with np.errstate(invalid="ignore"):  # pi = ||g||^2 / ||allowance||^2
            st["ok_rows"] = st["ok_rows"] & (st["pi"] > tol.block_resolved ** 2)
        stats.append(st)
    # the common mode of the sample: the median projection over blocks. An upstream adjoint
    # near the loss rounded once (BCE's dL/dz at a saturated logit) shifts every block alike;
    # a block is systematic only where it departs from the others.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no common mode
        ps = np.array([np.where(st["ok_rows"], st["p"], np.nan) for st in stats])
        common = np.nan_to_num(np.nanmedian(ps, axis=0)) if stats else np.zeros(len(status))
    status = status.copy()
    found = []
    for (name, a, b), st in zip(blocks, stats):
        p, sigma, ok_rows = st["p"], st["sigma"], st["ok_rows"]
        suspects = []  # (sample, projection, sigma, threshold)
        # 2. per sample
        thresh = np.maximum(tol.block_floor * u, tol.block_sigmas * sigma)
        flag = (ok_rows & (st["n_eff"] >= tol.block_min_entries) & (np.abs(p) > thresh)
                & (np.abs(p - common) > thresh))
        for s in np.flatnonzero(flag):
            suspects.append((int(s), float(p[s]), float(sigma[s]), float(thresh[s])))
        # 3. pooled over samples
        pooled = pooled_test(p, st["pi"], ok_rows, u, tol)
        if pooled is not None:
            suspects.append((-1, *pooled))
        if suspects:  # entries whose error points along the suspected projection
            full = stats_of(a, b)
            use, e, g = full["use"], full["e"], full["g"]
            before = status[:, a:b].copy()  # the entry test's statuses, before any suspicion
            for s, proj, sig, th in suspects:
                rows = slice(None) if s < 0 else slice(s, s + 1)
                sub = status[rows, a:b]
                prior = before[rows]
                mark = use[rows] & (e[rows] * g[rows] * proj > 0) & np.isin(sub, markable)
                sub[mark] = SUSPECT
                status[rows, a:b] = sub
                found.append(BlockFinding(name, s, proj, sig, th, (a, b), prior=prior))
    return status, found


def pooled_test(p: np.ndarray, pi: np.ndarray, rows: np.ndarray, u: float, tol: Tolerance,
                lam: float | None = None) -> tuple[float, float, float] | None:
    """The pooled test (module docstring, 3) on per-sample projections ``p`` with resolution
    weights ``pi``, over the samples ``rows`` (a boolean mask).

    Arguments:
        lam: the level; None: the suspicion level, min(pooled_sigmas, pooled_reach sqrt(n_eff))
            (so that it can fire from ``pooled_min_samples`` effective samples on).
    Returns:
        (pooled p, its self-normalised scale, the threshold) when flagged, else None.
    """
    pi = np.where(rows & np.isfinite(pi), pi, 0.0)
    pi = pi / pi.max() if pi.size and pi.max() > 0 else pi  # no overflow in pi^2
    total = pi.sum()
    if not total > 0:
        return None
    n_eff = total**2 / max(float((pi * pi).sum()), 1e-300)
    if n_eff < tol.pooled_min_samples:
        return None
    if lam is None:
        lam = min(tol.pooled_sigmas, tol.pooled_reach * np.sqrt(n_eff))
    pz = np.where(rows, p, 0)
    pp = float((pi * pz).sum() / total)
    spread = float(np.sqrt((pi * pi * pz**2).sum()) / total)
    th = max(tol.pooled_floor * u, lam * spread)
    return (pp, spread, th) if abs(pp) > th else None
