"""Stable rewrites of symgrad's *own* programs: a small table of rules, one per unstable pattern.

A model written in plain sympy (``-(z0 - log(exp(z0) + exp(z1)))``, ``1/(1 + exp(-w x))`` inside a
hand-written BCE) is the user's textbook formula; run literally in float32 it overflows where the
same function in a stable form does not (log-sum-exp at z1 = 200: exp(200) = inf). As Herbie does,
each rule here replaces one pattern by a form with *the same exact value* (each rule is a sympy
identity, checked at 40 digits by ``tests/test_stable.py``), reusing the stable forms of
``symgrad.ops.basic`` (logsumexp, softplus, sigmoid):

    log-sum-exp        log(Σ exp(a_i))           ->  m + log(Σ exp(a_i - m)),  m = max a_i
    softmax            exp(a) / Σ exp(a_i)       ->  exp(a - logsumexp(a_i))
    log-sigmoid        log(1/(1 + exp(-t)))      ->  -softplus(-t)
    log-one-minus-sig  log(1 - 1/(1 + exp(-t)))  ->  -softplus(t)
    softplus           log(1 + exp(t))           ->  t + log1p(exp(-t)) (t > 0), else log1p(exp(t))
    sigmoid            1/(1 + exp(-t))           ->  exp(-softplus(-t))
    one-minus-sigmoid  1 - 1/(1 + exp(-t))       ->  exp(-softplus(t))
    expm1              exp(x) - 1                ->  expm1(x)
    log1p              log(1 + x)                ->  log1p(x)

Only the executed (``"compute"``) view of a model is rewritten (``Graph.from_expr(rewrite=...)``):
the display view keeps the user's formula, so explanations and reports show what was written,
and a hand-written ``torch_fn`` keeps the allowance of the textbook composition
(``symgrad.verify.exact``). Steps made by ``symgrad.ops`` (those with their own partials or a
display form) are already stable and are left alone.

>>> import sympy as sp
>>> z0, z1 = sp.symbols("z0 z1")
>>> r = Rewriter()
>>> out = r(-(z0 - sp.log(sp.exp(z0) + sp.exp(z1))))
>>> r.applied
('log-sum-exp',)
>>> out.free_symbols - {z0}  # doctest: +ELLIPSIS
{logsumexp...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .graph import Intermediate, define, rewritable  # noqa: F401 (re-exported)
from .ops.basic import logsumexp
from .optable import OPS, X0


@dataclass(frozen=True)
class Rule:
    """One rewrite: ``textbook`` -> ``stable`` (the same exact function).

    ``identity(t, a, b)`` returns (textbook, stable) as plain sympy expressions over the given
    symbols, so a test can check the identity numerically at 40 digits.
    """

    name: str
    textbook: str
    stable: str
    identity: Callable[[sp.Symbol, sp.Symbol, sp.Symbol], tuple[sp.Expr, sp.Expr]]


def _softplus_plain(t: sp.Expr) -> sp.Expr:
    """softplus(t) in the op table's stable two-branch form: no overflow, no cancellation, and
    both branches one analytic function, so every derivative is exact at t = 0 too (the form
    max(t, 0) + log1p(e^-|t|) has a second derivative of 0 there in autograd and in sympy.diff:
    abs'(0) = sign(0) = 0, where the true one is sigma'(0) = 1/4; the HVP of a plain BCE at a
    zero logit was wrong). ``sg.ops.softplus`` and ``sg.ops.bce`` compute the same form."""
    return OPS["softplus"].formula.xreplace({X0: t})


def _lse_plain(xs) -> sp.Expr:
    m = sp.Max(*xs)
    return m + sp.log(sp.Add(*[sp.exp(x - m) for x in xs]))


def _sigmoid_plain(t: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-t))


RULES: tuple[Rule, ...] = (
    Rule("log-sum-exp", "log(Σ exp(a_i))", "m + log(Σ exp(a_i − m)), m = max a_i (stop-gradient)",
         lambda t, a, b: (sp.log(sp.exp(t) + sp.exp(a) + sp.exp(b)), _lse_plain([t, a, b]))),
    Rule("softmax", "exp(a) / Σ exp(a_i)", "exp(a − logsumexp(a_i))",
         lambda t, a, b: (sp.exp(a) / (sp.exp(t) + sp.exp(a) + sp.exp(b)),
                          sp.exp(a - _lse_plain([t, a, b])))),
    Rule("log-sigmoid", "log(1/(1 + exp(−t)))", "−softplus(−t)",
         lambda t, a, b: (sp.log(_sigmoid_plain(t)), -_softplus_plain(-t))),
    Rule("log-one-minus-sigmoid", "log(1 − 1/(1 + exp(−t)))", "−softplus(t)",
         lambda t, a, b: (sp.log(1 - _sigmoid_plain(t)), -_softplus_plain(t))),
    Rule("softplus", "log(1 + exp(t))", "t + log1p(exp(−t)) (t > 0), else log1p(exp(t))",
         lambda t, a, b: (sp.log(1 + sp.exp(t)), _softplus_plain(t))),
    Rule("sigmoid", "1/(1 + exp(−t)) (also exp(t)/(1 + exp(t)))", "exp(−softplus(−t))",
         lambda t, a, b: (sp.exp(t) / (1 + sp.exp(t)), sp.exp(-_softplus_plain(-t)))),
    Rule("one-minus-sigmoid", "1 − 1/(1 + exp(−t))", "exp(−softplus(t))",
         lambda t, a, b: (1 - _sigmoid_plain(t), sp.exp(-_softplus_plain(t)))),
    Rule("expm1", "exp(x) − 1", "expm1(x)", lambda t, a, b: (sp.exp(t) - 1, expm1(t))),
    Rule("log1p", "log(1 + x)", "log1p(x)",
         lambda t, a, b: (sp.log(1 + sp.exp(a) * t ** 2), log1p(sp.exp(a) * t ** 2))),
)


# ---------------------------------------------------------------- pattern helpers
def _exp_terms(s: sp.Expr) -> list[sp.Expr] | None:
    """The exponents a_i when ``s`` is Σ exp(a_i) (a positive constant c counts as exp(log c)),
    with at least one exp; else None."""
    if not s.is_Add:
        return None
    out, n_exp = [], 0
    for term in s.args:
        if isinstance(term, sp.exp):
            out.append(term.args[0])
            n_exp += 1
        elif term.is_number and term.is_positive:
            out.append(sp.log(term))
        else:
            return None
    return out if n_exp else None


def _logistic(e: sp.Expr) -> sp.Expr | None:
    """t when ``e`` is the logistic sigmoid of t: 1/(1 + exp(-t)), exp(t)/(1 + exp(t)), or a
    ``sg.ops.sigmoid`` step; else None."""
    if isinstance(e, Intermediate) and e.op == "sigmoid" and hasattr(e, "logit"):
        return e.logit
    if e.is_Pow and e.exp == -1:
        terms = _exp_terms(e.base)
        if terms is not None and len(terms) == 2 and 0 in terms:
            u = terms[1] if terms[0] == 0 else terms[0]
            return -u
        return None
    if e.is_Mul and len(e.args) == 2:
        for num, den in (e.args, e.args[::-1]):
            if isinstance(num, sp.exp) and den.is_Pow and den.exp == -1:
                terms = _exp_terms(den.base)
                v = num.args[0]
                if terms is not None and len(terms) == 2 and 0 in terms and v in terms:
                    return v
    return None


def _one_minus(e: sp.Expr) -> sp.Expr | None:
    """x when ``e`` is 1 - x; else None."""
    if e.is_Add and len(e.args) == 2 and sp.S.One in e.args:
        rest = e.args[1] if e.args[0] == 1 else e.args[0]
        return -rest
    return None


class Rewriter:
    """Applies ``RULES`` top-down to plain sympy expressions; one per model, so a repeated
    pattern (the same sigmoid twice in a BCE) becomes one step. ``applied`` names the rules
    that fired, in order of first use."""

    def __init__(self) -> None:
        self.memo: dict[sp.Expr, sp.Expr] = {}
        self.steps: dict[tuple, sp.Expr] = {}
        self.operands: dict[sp.Expr, sp.Expr] = {}
        self._applied: dict[str, None] = {}

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(self._applied)

    def __call__(self, e: sp.Expr) -> sp.Expr:
        if e.is_Atom:  # leaves, numbers and steps (an Intermediate is a symbol)
            return e
        done = self.memo.get(e)
        if done is None:
            done = self._rewrite(e)
            self.memo[e] = done
        return done

    # ----- builders: each new step is made once per argument
    def _fired(self, name: str) -> None:
        self._applied[name] = None

    def _step(self, key: tuple, make: Callable[[], sp.Expr]) -> sp.Expr:
        if key not in self.steps:
            node = make()
            if isinstance(node, Intermediate):
                node.rewritten = key[0]
            self.steps[key] = node
        return self.steps[key]

    def operand(self, t: sp.Expr) -> sp.Expr:
        """``t`` as one symbol (a leaf, a step, or a new step "z"), so a step's partials are
        keyed by its operands; a number stays a number."""
        if t.is_Atom:
            return t
        if t not in self.operands:
            node = define(t, kind="z")
            node.rewritten = "operand"
            self.operands[t] = node
        return self.operands[t]

    def softplus(self, t: sp.Expr) -> sp.Expr:
        z = self.operand(self(t))
        return self._step(("softplus", z), lambda: define(_softplus_plain(z), kind="softplus"))

    def sigmoid(self, t: sp.Expr) -> sp.Expr:
        """sigmoid(t) as exp(-softplus(-t)): the value and *both* saturations of its derivative
        stay accurate. (torch's s (1 - s) cancels in 1 - s for t >> 1, and autograd of
        1/(1 + exp(-t)) is inf/inf at t << -1; here ds/dt = s * sigmoid(-t) from the stable
        softplus, relative-accurate everywhere.)"""
        t = self(t)
        spn = self.softplus(-t)
        return self._step(("sigmoid", t), lambda: define(
            sp.exp(-spn), kind="sigmoid", partials=lambda s: {spn: -s}))

    def logsumexp(self, xs: list[sp.Expr]) -> sp.Expr:
        xs = [self.operand(self(x)) for x in xs]
        key = ("logsumexp", tuple(sorted(xs, key=sp.default_sort_key)))
        return self._step(key, lambda: logsumexp(xs))

    # ----- the table
    def _rewrite(self, e: sp.Expr) -> sp.Expr:
        if not e.free_symbols:  # a constant is printed as one exact number: nothing to do
            return e
        if isinstance(e, sp.Piecewise):  # a branch stays whole: a step hoisted out of it would
            return e  # run where the branch is not taken (torch's where-trap: NaN gradients)
        if isinstance(e, sp.log):
            arg = e.args[0]
            t = _logistic(arg)
            if t is not None:
                self._fired("log-sigmoid")
                return -self.softplus(-t)
            x = _one_minus(arg)
            t = _logistic(x) if x is not None else None
            if t is not None:
                self._fired("log-one-minus-sigmoid")
                return -self.softplus(t)
            terms = _exp_terms(arg)
            if terms is not None and len(terms) == 2 and 0 in terms:
                self._fired("softplus")
                return self.softplus(terms[1] if terms[0] == 0 else terms[0])
            if terms is not None and len(terms) >= 2:
                self._fired("log-sum-exp")
                return self.logsumexp(terms)
            if arg.is_Add and sp.S.One in arg.args:
                self._fired("log1p")
                return log1p(self(arg - 1))
        t = _logistic(e)
        if t is not None and not isinstance(e, Intermediate):
            self._fired("sigmoid")
            return self.sigmoid(t)
        x = _one_minus(e)
        t = _logistic(x) if x is not None else None
        if t is not None:
            self._fired("one-minus-sigmoid")
            return self.sigmoid(-t)
        if e.is_Mul:
            found = self._softmax(e)
            if found is not None:
                return found
        if e.is_Add:
            found = self._expm1(e)
            if found is not None:
                return found
        if isinstance(e, Intermediate):
            return e
        args = [self(a) for a in e.args]
        return e.func(*args) if any(a is not b for a, b in zip(args, e.args)) else e

    def _softmax(self, e: sp.Mul) -> sp.Expr | None:
        """exp(a) * (Σ exp(a_i))^-1 * rest -> exp(a - logsumexp(a_i)) * rest."""
        args = list(e.args)
        num = next((i for i, f in enumerate(args) if isinstance(f, sp.exp)), None)
        den = next((i for i, f in enumerate(args) if f.is_Pow and f.exp == -1
                    and len(_exp_terms(f.base) or ()) >= 2), None)
        if num is None or den is None:
            return None
        terms = _exp_terms(args[den].base)
        self._fired("softmax")
        lse = self.logsumexp(terms)
        entry = sp.exp(self(args[num].args[0]) - lse)
        rest = [self(f) for i, f in enumerate(args) if i not in (num, den)]
        return sp.Mul(entry, *rest)

    def _expm1(self, e: sp.Add) -> sp.Expr | None:
        """exp(x) - 1 + rest -> expm1(x) + rest; 1 - exp(x) + rest -> -expm1(x) + rest."""
        args = list(e.args)
        for sign in (1, -1):
            if -sign not in args:
                continue
            for i, a in enumerate(args):
                ex = a if sign == 1 else (-a if (a.is_Mul and a.args[0] == -1) else None)
                if isinstance(ex, sp.exp):
                    self._fired("expm1")
                    rest = [self(b) for j, b in enumerate(args)
                            if j != i and j != args.index(-sign)]
                    return sp.Add(sign * expm1(self(ex.args[0])), *rest)
        return None

