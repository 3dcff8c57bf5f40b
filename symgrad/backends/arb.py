"""The oracle's target: the scalar program in certified ball arithmetic (python-flint ``arb``).

Every value is a ball [mid +- rad] that provably contains the exact real number, so the oracle
knows how good its answer is and raises the precision until it is good enough
(``symgrad.oracle``). Where a ball is too wide to decide a branch (a kink's side, a log's domain,
a division by a ball holding 0) the evaluation raises ``Imprecise``: more bits are needed.
python-flint covers every function of the vocabulary (mpmath is not needed here).

Non-smooth nodes are *kink sites* (``Kinks``): a Heaviside/sign argument, a Piecewise condition
(its two sides), and which argument of an n-ary Max/Min wins. A site counts as reached when its
argument is within its own rounding-error bound of the kink (``Kinks.allow``, one per site and
sample); the oracle then evaluates the program from every side of every reached kink, with sites
of one kink (the same argument up to sign) taking the same side: a smooth function written with
Abs/Max (a stable softplus) gives the same derivative from both sides, so it has no kink.

>>> import sympy as sp
>>> from flint import arb
>>> from symgrad.codegen import compile_program
>>> x = sp.Symbol("x", real=True)
>>> t = target()
>>> f = compile_program([], [x], [sp.log(1 - 1 / (1 + sp.exp(-x)))], t)
>>> f([arb(152)])[0]  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
symgrad.backends.arb.Imprecise: ...
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import sympy as sp
from flint import arb, ctx, fmpq

from .. import functions
from ..codegen import Target, conditional_chain

NAN = arb.nan()


class Imprecise(Exception):
    """A ball is too wide to decide a branch or a domain at this precision: raise the bits."""


class Between(Exception):
    """A pass with local derivatives between the sides met a node that has no such value (a
    Piecewise condition chooses a branch): the oracle enumerates or relaxes instead."""


def _a(x) -> arb:
    return x if type(x) is arb else arb(x)


def _sign(x: arb) -> int | None:
    """The certain sign of a ball (0 for exact zero), None when the ball straddles 0."""
    if x > 0:
        return 1
    if x < 0:
        return -1
    if x.is_zero():
        return 0
    return None


# ---------------------------------------------------------------- real-domain functions
def _need(sign: int | None) -> int:
    if sign is None:
        raise Imprecise("a ball holds the boundary of a function's domain")
    return sign


def rlog(x):
    x = _a(x)
    return x.log() if _need(_sign(x)) > 0 else NAN


def rlog1p(x):
    x = _a(x)
    return x.log1p() if _need(_sign(x + 1)) > 0 else NAN


def rsqrt(x):
    x = _a(x)
    s = _need(_sign(x))
    return x.sqrt() if s > 0 else (arb(0) if s == 0 else NAN)


def _unit(x, f):
    x = _a(x)
    if _need(_sign(x + 1)) >= 0 and _need(_sign(1 - x)) >= 0:
        return f(x)
    return NAN


def rasin(x):
    return _unit(x, arb.asin)


def racos(x):
    return _unit(x, arb.acos)


def rpow(b, e):
    """b ** e for an exponent that is not an integer literal: real for b > 0; for b < 0 only
    where e is exactly an integer (``w**p`` at p = 2, 3: an integer power, as torch computes
    it); at b = 0: 0 for e > 0, 1 for e = 0 (torch's and numpy's 0**0), undefined below."""
    b, e = _a(b), _a(e)
    s = _need(_sign(b))
    if s > 0:
        return b ** e
    if e.is_integer():  # exact: a leaf or an exact sum of leaves (y - 1)
        return ipow(b, int(e.unique_fmpz()))
    if s == 0:
        return arb(0) if _need(_sign(e)) > 0 else NAN
    return NAN


def ipow(b, k: int):
    """b ** k for an integer k; 1/0 is undefined (NaN), a ball holding 0 needs more bits."""
    b = _a(b)
    if k >= 0:
        return b ** k
    s = _need(_sign(b))
    if s == 0:
        return NAN
    return 1 / b if k == -1 else (1 / b) ** (-k)


def _nan_propagating(pick):
    def f(*xs):
        xs = [_a(x) for x in xs]
        if any(x.is_nan() for x in xs):
            return NAN
        out = xs[0]
        for x in xs[1:]:
            out = pick(out, x)
        return out
    return f


def _fn(name):
    method = getattr(arb, name)
    return lambda x: method(_a(x))


class FlatZero(arb):
    """A local derivative that is 0 because its step is certainly on a flat side (Heaviside of
    a negative argument, an argument that loses its Max): the path through it is constant near
    the sample, so it contributes 0 whatever it multiplies, even an adjoint that is undefined
    or infinite there (d sqrt(u)/du at u = relu(w) = 0, w < 0: the model is sqrt(0) + ... near
    w, and its derivative exists). Sums treat it as 0."""

    def __mul__(self, other):
        return self

    __rmul__ = __mul__


FLAT = FlatZero(0)


# ---------------------------------------------------------------- kink sites
@dataclass(frozen=True)
class Site:
    """One non-smooth node of the program.

    kind: "sign" (Heaviside / sign of ``arg``), "rel" (a Piecewise condition ``lhs op rhs``,
    ``arg = lhs - rhs``) or "select" (``Heaviside(X - Max(others))``: whether X wins an n-ary
    Max/Min). Sites with one ``key`` are one kink and take one side together; ``orient`` is the
    sign of ``arg`` relative to the key (sign, rel); ``member`` is X's index among the members.
    """

    kind: str
    key: object
    arg: sp.Expr  # distance from the kink: its rounding bound decides whether it is reached
    orient: int = 1
    member: int = 0
    op: object = None  # rel: the comparison


@dataclass
class Kinks:
    """Per-evaluation state of the kink sites (one per compiled program)."""

    sites: list[Site] = field(default_factory=list)
    allow: object = None  # per site: |arg| <= allow[i] counts as reached (None: exact 0 only)
    dirs: dict = field(default_factory=dict)  # key -> side (+-1) or winning member, per pass
    reached: dict = field(default_factory=dict)  # key -> the sides / members possible here
    # key -> a local derivative between the sides, per pass (``symgrad.oracle``'s affine test
    # and enclosure): a sign key's side d in [-1, 1] (Heaviside (1 + d) / 2, sign d), a select
    # key's weight per member (a point of the simplex); balls give an enclosure over them all
    weights: dict = field(default_factory=dict)

    def _reached(self, i: int, x: arb) -> bool:
        allow = 0.0 if self.allow is None else float(self.allow[i])
        return bool(abs(x.mid()) <= arb(allow if allow == allow else 0.0))

    def side(self, i: int, x) -> int:
        """The sign of site i's argument: from the pass's side at a reached kink, else exact."""
        x = _a(x)
        site = self.sites[i]
        if x.is_nan():
            return None  # an undefined argument: undefined result
        if self._reached(i, x):
            self.reached.setdefault(site.key, set()).update((-1, 1))
            d = self.dirs.get(site.key)
            if d is not None:
                return site.orient * d
            s = _sign(x)
            return s if s is not None else (1 if x.mid() > 0 else (-1 if x.mid() < 0 else 0))
        return _need(_sign(x))

    def _weight(self, i: int, x: arb):
        """Site i's weight in this pass (a reached kink of a weighted key), else None."""
        site = self.sites[i]
        if site.key not in self.weights or x.is_nan() or not self._reached(i, x):
            return None
        self.reached.setdefault(site.key, set()).update((-1, 1))
        return site.orient * self.weights[site.key]

    def heaviside(self, i, x, h0):
        d = self._weight(i, _a(x))
        if d is not None:
            return (1 + d) / 2
        s = self.side(i, x)
        return NAN if s is None else (1 if s > 0 else (FLAT if s < 0 else h0))

    def sign(self, i, x):
        d = self._weight(i, _a(x))
        if d is not None:
            return d
        s = self.side(i, x)
        return NAN if s is None else s

    def rel(self, i, lhs, rhs):
        if self._weight(i, _a(lhs) - _a(rhs)) is not None:
            raise Between("a Piecewise condition takes one branch: no side in between")
        s = self.side(i, _a(lhs) - _a(rhs))
        return False if s is None else self.sites[i].op(s, 0)

    def select(self, i, x, members, h0):
        """Heaviside(X - Max(others)) (or Min(others) - X): 1 when member X wins."""
        x = _a(x)
        site = self.sites[i]
        if x.is_nan():
            return NAN
        if self._reached(i, x):
            ms = [_a(m) for m in members]
            best = ms[0]
            for m in ms[1:]:
                best = best.max(m) if site.op == "max" else best.min(m)
            tied = {j for j, m in enumerate(ms) if self._reached(i, m - best)}
            tied.add(site.member)
            self.reached.setdefault(site.key, set()).update(tied)
            if site.key in self.weights:
                return self.weights[site.key].get(site.member, arb(0))
            choice = self.dirs.get(site.key)
            if choice is not None:
                return 1 if choice == site.member else 0
            s = _sign(x)
            if s is None:
                s = 1 if x.mid() > 0 else (-1 if x.mid() < 0 else 0)
        else:
            s = _need(_sign(x))
            if s < 0:
                return FLAT
        return 1 if s > 0 else (0 if s < 0 else h0)


