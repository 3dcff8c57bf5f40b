"""The tensor-level first-order rounding-error bound E (units of the unit roundoff u).

Walks the same program as the numpy view, in float64, carrying beside each value an array E
with |fl(v) - v| <~ u * E entrywise. One rule per op and concern (``RULES``: the worst case;
``SIGMA_RULES``: the probabilistic scale; ``NONZERO_RULES``: which entries may be nonzero):

    leaf, const, onehot         0 (values are rounded to the dtype when drawn; masks are 0/1)
    map f(x_1..x_k)             the running bound of f (symgrad.rounding.error_source):
                                sum |df/dx_i| E_i + the rounding of f's own operations
    einsum of k operands,       sum_i einsum(|x_1|..E_i..|x_k|) + a A + b |v|, A = einsum(|x_1|..|x_k|),
      m nonzero terms per output  v the value: (m - 2) (A + |v|) / 2 + |v| + (k - 1) A (any
                                summation order: recursive, pairwise or blocked BLAS; each
                                addition's result is a subset sum: ``ownround``); at most
                                (m - 1 + k - 1) A, half of it where the terms cancel
    sum of m nonzero entries    sum E + (m - 2) (sum |x| + |v|) / 2 + |v|
    max                         max E (a max rounds nothing)
    stop (a softmax shift)      0: the result does not depend on the shift, nor on its error
    stop (a user's .detach())   E of its operand: its value is used as it is
    layout, take                the same op applied to E
    scatter_add (T rows)        scatter_add(E) + (T - 1) scatter_add(|x|), on the rows the ids
                                hit (``hitrows``: every other row is an exact 0)

``m`` counts only the terms that may be nonzero: adding an exact zero rounds nothing. Exact
zeros are known structurally, the same in every backend: zeros of leaves (dropout keep-masks),
constants (causal masks, the first rows of the position table) and one-hot masks, carried
through layout ops, through maps that vanish with an argument (``x * keep``, a masked ``exp``),
and through contractions and sums. So the target logit picked by ``sum(logits * onehot)``
costs no (V - 1) additions, a causal row of t + 1 weights no T - 1.

**Probabilistic mode** (``Tolerance(entry_bound="probabilistic")``; the model of Higham & Mary,
SIAM J. Sci. Comput. 2019: rounding errors are independent, mean-zero, bounded by u). Beside E
a scale sigma is carried whose square is a sub-Gaussian variance proxy: a contraction adds its
inputs' errors in quadrature over the contracted index (sqrt(einsum(x^2 .. sigma_i^2 ..)),
summed over the k operands, which may share errors), and its own m - 1 additions, each at most
u times its subset sum (A + |v|) / 2, in quadrature, beside its products' k - 1 roundings of A:
alpha A + beta |v| (``ownround``: the chord of sqrt((m - 1) M^2 + (k - 1)^2 A^2) over M in
[A / 2, A]), instead of (m - 1 + k - 1) einsum(|x|); a map adds its arguments' errors in quadrature too, each weighted
by |df/dx_i| (sqrt(sum_i (|df/dx_i| sigma_i)^2) + its own roundings: at most sqrt(k) below the
worst case for k fully correlated arguments); max and layout ops keep their worst-case rules.
The bound used is min(E, lam * sigma): under the model
P(|error| > lam sigma u) <= 2 exp(-lam^2 / 2) per entry (lam = ``entry_sigmas``). The model is
not a theorem about every program: one rounded value reused by many terms makes their errors
correlated, which the quadrature does not see; and recursive summation of many equal terms
rounds the same way every time (float32, 2^20 copies of 0.1 summed one by one: 1 % error,
5x the sqrt(n) allowance). So sqrt growth holds up to ``sqrt_terms`` = n0 terms (1024: the
same summation then uses <= 16 % of the allowance) and growth is linear beyond, for the
contraction's own additions (max(sqrt(r), r / sqrt(n0)) of them) and for the errors it adds
up (at least sum_i einsum(.. sigma_i ..) / sqrt(n0)); reports/bound_tightness.md: real errors.
The squares are formed in float64: where a quadrature falls below 2^-960 (terms under ~1e-144,
whose squares underflow) ``tensor/quadrature.py`` re-forms it scaled, or as its L1 form.

``symgrad.compare`` multiplies E by the tolerance's safety factor; the bound is evaluated on the
gradient program, so a gradient entry that is tiny through cancellation gets the allowance of
the terms that cancelled, and a well-conditioned one a few ULPs times the contraction length.

>>> import numpy as np, symgrad.tensor as st
>>> a, b = st.param("a", (3,)), st.param("b", (3,))
>>> E = evaluate_bound([st.sum_(a * b)], {"a": np.ones((1, 3)), "b": np.ones((1, 3))})[0]
>>> float(E[0])  # each product rounds once (3 x |1|), then two additions of 3 terms
9.0
>>> E = evaluate_bound([st.sum_(a * b)], {"a": np.ones((1, 3)), "b": np.array([[1., 0, 0]])})[0]
>>> float(E[0])  # b is a leaf with exact zeros: one nonzero term, no addition rounds
1.0
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import sympy as sp

from ..errors import SymgradError
from ..parallel import by_pieces
from ..rounding import NEAR_TIE
from . import hitrows
from .interpret import RULES as VALUE_RULES
from .fused import einsum_total, fuses, live
from .memorder import cut
from .mapbound import TIE, b_map as _b_map, both as map_both, s_map as _s_map
from .operands import Operands, plus as _plus
from .program import X, Node
from .ownround import (additions as _additions, einsum_terms as _einsum_terms,
                       growth as _growth, own as _own, with_value as _with_value)
from .quadrature import root, root_or_linear
from .recompute import plan
from .nonzero import NONZERO_RULES, leaf_nonzero
from .operands import OneSampleOps, SharedLeaves, gemm_threads, times as _times

_T = OneSampleOps()
MODES = ("worst", "probabilistic")


def _zeros(node: Node) -> np.ndarray:
    return np.broadcast_to(np.zeros(()), (1,) + node.shape)  # no memory


# --- the worst case: E ---------------------------------------------------------------------

def _b_einsum(node, vals, errs, value, count):
    a, b = _own(node, count, value, None)
    if count is None and vals.in_rows() is not None:  # a large GEMM: E, sigma in row blocks
        alpha = _own(node, count, value, vals.n0)[0]
        return _with_value(vals.rows_pair(value, a, alpha)[0], b, value)
    A = vals.contraction() if live(a) else None
    ones = [i for i, e in enumerate(errs) if live(e)]  # einsum(|x_1| .. E_i .. |x_k|) added
    terms = [vals.term(i, "error") for i in ones] if fuses(A, ones, b) else None
    total = einsum_total(A, a, terms, value, b) if terms else None  # one pass (``fused``)
    if total is None:  # numpy's steps, a term at a time
        total = _times(A, a) if A is not None else 0.0
        for q, i in enumerate(ones):
            total = _plus(total, terms[q] if terms else vals.term(i, "error"))
        total = _with_value(total, b, value)
    return np.broadcast_to(total, np.shape(value))


def _b_sum(node, vals, errs, value, count):
    axes = tuple(a + 1 for a in node.attrs["axes"])
    a, b = _own(node, count, value, None)
    return _with_value(np.sum(errs[0], axis=axes) + a * _abs_sum(vals, axes), b, value)


def _abs_sum(vals, axes: tuple) -> np.ndarray:
    """sum |x| over ``axes`` (both rules of a sum read it)."""
    return vals.once("abs_sum", lambda: np.sum(vals.magnitudes[0], axis=axes))


def _b_max(node, vals, errs, value, count):
    return np.max(errs[0], axis=tuple(a + 1 for a in node.attrs["axes"]))


def _b_zero(node, vals, errs, value, count):
    return _zeros(node)


def _b_stop(node, vals, errs, value, count):
    """A softmax's stopped shift: 0 (the result does not depend on it); a user's stop-gradient
    (``attrs["user"]``, a captured ``.detach()``): its operand's E, the value read as it is."""
    return errs[0] if node.attrs.get("user") else _zeros(node)


