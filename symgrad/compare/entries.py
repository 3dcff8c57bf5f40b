"""The one comparer: errors in ULPs of each backend's dtype against the oracle, and the verdict
(the package ``symgrad.compare`` re-exports it with its tolerance, kink and block modules).

This is the only place a threshold lives. Three tests and a confirmation, in this order (also in the README and in
every report):

1. **Entry test** (first order; sound, except the probabilistic E of tensor programs below).
   For each entry

       |got - exact| <= safety * u * E + floor * tiny

   ``u`` is the unit roundoff of the backend's dtype (eps / 2), ``tiny`` its smallest normal
   number, and ``E`` a first-order running error bound of the model's own computation, in units
   of ``u`` (``symgrad.tensor.bound``). Inside it, but with an allowance as large as the exact value
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
   mode (an upstream adjoint near the loss rounded once and shared by every block). Lower
   floors, the common mode tested too, where a float64 re-run of the same code decides (a
   user's code in a narrower dtype): ``symgrad.compare.blockflags``.

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

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .kinks import KinkSides, convex_combination, separable_combination
from .tolerance import Tolerance, dtype_info, entry_errors, losing
from .ulphist import ULP_BINS, binned


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
                    "outside the hull of the sides evaluated, or a NaN or inf where rounding "
                    "can reach a singular point of the derivative; "
                    "neither ok nor failing, counted and shown",
    "systematic": "the backend's errors on this parameter block are aligned with the exact "
                  "gradient (a scale, sign or zeroing error): far beyond what rounding, which is "
                  "nearly orthogonal to it, produces",
    "suspect": "beyond the fast (first-order or probabilistic) bound, or flagged by a block or "
               "pooled test, but not proven: inside the rigorous enclosure of what correct code "
               "can produce, or a statistical suspicion awaiting its independent confirmation; "
               "neither ok nor failing",
    "precision loss": "within the bound, but more than `precision_loss_ulps` ULPs (at an exact "
                      "zero, ULPs of the scale of its terms): the model as written is "
                      "ill-conditioned here (cancellation); a stable form would avoid it",
}


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
    reduced: bool = False  # True: ``reduce``d, status whole, the rest its value column
    ulp_counts: np.ndarray | None = None  # a reduced comparison's histogram of its finite ULPs
    #                                       over ``ULP_BINS`` (``ulp_counts``): the reports' plot
    figures: object | None = None  # without an ``error`` array (``compare_compact`` with no
    #   enclosure): what each entry's error and allowance are recomputed from where read, as
    #   ``entry_errors`` made them (``tensor.streaming_figures.EntryFigures``: hi, lo, got, E)

    @property
    def ok(self) -> bool:
        return not np.isin(self.status, FAILING).any()

    def reduce(self, counts: np.ndarray | None = None) -> "Comparison":
        """This comparison without its per-entry arrays but ``status`` (what the verdict and
        the counts read; 1 byte an entry): the ULPs become their histogram (``ulp_counts``,
        what the reports' plot reads); ``got``, ``expected``, the ULPs, the allowances, kink
        positions, errors and radii keep only their value column (column 0: the loss value's
        status, exact value and result, as the causes read them), as copies, so the whole
        arrays are freed. For the streaming compare of a large model, once a ``Result`` has
        memoised its figures (``ResultMeasures.keep_figures``); a reduced comparison's
        per-entry figures are an error to ask for. ``counts``: ``ulp_counts(self.ulps)``
        when already formed (``keep_figures`` bins them in its own pass), else binned here.

        >>> c = compare(np.ones((1, 3)), np.zeros((1, 3)), np.ones((1, 3)), np.ones((1, 3)),
        ...             backend="b", dtype="float64", tol=Tolerance()).reduce()
        >>> c.reduced, c.status.shape, c.got.shape, c.ulps.shape, int(c.ulp_counts.sum())
        (True, (1, 3), (1, 1), (1, 1), 3)
        """
        def value(a):  # a[:, :1]: a deferred figure (tensor/streaming_figures) reads one column
            return None if a is None else np.array(a[:, :1])
        counts = ulp_counts(self.ulps) if counts is None else counts
        return replace(self, ulps=value(self.ulps), ulp_counts=counts,
                       got=value(self.got), expected=value(self.expected),
                       allowed_ulps=value(self.allowed_ulps),
                       kink_position=value(self.kink_position),
                       not_subgradient=value(self.not_subgradient),
                       allowed_abs=value(self.allowed_abs), exact_lo=value(self.exact_lo),
                       error=value(self.error), rigorous=value(self.rigorous), reduced=True,
                       figures=None)


HISTOGRAM_CHUNK = 1 << 22  # entries binned at once


def ulp_counts(ulps: np.ndarray) -> np.ndarray:
    """The histogram of the finite ``ulps`` over ``ULP_BINS`` of log10(max(ulps, 1e-3)) (0 ULPs
    shown at -3), binned chunk by chunk: the same counts as one ``np.histogram`` of all of
    them, with no whole-size temporary (GPT-2: 163M entries). In float64 whatever the ULPs'
    dtype: float32's log10(1e-3) is -3.0000002, below the first bin, and GPT-2's float32 ULPs
    lost every exact entry from the plot. The bins as a count and a range: numpy's equal-width
    path (an index computed, then checked against the same edges, ``np.linspace`` of the range:
    ``ULP_BINS`` exactly) instead of a sort of every 65536 entries for the edges given as an
    array: the same counts, ~6x less CPU (GPT-2 at 1 layer: 3.9 of the summary's 19 CPU s);
    now each value's bin from a table of its upper bits (``ulphist.binned``), the same counts.

    Arguments:
        ulps: errors in ULPs, any shape and float dtype (inf / NaN: left out).
    Returns:
        int64 counts, one per bin (``len(ULP_BINS) - 1``).

    >>> ulp_counts(np.array([[0.0, 1.0, np.inf]]))[[0, 6]].tolist()  # 0 ULPs at -3, 1 ULP at 0
    [1, 1]
    """
    flat = (ulps if hasattr(ulps, "reshape") else np.asarray(ulps)).reshape(-1)  # a deferred
    #                                     figure (tensor/streaming_figures): chunk by chunk
    counts = np.zeros(len(ULP_BINS) - 1, np.int64)
    for a in range(0, flat.size, HISTOGRAM_CHUNK):
        counts += binned(flat[a:a + HISTOGRAM_CHUNK])  # (a table of each value's bin)
    return counts


def compare(exact_hi: np.ndarray, exact_lo: np.ndarray, got: np.ndarray, bound: np.ndarray, *,
            backend: str, dtype: str, tol: Tolerance,
            kink: "KinkSides | tuple[np.ndarray, np.ndarray] | None" = None,
            uncertain: np.ndarray | None = None,
            rigorous: "np.ndarray | Callable[[np.ndarray], np.ndarray] | None" = None,
            value_column: bool = True) -> Comparison:
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
        value_column: whether column 0 is the loss value (False: a column chunk of gradient
            entries further on, ``symgrad.tensor.comparing.compare_compact``: no value rule).
    Returns:
        A ``Comparison`` with ULP errors, allowed ULPs and a status per entry.
    """
    info = dtype_info(dtype)
    got64 = np.asarray(got, dtype=np.float64)
    err, size, ulps, allowed_abs, allowed = entry_errors(exact_hi, exact_lo, got64, bound,
                                                         dtype, tol)
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = np.abs(exact_hi)
        exact_ok = np.isfinite(exact_hi) & (magnitude <= info.max)
        status = np.full(err.shape, OK, dtype=np.int8)
        within = err <= allowed_abs
        status[losing(err, exact_hi, allowed_abs, ulps, within, dtype, tol)] = LOSS
        # a value below zero_below of its allowance is zero to the oracle's precision: the
        # allowance alone decides it (a sign the dtype cannot resolve is no verdict's concern)
        nonzero = magnitude > np.multiply(tol.zero_below, allowed_abs,
                                          out=size if size.shape == err.shape else None)
        # ... but an infinite allowance (a bound that is infinite or NaN: 0**(y - 1) at y = 1,
        # whose first-order sensitivity to y's rounding is log 0) resolves nothing, at an exact
        # zero too: a nonzero error there is no agreement the bound could see
        nonzero |= ~np.isfinite(allowed_abs)
        # an error of exactly 0 is the exact value itself: ok, whatever the bound could see
        status[nonzero & (allowed_abs >= magnitude) & within & (err > 0)] = INCONCLUSIVE
        del magnitude, within
        status[err > allowed_abs] = MISMATCH
        # the value: wrong by more than itself is a mismatch whatever E says (float32 BCELoss's
        # 100 for 16.8). An exactly zero value (sinc(5) = 0) has no relative scale: E decides.
        wrong_value = (err[:, 0] > np.abs(exact_hi[:, 0])) & (exact_hi[:, 0] != 0) & value_column
        value_before = status[:, 0].copy()  # with an enclosure the value rule is its proof:
        status[:, 0][wrong_value] = MISMATCH  # proven below, or back to the fast verdict
        status[exact_ok & ~np.isfinite(got64)] = NONFINITE
        status[~exact_ok] = OVERFLOW
        status[np.isnan(exact_hi)] = DOMAIN
        # no kink: NaN everywhere, one read-only value (compare_compact's every chunk filled
        # and dropped an array of it)
        position = np.broadcast_to(np.float64(np.nan), err.shape)
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
