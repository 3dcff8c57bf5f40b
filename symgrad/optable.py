"""The op table: one entry per elementwise op, everything symgrad knows about it.

Each ``Elementwise`` entry gives the op's stable exact formula (a sympy expression of
``X0``, the first map argument of ``symgrad.tensor.program``), its textbook form and backward
rule (for teaching; the backward may use ``Y``, the op's output, as torch computes
sigmoid' = s (1 - s)), its LaTeX / MathML name, its torch call, its kinks with their
subgradients, and the input domain the catalogue draws from. The scalar ops (``sg.ops``), the
tensor ops (``symgrad.tensor``), the op catalogue (``symgrad ops``) and the reports' formulas are
built from these entries; adding an op is one entry here (and one line in tests/test_optable.py).

Two forms of the same function: ``formula`` is the stable one (no cancellation, no overflow:
the catalogue's rounding allowance and oracle use it); ``program`` says which form symgrad's own
programs compute ("textbook" for GELU: GPT-2 and torch compute x/2 (1 + tanh u) literally, and
the bound must cover that rounding; "formula" for every other op, softplus included: its
two-branch form is exact to every order at 0, where max(x, 0) + log1p(e^-|x|) has a second
derivative of 0 in autograd and sympy.diff instead of 1/4). Ops that differ only by an
option (``gelu(approximate=...)``) share a ``family``; ``options`` lists the option values that
select the entry (``"none"`` and ``"erf"`` both mean the exact erf GELU, as torch's "none").

>>> OPS["gelu_tanh"].torch
"F.gelu(x, approximate='tanh')"
>>> resolve("gelu", "none").name
'gelu'
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import KeywordError, SymgradError, unknown_keywords
from .functions import ROWS as FUNCTION_ROWS

X0 = sp.Symbol("x0", real=True)  # == symgrad.tensor.program.X[0] (same name and assumptions)
Y = sp.Symbol("y", real=True)  # the op's output, in backward rules written from it
S = sp.symbols("s0:4", real=True)  # the scalar program's named stages of an op (``stages``)


@dataclass(frozen=True)
class Elementwise:
    """One elementwise op: its formulas, names, torch call and kinks."""

    name: str  # unique: the catalogue row and, outside a family, the sg.ops / tensor name
    formula: sp.Expr  # the stable exact form, of X0
    textbook: sp.Expr  # the form as taught, of X0 (and of S[i] when ``stages`` name parts)
    backward: sp.Expr  # d op / d x as taught, of X0 and/or Y (the output)
    latex: str  # the op's name in LaTeX
    mathml: str  # the op's name in MathML (the text of its <mi>)
    torch: str  # the torch call on ``x`` (F and torch in scope)
    program: str | sp.Expr = "formula"  # the form symgrad's own programs compute: "formula",
    # "textbook", or an expression of X0 (module docstring)
    kinks: tuple[float, ...] = ()  # where the derivative jumps
    subgradients: tuple[tuple[float, float], ...] = ()  # at each kink: [left, right] derivative
    probes: tuple[float, ...] = ()  # inputs the catalogue places beside (torch's thresholds)
    domain: str = "real"  # key of symgrad.opcatalog.inputs.DOMAINS
    group: str = "activation"  # the catalogue's group: activation / elementwise
    family: str = ""  # ops told apart by an option share a family (gelu)
    option: str = ""  # the option's keyword (approximate)
    options: tuple[str, ...] = ()  # the option values that select this entry
    default: bool = False  # the family's entry when the option is not given
    stages: tuple[tuple[str, sp.Expr], ...] = ()  # scalar steps (kind, expr of X0 and S[:i])
    named: bool = True  # sg.ops steps are shown as name(x) (``applied``); False (the entries
    # that predate the table): as computed, so the committed explanations read as before
    block: bool = False  # sg.ops: a GPT block (matrix input, entries named <name>_{i,j}, no group)
    notes: str = ""
    torch_backward: sp.Expr | None = None  # d op / d x as torch's backward kernel computes it,
    # of X0 (sigmoid: s (1 - s) from the output s): its rounding is what a user's torch code may
    # add beyond symgrad's own derivative (``symgrad.tensor.mapbound``); None: torch's backward
    # loses nothing the bound of the formula's derivative does not already cover
    torch_second: sp.Expr | None = None  # d2 op / dx2 as torch's double backward computes
    # it, of X0 (softplus: s (1 - s) from a computed sigmoid s; logsigmoid: (s - 1) s), which
    # cancels where s saturates; ``tensor/torch_vjp`` differentiates the op's first derivative
    # in a VJP body (an order-2 program) by it. None: nothing to add

    @property
    def public(self) -> str:
        """The name sg.ops and symgrad.tensor expose (the family's, for a family)."""
        return self.family or self.name

    @property
    def staged(self) -> sp.Expr:
        """``textbook`` with the named stages written out: an expression of X0 alone."""
        out = self.textbook
        for i in reversed(range(len(self.stages))):  # a stage may read earlier ones
            out = out.xreplace({S[i]: self.stages[i][1]})
        return out

    @property
    def computed(self) -> sp.Expr:
        """The form symgrad's own programs compute, of X0."""
        if isinstance(self.program, sp.Basic):
            return self.program
        return self.formula if self.program == "formula" else self.staged

    @property
    def output_form(self) -> bool:
        """The backward reads only the output (sigmoid, tanh, exp): torch's way, and the scalar
        program's local derivative."""
        return self.backward.free_symbols <= {Y}

    def __call__(self, x: sp.Expr) -> sp.Expr:
        """The stable formula applied to ``x`` (a sympy expression)."""
        return self.formula.xreplace({X0: x})

    def applied(self, x: sp.Expr) -> sp.Expr:
        """The op applied to ``x`` as one sympy function for display: notation prints it
        with the entry's name, sympy.diff uses its backward rule."""
        cls = _APPLIED.get(self.name)
        if cls is None:
            cls = _APPLIED[self.name] = type(self.name, (AppliedBase,), {"entry": self})
        return cls(x)

    def index_rule(self) -> tuple[str, str]:
        """(what, LaTeX) of its backward rule in index notation, for the reports."""
        return (f"{self.latex_free()} elementwise",
                rf"\delta_{{x}} = \delta_{{y}} \circ {self.latex}'(x)")

    def latex_free(self) -> str:
        """The name without LaTeX markup (GELU for \\mathrm{GELU})."""
        return self.latex.replace(r"\mathrm{", "").replace(r"\operatorname{", "").rstrip("}")


class AppliedBase(sp.Function):  # "...Base": sympy's printers then use _print_AppliedBase
    """An op-table op applied to one argument (``Elementwise.applied``), for display."""

    entry: Elementwise
    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return self.entry.backward.xreplace({X0: self.args[0], Y: self})

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return self.entry.formula.xreplace({X0: arg})


_APPLIED: dict[str, type] = {}


def _sigmoid(z: sp.Expr) -> sp.Expr:
    # 1 / (1 + e^-z) with e^-|z| on each side, so neither branch overflows
    return sp.Piecewise((1 / (1 + sp.exp(-z)), z >= 0), (sp.exp(z) / (1 + sp.exp(z)), True))


def _softplus(z: sp.Expr) -> sp.Expr:
    # log(1 + e^z), no overflow, no cancellation; both branches are the same analytic function,
    # so derivatives of every order are exact at z = 0 too (the form max(z, 0) + log1p(e^-|z|)
    # loses them there: its second derivative holds a DiracDelta; the catalogue's H v of
    # logsigmoid went from 0.86 to 5e289 of its allowance with it)
    return sp.Piecewise((z + log1p(sp.exp(-z)), z > 0), (log1p(sp.exp(z)), True))


def _logsigmoid(z: sp.Expr) -> sp.Expr:
    # log sigmoid(z) = -softplus(-z): -log1p(e^-z) for z >= 0, z - log1p(e^z) below; both
    # branches are the same analytic function (exact to every order at 0), neither overflows
    return sp.Piecewise((-log1p(sp.exp(-z)), z >= 0), (z - log1p(sp.exp(z)), True))


def logsigmoid_torch_backward(z: sp.Expr) -> sp.Expr:
    """torch's log_sigmoid_backward kernel (CPU and CUDA): b = e^-|z| (the forward's buffer),
    b / (1 + b) for z >= 0, 1 - b / (1 + b) below: the same expression as sympy's derivative
    of the entry's program (tests/test_wolf_torch_functions.py), so the entry needs no
    ``torch_backward``; its double backward (s - 1) s is its ``torch_second``."""
    return sp.Piecewise((sp.exp(-z) / (1 + sp.exp(-z)), z >= 0),
                        (1 - sp.exp(z) / (1 + sp.exp(z)), True))


_SQRT_2_OVER_PI = sp.sqrt(2 / sp.pi)
_GELU_CUBIC = sp.Rational(44715, 10**6)
_U = _SQRT_2_OVER_PI * (X0 + _GELU_CUBIC * X0**3)  # GPT-2's tanh-GELU argument
_PHI = (1 + sp.erf(X0 / sp.sqrt(2))) / 2  # the normal CDF
_GELU_ERF = X0 * (1 + sp.erf(X0 / sp.sqrt(2))) / 2  # x Phi(x)
_SIG = 1 / (1 + sp.exp(-X0))  # textbook sigmoid and softplus, for backward rules
_SP = sp.log(1 + sp.exp(X0))
# SELU's constants (Klambauer et al. 2017) to 32 digits; torch passes their float64 roundings,
# which differ by under 0.2 float64 ULPs (relative 1.4e-17)
SELU_ALPHA = sp.Rational("1.6732632423543772848170429916717")
SELU_SCALE = sp.Rational("1.0507009873554804934193349852946")


def _elu(x: sp.Expr, alpha: sp.Expr = 1, scale: sp.Expr = 1) -> sp.Expr:
    # scale (x if x > 0 else alpha expm1(x)): expm1 keeps every digit near 0 and never overflows
    return sp.Piecewise((scale * x, x > 0), (scale * alpha * expm1(x), True))


def _elu_torch_backward(alpha: sp.Expr, scale: sp.Expr) -> sp.Expr:
    # torch's elu_backward: F.elu / F.selu (is_result=False) compute scale alpha e^x, exact as
    # symgrad's rule; an in-place nn.ELU(inplace=True) (is_result=True) computes it from the
    # output y as y + scale alpha, which cancels as y -> -scale alpha (x = -30: 1.7e-4 relative
    # in float64, measured in torch 2.13): the allowance covers that way too
    return sp.Piecewise((scale, X0 > 0), (_elu(X0, alpha, scale) + scale * alpha, True))


_E = Elementwise

ENTRIES: tuple[Elementwise, ...] = (
    _E("relu", sp.Max(X0, 0), sp.Max(X0, 0), sp.Heaviside(X0), r"\mathrm{ReLU}",
       "ReLU", "F.relu(x)", kinks=(0.0,), subgradients=((0.0, 1.0),), named=False),
    _E("sigmoid", _sigmoid(X0), 1 / (1 + sp.exp(-X0)), Y * (1 - Y), r"\sigma", "σ",
       "torch.sigmoid(x)", program="textbook", named=False,
       torch_backward=_sigmoid(X0) * (1 - _sigmoid(X0)),
       # torch's double backward of sigmoid_backward(g, s): g' (1 - 2 s) through the output,
       # then s' = s (1 - s): (1 - 2 s) cancels near x = 0, (1 - s) where s saturates
       torch_second=(1 - 2 * _sigmoid(X0)) * (1 - _sigmoid(X0)) * _sigmoid(X0)),
    _E("tanh", sp.tanh(X0), sp.tanh(X0), 1 - Y**2, r"\tanh", "tanh", "torch.tanh(x)",
       named=False, torch_backward=1 - sp.tanh(X0) ** 2),
    _E("exp", sp.exp(X0), sp.exp(X0), Y, r"\exp", "exp", "torch.exp(x)",
       group="elementwise", named=False),
    _E("log", sp.log(X0), sp.log(X0), 1 / X0, r"\log", "log", "torch.log(x)",
       domain="pos", group="elementwise", named=False),
    _E("softplus", _softplus(X0), sp.log(1 + sp.exp(X0)), 1 / (1 + sp.exp(-X0)),
       r"\mathrm{softplus}", "softplus", "F.softplus(x)", probes=(20.0,),
       notes="documented: log(1 + e^x); torch returns x above threshold=20", named=False,
       # torch's softplus_double_backward: sigmoid_backward(g, s) = g (1 - s) s, s = sigmoid(x)
       torch_second=(1 - _sigmoid(X0)) * _sigmoid(X0)),
    # F.logsigmoid: torch's backward reads e^-|x|; its double backward (s - 1) s, s = sigmoid(x),
    # cancels for x >> 0 (x = 30 in float64: 1e-3 relative), where the derivative is e^-x
    # (formula: the catalogue's -softplus(-x), its row as before; symgrad's programs compute the
    # one Piecewise of x, whose derivatives ``tensor/torch_vjp`` finds whole in a VJP body)
    _E("logsigmoid", -_softplus(-X0), -sp.log(1 + sp.exp(-X0)), 1 / (1 + sp.exp(X0)),
       r"\mathrm{logsigmoid}", "logsigmoid", "F.logsigmoid(x)", program=_logsigmoid(X0),
       torch_second=(_sigmoid(X0) - 1) * _sigmoid(X0)),
    # x/2 erfc(-x/sqrt 2) would be the stable form, but sympy evaluates erfc(-u) to
    # 2 - erfc(u), which cancels for x < 0; 1 + erf(u) is what the walk rewrites to erfc(-u)
    _E("gelu", _GELU_ERF, _GELU_ERF,
       _PHI + X0 * sp.exp(-X0**2 / 2) / sp.sqrt(2 * sp.pi), r"\mathrm{GELU}", "GELU",
       "F.gelu(x)", family="gelu", option="approximate",
       options=("none", "erf"), block=True,
       notes="x Phi(x) = x/2 (1 + erf(x/sqrt 2)) = x/2 erfc(-x/sqrt 2)", named=False),
    _E("gelu_tanh", X0 * _sigmoid(2 * _U), X0 * (1 + S[1]) / 2,
       (1 + sp.tanh(_U)) / 2 + X0 / 2 * (1 - sp.tanh(_U) ** 2) * sp.diff(_U, X0),
       r"\mathrm{GELU}", "GELU", "F.gelu(x, approximate='tanh')", program="textbook",
       family="gelu", option="approximate", options=("tanh",), default=True,
       stages=(("gelu_inner", _U), ("tanh", sp.tanh(S[0]))), block=True,
       notes="x/2 (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)",
       named=False),
    _E("mish", X0 * sp.tanh(_softplus(X0)), X0 * sp.tanh(sp.log(1 + sp.exp(X0))),
       sp.tanh(_SP) + X0 * (1 - sp.tanh(_SP) ** 2) * _SIG,
       r"\mathrm{mish}", "mish", "F.mish(x)",
       torch_backward=(sp.tanh(_softplus(X0))
                       + X0 * _sigmoid(X0) * (1 - sp.tanh(_softplus(X0)) ** 2))),
    _E("softsign", X0 / (1 + sp.Abs(X0)), X0 / (1 + sp.Abs(X0)), 1 / (1 + sp.Abs(X0)) ** 2,
       r"\mathrm{softsign}", "softsign", "F.softsign(x)", kinks=(0.0,),
       subgradients=((1.0, 1.0),)),
    _E("silu", X0 * _sigmoid(X0), X0 / (1 + sp.exp(-X0)),
       _SIG * (1 + X0 * (1 - _SIG)), r"\mathrm{SiLU}", "SiLU",
       "F.silu(x)", torch_backward=_sigmoid(X0) * (1 + X0 * (1 - _sigmoid(X0)))),
    # alpha = 1 only: the table's options select entries by name, a real alpha is no option;
    # capture lowers any other alpha / scale of aten.elu as its own map (capture/aten._elu).
    # At alpha = 1 f' is continuous at 0 (both sides 1); f'' jumps there (0 and 1)
    _E("elu", _elu(X0), sp.Piecewise((X0, X0 > 0), (sp.exp(X0) - 1, True)),
       sp.Piecewise((1, X0 > 0), (sp.exp(X0), True)), r"\mathrm{ELU}", "ELU", "F.elu(x)",
       kinks=(0.0,), subgradients=((1.0, 1.0),), torch_backward=_elu_torch_backward(1, 1),
       notes="x if x > 0 else alpha (e^x - 1), alpha = 1"),
    _E("celu", _elu(X0), sp.Piecewise((X0, X0 > 0), (sp.exp(X0) - 1, True)),
       sp.Piecewise((1, X0 > 0), (sp.exp(X0), True)), r"\mathrm{CELU}", "CELU", "F.celu(x)",
       kinks=(0.0,), subgradients=((1.0, 1.0),), torch_backward=_elu_torch_backward(1, 1),
       notes="max(0, x) + min(0, alpha (e^(x/alpha) - 1)), alpha = 1 (ELU's function)"),
    _E("selu", _elu(X0, SELU_ALPHA, SELU_SCALE),
       SELU_SCALE * sp.Piecewise((X0, X0 > 0), (SELU_ALPHA * (sp.exp(X0) - 1), True)),
       sp.Piecewise((SELU_SCALE, X0 > 0), (SELU_SCALE * SELU_ALPHA * sp.exp(X0), True)),
       r"\mathrm{SELU}", "SELU", "F.selu(x)", kinks=(0.0,),
       subgradients=((float(SELU_SCALE * SELU_ALPHA), float(SELU_SCALE)),),
       torch_backward=_elu_torch_backward(SELU_ALPHA, SELU_SCALE),
       notes="scale (x if x > 0 else alpha (e^x - 1)): alpha, scale the constants of "
             "Klambauer et al. to 32 digits"),
)

OPS: dict[str, Elementwise] = {e.name: e for e in ENTRIES}
assert len(OPS) == len(ENTRIES), "two op entries share a name"
# a map body as symgrad's programs compute an op (``computed``), or one sympy function of X0
# (``symgrad.functions``: a captured aten.expm1) -> torch's backward formula
TORCH_BACKWARD: dict[sp.Expr, sp.Expr] = {
    **{r.key(X0): r.torch_backward(X0) for r in FUNCTION_ROWS if r.torch_backward is not None},
    **{e.computed: e.torch_backward for e in ENTRIES if e.torch_backward is not None}}


def families() -> dict[str, list[Elementwise]]:
    """Public name -> its entries (one, or a family's variants), in table order."""
    out: dict[str, list[Elementwise]] = {}
    for e in ENTRIES:
        out.setdefault(e.public, []).append(e)
    return out


def resolve(public: str, option: str | None = None) -> Elementwise:
    """The entry of ``public`` (an op or a family) for ``option``; a clear error otherwise."""
    entries = families().get(public)
    if entries is None:
        raise SymgradError(f"unknown elementwise op {public!r}; choose from "
                           f"{', '.join(families())}")
    if len(entries) == 1 and not entries[0].family:
        return entries[0]
    if option is None:
        return next(e for e in entries if e.default)
    for e in entries:
        if option in e.options:
            return e
    choices = " or ".join(repr(o) for e in entries for o in e.options)
    raise SymgradError(f"{public}: {entries[0].option}={option!r}; choose {choices}")


def function(public: str, build: Callable, *, keywords: tuple[str, ...] = ()) -> Callable:
    """The user-facing op ``public(x[, option], **keywords)``: it picks the entry (a family's
    by its option, as ``gelu(x, approximate="erf")``) and returns ``build(entry, x, **kw)``.
    sg.ops and symgrad.tensor make their elementwise ops with it."""
    entries = families()[public]
    key = entries[0].option  # "" outside a family
    default = resolve(public)

    def op(x, *args, **kw):
        extra = sorted(set(kw) - set(keywords) - {key})
        if extra:  # a mistyped option (approx=) or a torch one symgrad's op has not (beta=)
            valid = ["x", *[key] * bool(key), *keywords]
            raise KeywordError(unknown_keywords(public, extra, valid))
        if len(args) > bool(key):
            raise SymgradError(f"{public}: takes x{f' and {key}=' if key else ''}"
                               f"{''.join(f', {k}=' for k in keywords)}; got {len(args)} more "
                               "positional arguments")
        choice = args[0] if args else kw.pop(key, None) if key else None
        return build(resolve(public, choice), x, **kw)
    P = inspect.Parameter
    params = [P("x", P.POSITIONAL_OR_KEYWORD)]
    if key:
        params.append(P(key, P.POSITIONAL_OR_KEYWORD, default=default.options[0]))
    op.__signature__ = inspect.Signature(params + [P(k, P.KEYWORD_ONLY, default=None)
                                                   for k in keywords])
    op.__name__ = op.__qualname__ = public
    op.__doc__ = "; ".join(f"{e.torch}: {e.staged}" for e in entries)
    return op