def _b_same(node, vals, errs, value, count):
    """Layout ops and take: the op itself applied to E (integer operands pass unchanged); a 0
    broadcast stays one (a take from a leaf's E would copy the whole broadcast table first)."""
    if all(_is_zero(e) for a, e in zip(node.args, errs) if not a.integer):
        return _zeros(node)
    args = [e if not a.integer else v for a, v, e in zip(node.args, vals, errs)]
    return VALUE_RULES[node.op](node, _T, args, None)


def _b_scatter(node, vals, errs, value, count):
    """scatter_add(E) + (T - 1) scatter_add(|x|), formed on the rows the ids hit only: every
    other row of both scatters is an exact 0, so E is 0 there (not formed entry by entry:
    GPT-2's token-embedding gradient has 50257 rows, a sample's 64 tokens hit at most 64)."""
    t = max(int(np.prod(node.args[1].shape)) - 1, 0)
    e = hitrows.scatter(node, _hit(node, vals), errs[0])
    if t:
        e = e + t * _abs_scatter(node, vals)
    return hitrows.spread(node, _hit(node, vals), e)


def _abs_scatter(node, vals) -> np.ndarray:
    """scatter_add of |rows| on the hit rows (both rules of a scatter read it)."""
    return vals.once("abs_scatter", lambda: hitrows.scatter(node, _hit(node, vals),
                                                            vals.magnitudes[0]))