def _canonical(arg: sp.Expr) -> tuple[sp.Expr, int]:
    """(key, orient): ``arg = orient * c * key`` with c > 0, one key for arg and -arg."""
    c, rest = arg.as_coeff_Mul()
    orient = 1 if c >= 0 else -1
    if rest.could_extract_minus_sign():
        rest, orient = -rest, -orient
    return rest, orient


_RELS = {sp.StrictGreaterThan: operator.gt, sp.StrictLessThan: operator.lt,
         sp.GreaterThan: operator.ge, sp.LessThan: operator.le}


def _select_pattern(arg: sp.Expr):
    """``X - Max(others)`` -> ("max", X, others); ``Min(others) - X`` -> ("min", X, others)."""
    if not arg.is_Add or len(arg.args) != 2:
        return None
    for a, b in (arg.args, arg.args[::-1]):
        if isinstance(b, sp.Mul) and b.args[0] == -1 and len(b.args) == 2:
            inner = b.args[1]
            if isinstance(inner, sp.Max) and not isinstance(a, (sp.Max, sp.Min)):
                return "max", a, inner.args
            if isinstance(a, sp.Min) and not isinstance(inner, (sp.Max, sp.Min)):
                return "min", inner, a.args
    return None


def _node(kinks: Kinks):
    """The printer hook: every non-smooth node becomes a call of its site."""
    def hook(e: sp.Expr, pr) -> str | None:
        if isinstance(e, sp.Heaviside):
            arg = e.args[0]
            h0 = pr(e.args[1]) if len(e.args) > 1 else pr(sp.Rational(1, 2))
            sel = _select_pattern(arg)
            if sel is not None:
                op, x, others = sel
                members = sorted({x, *others}, key=sp.default_sort_key)
                i = _add(kinks, Site("select", ("select", op, tuple(members)), arg,
                                     member=members.index(x), op=op))
                return (f"kinks.select({i}, {pr(arg)}, ({', '.join(pr(m) for m in members)},),"
                        f" {h0})")
            key, orient = _canonical(arg)
            i = _add(kinks, Site("sign", ("sign", key), arg, orient))
            return f"kinks.heaviside({i}, {pr(arg)}, {h0})"
        if isinstance(e, sp.sign):
            key, orient = _canonical(e.args[0])
            i = _add(kinks, Site("sign", ("sign", key), e.args[0], orient))
            return f"kinks.sign({i}, {pr(e.args[0])})"
        if type(e) in _RELS:
            arg = e.lhs - e.rhs
            key, orient = _canonical(arg)
            i = _add(kinks, Site("rel", ("sign", key), arg, orient, op=_RELS[type(e)]))
            return f"kinks.rel({i}, {pr(e.lhs)}, {pr(e.rhs)})"
        return None
    return hook


