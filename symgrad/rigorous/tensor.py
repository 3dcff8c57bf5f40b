"""The rigorous enclosure of a tensor program (``symgrad.rigorous.balls`` has the theorem): the
double-double oracle's ball kernels with every operation widened by its own rounding, walked
over the derived program (``tensor_balls``), and the lazy per-entry radii (``tensor_enclosure``);
the same walk unranged, for the entries whose enclosure reaches a singular point
(``singular_entries``, ``singular`` has the rule).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from flint import arb, ctx

from ..backends import arb as arb_backend
from ..precise import walk
from ..precise.arb import ArbKernels, ArbOps
from ..precise.arb_select import place, selection, times_one
from ..precise.contract import axes as _axes
from ..precise.contract import parse
from ..tensor.interpret import evaluate as run
from ..tensor.views import flat_balls
from .balls import PREC, Enclosure, Rounding, Unbounded, nonnegative, spread, union
from .exact_int import exact_integer_einsum, exact_integer_rows, integer_rows
from .singular import SingularRounding, reason
from .torch_forms import RULES

WALK_ERRORS = (Unbounded, arb_backend.Imprecise, ValueError, ZeroDivisionError, OverflowError)


def _rounded_kernels(R: Rounding):
    """ArbKernels whose every operation is widened by its own rounding (module docstring)."""

    def uf(f, nin=1):
        return np.frompyfunc(f, nin, 1)
    fun = {}
    for key, impl in ArbKernels.functions.items():
        name = getattr(key, "__name__", str(key))
        if name in ("Abs", "sign", "Max", "Min", "Heaviside", "DiracDelta"):
            fun[key] = impl  # exact
        else:
            fun[key] = (lambda impl, name: lambda k, *xs: uf(R.rfun)(
                _noted(R, f"{name}(x)", xs, impl(k, *xs))))(impl, name)

    class RoundedKernels(ArbKernels):
        name = "ARB (rounded)"
        functions = fun

        def constant(self, value, shape):
            out = np.empty(shape, dtype=object)
            out[...] = R.constant(sp.sympify(value))
            return out

        def add(self, a, b): return uf(R.rsum, 2)(a, b)
        def mul(self, a, b): return uf(lambda x, y: R.rprod(1, x, y), 2)(a, b)
        def div(self, a, b): return uf(R.rdiv, 2)(a, b)
        def pow_int(self, a, n): return uf(lambda v: R.ripow(v, n))(a)

        def pow_rational(self, a, p, q):
            return uf(R.rfun)(_noted(R, f"x**({p}/{q})", (a,),
                                     ArbKernels.pow_rational(self, a, p, q)))

        def pow_general(self, a, b):
            return uf(R.rfun)(_noted(R, "x**y", (a, b), ArbKernels.pow_general(self, a, b)))

        def sum_terms(self, terms):
            if len(terms) <= 30:  # numpy ufuncs take at most 32 operands
                return uf(R.rsum, len(terms))(*terms)
            exact, mag = terms[0], _absup(terms[0])
            for t in terms[1:]:
                exact, mag = exact + t, mag + _absup(t)
            g = R.gamma(len(terms) - 1)
            return uf(lambda v, m: R.widen(v, g, m), 2)(exact, mag)
    return RoundedKernels()


def _noted(R: Rounding, name: str, args: tuple, out):
    """``out``, shown first to a watching rounding model (``Rounding.note``)."""
    if R.watch:
        R.note(name, args, out)
    return out


class _Walk(walk._Walk):
    """The walk as the backends compute: no stable rewrites, an n-term Add one sum."""

    def _add(self, e):
        return self.k.sum_terms([self.value(t) for t in e.args])

    def _eval(self, e):
        if isinstance(e, sp.log):
            f = self.k.functions[sp.log]
            return f(self.k, self.value(e.args[0]))
        return super()._eval(e)


def _walk_value(k, expr, args: dict):
    """``precise.walk.evaluate`` without its stable rewrites (1 + tanh -> 2 sigmoid, exp - 1 ->
    expm1, log(1 + u) -> log1p): the enclosure rounds what the backends compute, and an
    n-term Add is one order-free sum."""
    expr = sp.sympify(expr)
    shapes = [np.shape(v) for v in args.values()]
    shape = np.broadcast_shapes(*shapes) if shapes else ()
    bargs = {s: v if np.shape(v) == shape else np.broadcast_to(v, shape)
             for s, v in args.items()}
    with np.errstate(all="ignore"):
        return _Walk(k, bargs, shape).value(expr)


class RoundedArbOps:
    """The ARB table (``symgrad.precise.arb.ArbOps``) with every operation widened by its
    rounding in ``dtype``: elementwise ops as in the scalar model, sums, contractions and
    scatter-adds by gamma_(n-1) sum |terms| (n the terms per output, any order); a contraction
    of exact small integers (``exact_int``) exactly."""

    def __init__(self, dtype: str, function_ulps: float, prec: int = PREC, *,
                 exact: bool = False, rounding: Rounding | None = None) -> None:
        self.R = rounding if rounding is not None else Rounding(dtype, function_ulps,
                                                                strict=False, exact=exact)
        self.exact = ArbOps(prec)
        self.prec = prec
        self.kernels = _rounded_kernels(self.R)
        self.name = f"ARB rounded ({dtype})"

    def __getattr__(self, name):  # layout: reshape, transpose, take, diagonal, ...
        return getattr(self.exact, name)

    def _widen_each(self, exact, mag, n: int, nonneg=None):
        R = self.R
        g = R.gamma(n - 1)

        def w(v, m, nn=False):
            r = R.widen(v, g, m)
            return nonnegative(r) if nn else r
        if nonneg is None:
            return np.asarray(np.frompyfunc(w, 2, 1)(exact, mag), dtype=object)
        return np.asarray(np.frompyfunc(w, 3, 1)(exact, mag, nonneg), dtype=object)

    def asarray(self, x):
        a = np.asarray(x)
        if a.dtype == object:
            return a
        with ctx.workprec(self.prec):
            fl = a.astype(np.float64)
            out = self.exact.asarray(fl)
            if self.R.digits < 52 and not self.R.exact:  # a float64 constant the dtype
                #                                            does not hold: rounded
                held = fl.astype(np.float32 if self.R.dtype != "float16" else np.float16)
                bad = np.flatnonzero((held.astype(np.float64) != fl).reshape(-1))
                flat = out.reshape(-1)
                for i in bad:
                    flat[i] = self.R.widen(flat[i], self.R.u)
        return out

    def constant(self, c, shape=()):
        with ctx.workprec(self.prec):
            return self.kernels.constant(c, tuple(shape))

    def map(self, expr, args: dict):
        with ctx.workprec(self.prec):
            out = _walk_value(self.kernels, expr, {s: self.asarray(v) for s, v in args.items()})
        return np.asarray(out, dtype=object)

    def sum(self, x, axis=None, keepdims: bool = False):
        x = np.asarray(x, dtype=object)
        axes = _axes(axis, x.ndim)
        n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        with ctx.workprec(self.prec):
            s = self.exact.sum(x, axis, keepdims)
            mag = self.exact.sum(_absup(x), axis, keepdims)
            nonneg = np.all(np.asarray(_is_nonneg_u(x), dtype=bool), axis=axes, keepdims=keepdims)
            return self._widen_each(s, mag, n, nonneg)

    def einsum(self, spec: str, *operands):
        """The rounded product; over a batch of samples (the interpreter's spec: each operand's
        first letter the output's) each sample's entries as its walk alone gives them: the
        rows whose operands are all exact integers are exact where each alone is
        (``exact_int.exact_integer_rows``), the others are taken together."""
        ops = [self.asarray(o) for o in operands]
        rows = integer_rows(spec, ops)
        if rows is None:
            return self._einsum(spec, ops)
        at = np.flatnonzero(rows)
        ok, exact = exact_integer_rows(spec, ops, at, digits=self.R.digits)
        if ok.all() and len(at) == len(rows):
            return exact
        out = np.empty((len(rows),) + exact.shape[1:], dtype=object)
        out[at[ok]] = exact
        rest = np.ones(len(rows), bool)
        rest[at[ok]] = False
        if rest.any():
            out[rest] = self._einsum(spec, [o[rest] for o in ops])
        return out

    def _einsum(self, spec: str, ops: list):
        terms, out = parse(spec, len(ops), [np.ndim(o) for o in ops])
        sizes: dict = {}
        for t, o in zip(terms, ops):
            for c, m in zip(t, np.shape(o)):
                sizes[c] = max(sizes.get(c, 1), m)
        n = int(np.prod([sizes[c] for c in set("".join(terms)) - set(out)] or [1]))
        with ctx.workprec(self.prec):
            whole = exact_integer_einsum(spec, ops, digits=self.R.digits)
            if whole is not None:  # exact small integers (an id read from its one-hot): no
                return whole       # order of float operations rounds them (``exact_int``)
            # an x beyond the range (a NaN ball) leaves the other entries' finite results
            # exact 0s (0 * inf is NaN: judged as non-finite; ``Rounding.rprod``'s zero
            # factor); not in the singular walk, which asks which entries may be non-finite
            picked = selection(spec, ops, finite_results=self.R.finite_results)
            if picked is not None:  # a 0/1 selector: x * 1 + exact 0s, and sum |terms| is
                #                     |x| * 1 + 0s; the same widening as the general product
                sel, mask, shape = picked  # (an exact 0 entry: one widened 0 for them all)
                zero = np.array([arb(0)], dtype=object)
                return place(self._widen_each(times_one(sel), times_one(_absup(sel)),
                                              n + len(ops) - 1), mask, shape,
                             self._widen_each(zero, zero, n + len(ops) - 1)[0])
            s = self.exact.einsum(spec, *ops)
            mag = self.exact.einsum(spec, *[_absup(o) for o in ops])
            return self._widen_each(s, mag, n + len(ops) - 1)

    def amax(self, x, axis=None, keepdims: bool = False):
        return self.exact.amax(x, axis, keepdims)

    def scatter_add(self, x, idx, axis: int, size: int):
        counts = np.zeros(size, dtype=np.int64)
        np.add.at(counts, np.asarray(idx).reshape(-1) % size, 1)
        with ctx.workprec(self.prec):
            s = self.exact.scatter_add(x, idx, axis, size)
            mag = self.exact.scatter_add(_absup(np.asarray(x, dtype=object)), idx, axis, size)
            return self._widen_each(s, mag, int(max(counts.max(initial=1), 1)))

    def where(self, mask, a, b):
        return np.where(np.asarray(mask, dtype=bool), self.asarray(a), self.asarray(b))


_absup = np.frompyfunc(lambda v: abs(arb_backend._a(v)).upper() if arb_backend._a(v).is_finite()
                       else arb.nan(), 1, 1)
_is_nonneg_u = np.frompyfunc(lambda v: bool(arb_backend._a(v) >= 0), 1, 1)


def tensor_balls(model, values: dict, row: int, dtype: str, function_ulps: float, *,
                 exact: bool = False, rounding: Rounding | None = None) -> np.ndarray:
    """The output balls (value, then every gradient entry) of one sample of a tensor model's
    derived program in rounded ball arithmetic (``RoundedArbOps``; ``exact``: unwidened); a
    max reduction's derivative knows its maximum is one of its entries (``max_top``), and a
    VJP map tagged with torch's own backward formula holds that formula's value too
    (``torch_forms``). ``rounding``: another rounding model (``singular``'s, unranged)."""
    ops = RoundedArbOps(dtype, function_ulps, exact=exact, rounding=rounding)
    one = {k: np.asarray(v)[row:row + 1] for k, v in values.items()}
    with ctx.workprec(PREC):
        outs = run(model.gradient.outputs, ops, one, rules=RULES)
    return flat_balls(model, outs)


def _rows_balls(model, values: dict, rows: list, dtype: str, function_ulps: float, *,
                exact: bool = False) -> list:
    """``tensor_balls`` of several rows in one walk: the same balls, bit for bit (every op of
    the rounded ARB table acts on each sample apart: products per batch entry, sums, widenings
    and elementwise kernels per output entry; an einsum's exact-integer case decided per
    sample, ``RoundedArbOps.einsum``)."""
    ops = RoundedArbOps(dtype, function_ulps, exact=exact)
    part = {k: np.asarray(v)[rows] for k, v in values.items()}
    with ctx.workprec(PREC):
        outs = [np.asarray(o, dtype=object)
                for o in run(model.gradient.outputs, ops, part, rules=RULES)]
    return [flat_balls(model, [o[i:i + 1] if o.shape[0] > 1 else o for o in outs])
            for i in range(len(rows))]


def tensor_enclosure(model, values: dict, hi: np.ndarray, lo: np.ndarray, dtype: str,
                     function_ulps: float, *, textbook=None) -> Enclosure:
    """The lazy ``Enclosure`` of a tensor model's derived program (``values``: the compared
    samples, hi/lo the oracle's rows for them); with ``textbook`` (the same function as its
    textbook program, for a user's torch_fn) the union of the two programs' enclosures, as
    the deleted scalar pipeline's ``scalar_enclosure`` did."""
    programs = [model] if textbook is None else [model, textbook]

    def one(program, r: int, width: int) -> np.ndarray:
        try:
            balls = list(tensor_balls(program, values, r, dtype, function_ulps))
            centre = list(tensor_balls(program, values, r, dtype, function_ulps, exact=True))
        except WALK_ERRORS:
            balls = centre = None
        return spread([balls], [centre], (1, width))[0]

    def together(program, rows: list, width: int) -> list:
        """``one`` of each row, small programs' rows in one walk (a scatter_add widens by the
        most ids of any row in its batch: walked one at a time there); a chunk that raises
        is halved until the row that raises walks alone (the same balls either way)."""
        if len(rows) < 2 or any(n.op == "scatter_add" for n in program.gradient.nodes):
            return [one(program, r, width) for r in rows]
        per = sum(n.size for n in program.gradient.nodes)  # at most this many balls a row
        step = max(1, (1 << 20) // max(per, 1))  # (72 B each: <= ~80 MB of balls a chunk;
        #   a chunk's walk costs per node as much as per ball for small nodes: 2^16 was 20 %
        #   of the sign-flip mutant's verify, 200 rows of simplenet's 6370 in 22 chunks)

        def walked(chunk: list) -> list:
            if len(chunk) == 1:
                return [one(program, chunk[0], width)]
            try:
                balls = _rows_balls(program, values, chunk, dtype, function_ulps)
                centre = _rows_balls(program, values, chunk, dtype, function_ulps, exact=True)
            except WALK_ERRORS:  # (a 2^20-ball chunk walked row by row was its whole cost)
                half = len(chunk) // 2
                return walked(chunk[:half]) + walked(chunk[half:])
            return list(spread(balls, centre, (len(chunk), width)))
        return [r for i in range(0, len(rows), step) for r in walked(rows[i:i + step])]

    def radii_of(rows: np.ndarray) -> np.ndarray:
        rows = [int(r) for r in rows]
        parts = [together(p, rows, hi.shape[1]) for p in programs]
        return np.array([union(*[part[i] for part in parts]) for i in range(len(rows))])

    def singular_of(rows: np.ndarray) -> tuple[np.ndarray, dict]:
        return singular_entries(programs, values, rows, hi.shape[1], dtype, function_ulps)
    return Enclosure(radii_of, singular_of)


def singular_entries(programs: list, values: dict, rows: np.ndarray, width: int, dtype: str,
                     function_ulps: float) -> tuple[np.ndarray, dict[int, str]]:
    """Which entries of these samples the rounded enclosure cannot keep away from a singular
    point (``rigorous.singular``), and why, per sample.

    Arguments:
        programs: the tensor models whose derived programs correct code may run (the model;
            for a user's torch_fn also its textbook program): reached in any of them counts.
        values: the compared samples' inputs (name -> (N, ...)).
        rows: the samples to walk (indices into ``values``).
        width: the entries per sample (1 + parameters).
        dtype, function_ulps: the rounding model.
    Returns:
        (len(rows), width) bool, True where reached; and row position -> the reason, one line
        naming the singular operation(s) and their argument's enclosure.

    >>> import sympy as sp
    >>> import symgrad.tensor as st
    >>> from symgrad.tensor.model import TensorModel
    >>> w, v = st.param("w", ()), st.param("v", ())
    >>> norm = TensorModel("n", st.sum_(st.map_(  # ||(w - 1/10, v)||: 0.1 is 5.6e-18 off
    ...     sp.sqrt((st.X[0] - sp.Rational(1, 10)) ** 2 + st.X[1] ** 2), w, v)))
    >>> at = {"w": np.array([0.1]), "v": np.array([0.0])}
    >>> mask, why = singular_entries([norm], at, np.array([0]), 3, "float64", 4.0)
    >>> mask.tolist(), "x**(-1/2) at x in [" in why[0]
    ([[True, True, False]], True)
    >>> at["w"] = np.array([0.3])  # the norm's argument clear of 0: nothing reached
    >>> singular_entries([norm], at, np.array([0]), 3, "float64", 4.0)[0].tolist()
    [[False, False, False]]
    """
    mask = np.zeros((len(rows), width), bool)
    why: dict[int, str] = {}
    for i, r in enumerate(np.asarray(rows, dtype=int)):
        events: list[str] = []
        reached = []  # which programs' balls reached a singular point
        for program in programs:
            R = SingularRounding(dtype, function_ulps)
            try:
                with ctx.workprec(PREC):
                    balls = tensor_balls(program, values, int(r), dtype, function_ulps,
                                         rounding=R)
            except WALK_ERRORS:
                continue
            if not R.events:
                continue
            bad = np.array([not arb_backend._a(b).is_finite() for b in balls], bool)
            if bad.any():
                mask[i] |= bad
                events = events or R.events
                reached.append(program)
        if reached:  # only the textbook program (the formula as written): say the stable one
            stable = getattr(programs[0], "rewrites", ())  # symgrad runs stays clear
            why[i] = reason(events, dtype, tuple(stable) if programs[0] not in reached else ())
    return mask, why