def _hit(node, vals) -> hitrows.Hit:
    """The rows a scatter's ids hit, found once per node."""
    return vals.once("hit", lambda: hitrows.hit(node, list(vals)))


def _is_zero(e) -> bool:
    """Whether ``e`` is one 0 broadcast (a leaf's or a constant's E: ``_zeros``)."""
    return isinstance(e, np.ndarray) and e.size > 0 and not any(e.strides) and e.flat[0] == 0


RULES: dict[str, Callable] = {
    "map": _b_map, "einsum": _b_einsum, "sum": _b_sum, "max": _b_max, "stop": _b_stop,
    "onehot": _b_zero, "reshape": _b_same, "transpose": _b_same, "broadcast": _b_same,
    "take": _b_same, "scatter_add": _b_scatter,
}


# --- the probabilistic scale: sigma ----------------------------------------------------------

def _s_einsum(node, vals, sig, value, count, n0):
    alpha, beta = _own(node, count, value, n0)
    if count is None and vals.in_rows() is not None:
        a = _own(node, count, value, None)[0]
        return _with_value(vals.rows_pair(value, a, alpha)[1], beta, value)
    A = vals.contraction() if live(alpha) else None
    long = _einsum_terms(node) > n0  # beyond n0 terms, at least worst / sqrt(n0)
    ones = [i for i, s in enumerate(sig) if live(s)]
    def quad(i: int) -> np.ndarray:  # einsum(x_1^2 .. sigma_i^2 .. x_k^2)
        sq = vals.squares
        return VALUE_RULES["einsum"](node, _T, sq[:i] + [sig[i] * sig[i]] + sq[i + 1:], None)
    quads = [quad(i) for i in ones] if not long and fuses(A, ones, beta) else None
    total = einsum_total(A, alpha, quads, value, beta, quads=True) if quads else None
    if total is None:  # numpy's steps (a quadrature's squares underflowed: re-formed)
        total = _times(A, alpha) if A is not None else 0.0
        for q, i in enumerate(ones):
            r = root_or_linear(quads[q] if quads else quad(i), lambda i=i: vals.term(i, "sigma"))
            total = _plus(total, np.maximum(r, vals.term(i, "sigma") / np.sqrt(n0), out=r)
                          if long else r)  # einsum(.. sigma_i ..) / sqrt(n0) at least
        total = _with_value(total, beta, value)
    if isinstance(total, np.ndarray) and total.shape == np.shape(value):
        return total  # the rule's own array: writeable (``_at_most`` may reuse it)
    return np.broadcast_to(total, np.shape(value))


def _s_sum(node, vals, sig, value, count, n0):
    axes = tuple(a + 1 for a in node.attrs["axes"])
    quad = root(lambda sq: np.sum(sq, axis=axes), sig[0])
    if np.prod([node.args[0].shape[a - 1] for a in axes]) > n0:
        quad = np.maximum(quad, np.sum(sig[0], axis=axes) / np.sqrt(n0))
    alpha, beta = _own(node, count, value, n0)
    return _with_value(quad + alpha * _abs_sum(vals, axes), beta, value)


def _s_scatter(node, vals, sig, value, count, n0):
    """sigma of a scatter_add, on the hit rows only (``_b_scatter``: 0 on every other row)."""
    t = max(int(np.prod(node.args[1].shape)) - 1, 0)
    at = _hit(node, vals)
    s = root(lambda sq: hitrows.scatter(node, at, sq), sig[0])
    if t + 1 > n0:
        s = np.maximum(s, hitrows.scatter(node, at, sig[0]) / np.sqrt(n0))
    if t:
        s = s + _growth(t, n0) * _abs_scatter(node, vals)
    return hitrows.spread(node, at, s)