def _add(kinks: Kinks, site: Site) -> int:
    kinks.sites.append(site)
    return len(kinks.sites) - 1


# ---------------------------------------------------------------- constants and the table
def constant(e: sp.Expr) -> arb:
    """A sympy number as a ball at the current precision (exact for rationals and floats)."""
    if e is sp.nan:
        return NAN
    if e in (sp.oo, -sp.oo):
        return arb.pos_inf() if e is sp.oo else arb.neg_inf()
    if e.is_Rational:
        return arb(fmpq(int(e.p), int(e.q)))
    if e.is_Float:
        r = sp.Rational(e)
        return arb(fmpq(int(r.p), int(r.q)))
    digits = int(ctx.prec * 0.30103) + 12
    v = sp.N(e, digits)
    if not v.is_real:
        raise TypeError(f"{e} is not real")
    return arb(str(v)) * arb(f"1 +/- 1e-{digits - 3}")


FUNCTIONS = functions.spellings("arb")  # sympy node -> arb spelling (symgrad.functions)
# the spellings that are python-flint's own ball methods (exp, erf, ...); the rest (rlog, rsqrt:
# NaN outside the real domain) are this module's functions
_ARB_METHODS = sorted(n for n in {t.split("(")[0] for t in FUNCTIONS.values() if isinstance(t, str)}
                      if hasattr(arb, n) and n not in globals())


def target() -> Target:
    """A fresh arb target; its ``kinks`` (namespace) collects the sites of what it prints."""
    kinks = Kinks()
    namespace = {name: _fn(name) for name in _ARB_METHODS}
    namespace.update({"rlog": rlog, "rlog1p": rlog1p, "rsqrt": rsqrt, "rasin": rasin,
                      "racos": racos, "rpow": rpow, "ipow": ipow, "NAN": NAN, "kinks": kinks,
                      "nanmax": _nan_propagating(arb.max), "nanmin": _nan_propagating(arb.min)})
    return Target("arb", FUNCTIONS, namespace, constant=constant,
                  piecewise=conditional_chain("NAN"),
                  logic_and="and", logic_or="or", node=_node(kinks))


def set_precision(fn, bits: int) -> None:
    """Recompute ``fn``'s constants (pi, 1/3, ...) at ``bits`` (call inside ``workprec``)."""
    if getattr(fn, "bits", None) == bits:
        return
    g = fn.__globals__
    for expr, name in fn.constants.items():
        g[name] = constant(expr)
    fn.bits = bits