def _at_most(E: np.ndarray, lam: float, sigma: np.ndarray, reuse: bool = False) -> np.ndarray:
    """min(E, lam * sigma), NaN-ignoring, formed in lam * sigma's array (one temporary; with
    ``reuse``, sigma's own array where it is a whole float64 one: nothing else reads it)."""
    reuse = (reuse and isinstance(sigma, np.ndarray) and sigma.flags.writeable
             and sigma.base is None and sigma.dtype == np.float64)
    if (isinstance(sigma, np.ndarray) and 0 not in sigma.strides
            and sigma.shape == np.broadcast_shapes(np.shape(E), sigma.shape)):
        out = sigma if reuse else np.empty_like(sigma)  # (laid out as lam * sigma would be)

        def piece(at: tuple) -> None:  # on the pool's threads: the same per-entry arithmetic
            with np.errstate(over="ignore"):
                o = np.multiply(lam, sigma[at], out=out[at])
                np.fmin(cut(E, at, sigma.shape), o, out=o)
        by_pieces(piece, out)
        return out
    with np.errstate(over="ignore"):  # lam * sigma past float64 is inf: then E (right)
        scaled = np.multiply(lam, sigma, out=sigma if reuse else None)
    return np.fmin(E, scaled, out=scaled if scaled.shape == np.broadcast_shapes(
        E.shape, scaled.shape) else None)


def _at_most_hit(node: Node, at: hitrows.Hit, E: np.ndarray, lam: float,
                 sigma: np.ndarray) -> np.ndarray:
    """``_at_most`` of a scatter's E and sigma, formed on its hit rows only: both are 0 on
    every other row, and so is min(0, lam * 0)."""
    return hitrows.spread(node, at, _at_most(hitrows.on_rows(node, at, E), lam,
                                             hitrows.on_rows(node, at, sigma)))


def _worst_rule(rule: Callable) -> Callable:
    return lambda node, vals, sig, value, count, n0: rule(node, vals, sig, value, count)


SIGMA_RULES: dict[str, Callable] = dict(
    {op: _worst_rule(rule) for op, rule in RULES.items()},
    einsum=_s_einsum, sum=_s_sum, scatter_add=_s_scatter, map=_s_map)


def evaluate_bound(outputs: Iterable[Node], leaves: Mapping[str, np.ndarray], *,
                   progress=None, mode: str = "worst",
                   sigmas: float = 8.0, sqrt_terms: int = 1024,
                   exact_zeros: bool = True,
                   emit: Callable[[int, np.ndarray], None] | None = None,
                   tie: float = NEAR_TIE) -> list[np.ndarray]:
    """E of each output (float64, with the batch axis), from float64 values of ``leaves``.

    Arguments:
        outputs: nodes (typically the loss and its gradient nodes).
        leaves: block name -> array (N, *shape).
        progress: optional callable(done, total).
        mode: "worst" (the first-order worst case) or "probabilistic" (min(E, sigmas * sigma),
            the module docstring).
        sigmas: lam of the probabilistic mode.
        sqrt_terms: n0 of the probabilistic mode: sqrt growth up to n0 terms, linear beyond.
        exact_zeros: count only the terms that may be nonzero (False: every term, the rule
            before exact zeros were tracked; kept for scripts/bound_tightness.py).
        emit: called with (index in ``outputs``, its E) as each output's E is final, then
            dropped (the run's E filled block by block: no second whole copy).
        tie: the band near a Max/Min tie where the computed arguments may cross,
            |a - b| <= tie (Ea + Eb) (``symgrad.compare.tolerance.tie_band`` of the compared
            dtypes; the default ``rounding.NEAR_TIE`` holds for every dtype).
    Returns:
        One array per output, broadcast to (N, *shape) (with ``emit``: None each).
    """
    token = TIE.set(tie)
    try:
        return _walk(outputs, leaves, progress=progress, mode=mode, sigmas=sigmas,
                     sqrt_terms=sqrt_terms, exact_zeros=exact_zeros, emit=emit)
    finally:
        TIE.reset(token)


_FORMED_UNREAD = ("einsum", "scatter_add")  # ops whose rules read only their operands: an
#   output no node reads has its value's shape only (GPT-2's token-embedding gradient: a
#   50257 x 768 scatter, 309 MB zeroed and added into, was the 64-token walk's peak)


def _shape_of(node: Node, args) -> np.ndarray:
    """An einsum's or a scatter's value only its shape is read of (an output no node reads):
    not formed."""
    return np.broadcast_to(np.float64(np.nan), (max(np.shape(v)[0] for v in args),) + node.shape)


def _walk(outputs, leaves, *, progress, mode, sigmas, sqrt_terms, exact_zeros,
          emit) -> list[np.ndarray]:
    """``evaluate_bound``'s walk over the program, under its ``tie`` band."""
    if mode not in MODES:
        raise SymgradError(f"entry_bound={mode!r}: choose one of {', '.join(MODES)}")
    prob, n0 = mode == "probabilistic", sqrt_terms
    outputs = list(outputs)
    walk = plan(outputs)  # a large program's forward layers computed again in its backward
    out_ids = {o.id for o in outputs}
    read = {a.id for node in walk.steps for a in node.args}  # nodes a later node reads
    index: dict[int, list[int]] = {}
    for k, o in enumerate(outputs):
        index.setdefault(o.id, []).append(k)
    final: dict[int, np.ndarray] = {}
    vals: dict[int, np.ndarray] = {}
    errs: dict[int, np.ndarray] = {}
    sigs: dict[int, np.ndarray] = {}
    nonzero: dict[int, np.ndarray | None] = {}
    shared = SharedLeaves(walk.steps)  # |x|, |x|^2 of leaves read close together
    hits: dict[int, tuple] = {}  # a scatter's hit rows: E and sigma are 0 on every other row
    n = max(np.shape(v)[0] for v in leaves.values())
    done = 0
    for i, node in enumerate(walk.steps):
        if node.op in ("param", "input", "const"):
            if node.op == "const":
                vals[node.id] = node.attrs["value"][None]
            else:
                v = np.asarray(leaves[node.name])
                vals[node.id] = (v.astype(np.int64) if node.integer
                                 else np.asarray(v, dtype=np.float64))  # no copy of float64
            errs[node.id] = sigs[node.id] = _zeros(node)
            nonzero[node.id] = leaf_nonzero(node, vals[node.id]) if exact_zeros else None
        else:
            args = Operands(node, [vals[a.id] for a in node.args],
                            errors=[errs[a.id] for a in node.args],
                            sigmas=[sigs[a.id] for a in node.args] if prob else None,
                            long=prob and node.op == "einsum" and _einsum_terms(node) > n0,
                            shared=shared, n0=n0)
            unread = node.id not in read  # an output only: its value and zeros unused
            with np.errstate(all="ignore"), gemm_threads(node, n, _einsum_terms):
                vals[node.id] = (_shape_of(node, args) if unread and node.op in _FORMED_UNREAD
                                 else VALUE_RULES[node.op](node, _T, args, None))
                nz = [nonzero[a.id] for a in node.args]
                if node.op == "onehot":
                    counts, nonzero[node.id] = None, vals[node.id] if exact_zeros else None
                else:
                    counts = NONZERO_RULES[node.op](node, args, nz)
                    nonzero[node.id] = None if unread or counts is None else (
                        (counts > 0).astype(np.float64) if node.op in ("einsum", "sum")
                        else counts)
                pair = map_both(node, args, [errs[a.id] for a in node.args],
                                [sigs[a.id] for a in node.args], vals[node.id]) if (
                    prob and node.op == "map") else None  # a map: E and sigma in one pass
                if pair is not None:
                    errs[node.id], sigs[node.id] = pair
                else:
                    errs[node.id] = RULES[node.op](node, args, [errs[a.id] for a in node.args],
                                                   vals[node.id], counts)
                if node.op == "scatter_add":
                    hits[node.id] = _hit(node, args)
                if prob and pair is None:
                    sigs[node.id] = SIGMA_RULES[node.op](node, args, [sigs[a.id] for a in
                                                                      node.args],
                                                         vals[node.id], counts, sqrt_terms)
            shared.after(i, node)
        for a in walk.frees[i]:  # no later step reads these: an output's E is final
            if a.id in errs:
                if a.id in out_ids:  # the output's E now; its working arrays go (GPT-2: the
                    #                  value, error, sigma and nonzero of 163M entries at once)
                    final[a.id] = np.broadcast_to(
                        _at_most_hit(a, hits[a.id], errs[a.id], sigmas, sigs[a.id])
                        if prob and a.id in hits else
                        _at_most(errs[a.id], sigmas, sigs[a.id], reuse=a.id not in read)
                        if prob else errs[a.id],
                        (n,) + a.shape)
                    for k in (index[a.id] if emit is not None else ()):
                        emit(k, final[a.id])
                    if emit is not None:
                        final[a.id] = None
                for d in (vals, errs, sigs, nonzero, hits):
                    d.pop(a.id, None)
        done += not walk.again[i]  # a recomputed node counts once
        if progress is not None and not walk.again[i]:
            progress(done, walk.walked)
    return [final[o.id] for o in outputs]
