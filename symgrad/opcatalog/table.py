"""The catalogue: one row per torch operator.

Each row gives the torch call (with the operator's own parameters), its mathematical definition
in sympy written from the *documented* formula (never from torch's implementation), the shapes
and input domains of its arguments, and notes. Definitions use exact forms of the same function
that keep symgrad's own rounding-error bound tight (softplus as max(z, 0) + log1p(e^-|z|), a
two-branch sigmoid, erfc for 1 + erf(-t)); mathematically they are the documented formula.

A row with ``unsupported="why"`` is an operator whose derivative symgrad cannot express yet: it is
listed in the report with the reason, never dropped.

>>> from symgrad.opcatalog.table import CATALOGUE, by_name
>>> by_name("softplus").call
'F.softplus(x)'
>>> len([op for op in CATALOGUE if not op.unsupported]) >= 80
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp
from sympy.codegen.cfunctions import log1p

R = sp.Rational
LN2 = sp.log(2)
EPS6 = sp.Rational(1e-6)  # eps=1e-6 as torch receives it: the double nearest 1e-6, exactly


@dataclass(frozen=True)
class Arg:
    """One argument of the torch call: a block of the model."""

    name: str  # the torch call's variable name and the model's block name
    shape: tuple[int, ...] = ()  # () scalar, (n,) vector, (r, c) matrix
    domain: str = "real"  # key of symgrad.opcatalog.inputs.DOMAINS
    param: bool = True  # differentiated (a parameter) or held fixed (a target, a label)


@dataclass(frozen=True)
class Op:
    """A torch operator: its call, its exact definition, its arguments."""

    name: str  # unique row name (snake_case)
    group: str  # activation / elementwise / reduction / loss
    call: str  # the torch expression over the argument names (torch, F in scope)
    define: Callable | None  # (**blocks) -> sympy expr, or list of them (one per output entry)
    args: tuple[Arg, ...] = (Arg("x"),)
    kinks: tuple[float, ...] = ()  # where the op has a kink/threshold: inputs placed beside them
    notes: str = ""
    unsupported: str = ""  # why symgrad cannot express the derivative ("" = supported)

    @property
    def params(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.param)


# ------------------------------------------------------------------ exact building blocks
def softplus(z):
    # log(1 + e^z); both branches are the same analytic function, so derivatives of every
    # order are exact at z = 0 too (an Abs/sign form would lose them there)
    return sp.Piecewise((z + log1p(sp.exp(-z)), z > 0), (log1p(sp.exp(z)), True))


def sigmoid(z):
    # 1 / (1 + e^-z), written with e^-|z| on each side so neither branch overflows
    return sp.Piecewise((1 / (1 + sp.exp(-z)), z >= 0), (sp.exp(z) / (1 + sp.exp(z)), True))


def logsumexp(xs):
    m = sp.Max(*xs)
    return m + sp.log(sp.Add(*[sp.exp(x - m) for x in xs]))


def mean(xs):
    return sp.Add(*xs) / len(xs)


def norm2(xs):
    return sp.sqrt(sp.Add(*[x**2 for x in xs]))


def dot(a, b):
    return sp.Add(*[p * q for p, q in zip(a, b)])


def pick(xs, t):
    """xs[t] for an integer-valued symbol t (one Eq branch per entry)."""
    return sp.Add(*[sp.Piecewise((x, sp.Eq(t, i)), (0, True)) for i, x in enumerate(xs)])


def elu(x, alpha):
    # max/min so the kink at 0 is seen (any subgradient accepted there)
    return sp.Max(x, 0) + alpha * (sp.exp(sp.Min(x, 0)) - 1)


def leaky(x, slope):
    return sp.Max(x, 0) + slope * sp.Min(x, 0)


def var(xs, correction):
    m = mean(xs)
    return sp.Add(*[(x - m) ** 2 for x in xs]) / (len(xs) - correction)


SELU_ALPHA = R("1.6732632423543772848170429916717")
SELU_SCALE = R("1.0507009873554804934193349852946")


def _unary(name, call, f, *, domain="real", group="elementwise", kinks=(), notes=""):
    return Op(name, group, call, lambda x: f(x), (Arg("x", (), domain),), kinks, notes)


def _act(name, call, f, **kw):
    return _unary(name, call, f, group="activation", **kw)


def _binary(name, call, f, dx="real", dy="real", *, kinks=(), notes="", group="elementwise"):
    return Op(name, group, call, lambda x, y: f(x, y), (Arg("x", (), dx), Arg("y", (), dy)),
              kinks, notes)


def _unsupported(name, group, call, why):
    return Op(name, group, call, None, (Arg("x"),), (), "", why)


V = (3,)  # the vector length of reductions and losses
C = (3,)  # the number of classes of classification losses

ACTIVATIONS = [
    _act("relu", "F.relu(x)", lambda x: sp.Max(x, 0), kinks=(0.0,)),
    _act("relu6", "F.relu6(x)", lambda x: sp.Min(sp.Max(x, 0), 6), kinks=(0.0, 6.0)),
    _act("leaky_relu", "F.leaky_relu(x, negative_slope=0.01)",
         lambda x: leaky(x, R(1, 100)), kinks=(0.0,)),
    _act("prelu", "F.prelu(x.reshape(1), x.new_tensor([0.25]))",
         lambda x: leaky(x, R(1, 4)), kinks=(0.0,),
         notes="weight 0.25 held fixed"),
    _act("rrelu_eval", "F.rrelu(x, lower=0.125, upper=0.375, training=False)",
         lambda x: leaky(x, R(1, 4)), kinks=(0.0,),
         notes="eval mode: slope (lower + upper) / 2"),
    _act("elu", "F.elu(x)", lambda x: elu(x, 1), kinks=(0.0,)),
    _act("elu_alpha", "F.elu(x, alpha=0.5)", lambda x: elu(x, R(1, 2)), kinks=(0.0,)),
    _act("selu", "F.selu(x)", lambda x: SELU_SCALE * elu(x, SELU_ALPHA), kinks=(0.0,),
         notes="alpha, scale: the constants of Klambauer et al. to 32 digits"),
    _act("celu", "F.celu(x, alpha=1.5)",
         lambda x: sp.Max(x, 0) + R(3, 2) * (sp.exp(sp.Min(x, 0) / R(3, 2)) - 1),
         kinks=(0.0,)),
    _act("gelu", "F.gelu(x)", lambda x: x / 2 * sp.erfc(-x / sp.sqrt(2)),
         notes="x Phi(x) = x/2 (1 + erf(x/sqrt 2)) = x/2 erfc(-x/sqrt 2)"),
    _act("gelu_tanh", "F.gelu(x, approximate='tanh')",
         lambda x: x * sigmoid(2 * sp.sqrt(2 / sp.pi) * (x + R(44715, 1000000) * x**3)),
         notes="x/2 (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)"),
    _act("silu", "F.silu(x)", lambda x: x * sigmoid(x)),
    _act("mish", "F.mish(x)", lambda x: x * sp.tanh(softplus(x))),
    _act("softplus", "F.softplus(x)", softplus, kinks=(20.0,),
         notes="documented: log(1 + e^x); torch returns x above threshold=20"),
    _act("softplus_beta", "F.softplus(x, beta=2.0, threshold=10.0)",
         lambda x: softplus(2 * x) / 2, kinks=(5.0,),
         notes="1/beta log(1 + e^(beta x)); torch returns x where beta x > threshold"),
    _act("softsign", "F.softsign(x)", lambda x: x / (1 + sp.Abs(x)), kinks=(0.0,)),
    _act("hardtanh", "F.hardtanh(x)", lambda x: sp.Min(sp.Max(x, -1), 1), kinks=(-1.0, 1.0)),
    _act("hardtanh_range", "F.hardtanh(x, min_val=-2.0, max_val=3.0)",
         lambda x: sp.Min(sp.Max(x, -2), 3), kinks=(-2.0, 3.0)),
    _act("hardswish", "F.hardswish(x)", lambda x: x * sp.Min(sp.Max(x + 3, 0), 6) / 6,
         kinks=(-3.0, 3.0)),
    _act("hardsigmoid", "F.hardsigmoid(x)", lambda x: sp.Min(sp.Max(x / 6 + R(1, 2), 0), 1),
         kinks=(-3.0, 3.0)),
    _act("logsigmoid", "F.logsigmoid(x)", lambda x: -softplus(-x)),
    _act("tanhshrink", "F.tanhshrink(x)", lambda x: x - sp.tanh(x)),
    _act("softshrink", "F.softshrink(x, lambd=0.5)",
         lambda x: sp.Piecewise((x - R(1, 2), x > R(1, 2)), (x + R(1, 2), x < -R(1, 2)),
                                (0, True)), kinks=(-0.5, 0.5)),
    _act("hardshrink", "F.hardshrink(x, lambd=0.5)",
         lambda x: sp.Piecewise((x, sp.Abs(x) > R(1, 2)), (0, True)), kinks=(-0.5, 0.5),
         notes="discontinuous at |x| = lambd"),
    _act("threshold", "F.threshold(x, threshold=1.0, value=-0.5)",
         lambda x: sp.Piecewise((x, x > 1), (-R(1, 2), True)), kinks=(1.0,),
         notes="discontinuous at the threshold"),
    _act("sigmoid", "torch.sigmoid(x)", sigmoid),
    _act("tanh", "torch.tanh(x)", sp.tanh),
    Op("glu", "activation", "F.glu(x, dim=0)",
       lambda x: [x[0] * sigmoid(x[2]), x[1] * sigmoid(x[3])], (Arg("x", (4,)),),
       notes="a * sigmoid(b), halves of x"),
]

ELEMENTWISE = [
    _unary("exp", "torch.exp(x)", sp.exp),
    _unary("exp2", "torch.exp2(x)", lambda x: sp.exp(x * LN2)),
    _unary("expm1", "torch.expm1(x)", lambda x: sp.exp(x) - 1),
    _unary("log", "torch.log(x)", sp.log, domain="pos"),
    _unary("log2", "torch.log2(x)", lambda x: sp.log(x) / LN2, domain="pos"),
    _unary("log10", "torch.log10(x)", lambda x: sp.log(x) / sp.log(10), domain="pos"),
    _unary("log1p", "torch.log1p(x)", log1p, domain="gtm1"),
    _unary("sqrt", "torch.sqrt(x)", sp.sqrt, domain="pos"),
    _unary("rsqrt", "torch.rsqrt(x)", lambda x: x ** R(-1, 2), domain="pos"),
    _unary("square", "torch.square(x)", lambda x: x**2),
    _unary("pow_int", "torch.pow(x, 3)", lambda x: x**3),
    _unary("pow_frac", "torch.pow(x, 2.5)", lambda x: x ** R(5, 2), domain="pos"),
    _unary("pow_neg", "torch.pow(x, -2)", lambda x: x**-2, domain="nonzero"),
    _binary("pow_tensor", "torch.pow(x, y)", lambda x, y: sp.exp(y * sp.log(x)), "pos", "small"),
    _unary("reciprocal", "torch.reciprocal(x)", lambda x: 1 / x, domain="nonzero"),
    _unary("abs", "torch.abs(x)", sp.Abs, kinks=(0.0,)),
    _unary("sin", "torch.sin(x)", sp.sin),
    _unary("cos", "torch.cos(x)", sp.cos),
    _unary("tan", "torch.tan(x)", sp.tan, domain="small"),
    _unary("asin", "torch.asin(x)", sp.asin, domain="unit"),
    _unary("acos", "torch.acos(x)", sp.acos, domain="unit"),
    _unary("atan", "torch.atan(x)", sp.atan),
    _binary("atan2", "torch.atan2(x, y)",
            lambda x, y: sp.Piecewise((sp.atan(x / y), y > 0),
                                      (sp.atan(x / y) + sp.pi, (y < 0) & (x >= 0)),
                                      (sp.atan(x / y) - sp.pi, True)), "real", "nonzero",
            notes="atan2(x, y) = arg(y + i x); y != 0 (the y = 0 axis is a branch of its own)"),
    _unary("sinh", "torch.sinh(x)", sp.sinh),
    _unary("cosh", "torch.cosh(x)", sp.cosh),
    _unary("asinh", "torch.asinh(x)",
           lambda x: sp.Piecewise((log1p(x + x**2 / (1 + sp.sqrt(1 + x**2))), x >= 0),
                                  (-log1p(-x + x**2 / (1 + sp.sqrt(1 + x**2))), True)),
           notes="log(x + sqrt(x^2 + 1)) in its cancellation-free form"),
    _unary("acosh", "torch.acosh(x)",
           lambda x: log1p((x - 1) + sp.sqrt((x - 1) * (x + 1))), domain="ge1",
           notes="log(x + sqrt(x^2 - 1)) = log1p((x - 1) + sqrt((x - 1)(x + 1)))"),
    _unary("atanh", "torch.atanh(x)", lambda x: (log1p(x) - log1p(-x)) / 2, domain="unit"),
    _unary("erf", "torch.erf(x)", sp.erf),
    _unary("erfc", "torch.erfc(x)", sp.erfc),
    _unary("erfcx", "torch.special.erfcx(x)", lambda x: sp.exp(x**2) * sp.erfc(x),
           domain="small"),
    _unary("ndtr", "torch.special.ndtr(x)", lambda x: sp.erfc(-x / sp.sqrt(2)) / 2),
    _unary("log_ndtr", "torch.special.log_ndtr(x)",
           lambda x: sp.log(sp.erfc(-x / sp.sqrt(2)) / 2), domain="small"),
    _unary("entr", "torch.special.entr(x)", lambda x: -x * sp.log(x), domain="pos"),
    _unary("sinc", "torch.sinc(x)",
           lambda x: sp.Piecewise((1, sp.Eq(x, 0)), (sp.sin(sp.pi * x) / (sp.pi * x), True)),
           domain="small"),
    _unary("logit", "torch.logit(x)", lambda x: sp.log(x) - log1p(-x), domain="prob"),
    _unary("logit_eps", "torch.logit(x, eps=1e-6)",
           lambda x: (lambda z: sp.log(z) - log1p(-z))(
               sp.Min(sp.Max(x, EPS6), 1 - EPS6)),
           domain="prob", kinks=(1e-6, 1 - 1e-6), notes="x clamped to [eps, 1 - eps]"),
    _binary("xlogy", "torch.xlogy(x, y)", lambda x, y: x * sp.log(y), "real", "pos",
            notes="documented: 0 where x = 0, else x log y; for y > 0 that is x log y"),
    _binary("xlog1py", "torch.special.xlog1py(x, y)", lambda x, y: x * log1p(y), "real",
            "gtm1", notes="0 where x = 0, else x log1p(y)"),
    _binary("hypot", "torch.hypot(x, y)", lambda x, y: sp.sqrt(x**2 + y**2), "real", "nonzero"),
    _binary("logaddexp", "torch.logaddexp(x, y)",
            lambda x, y: sp.Max(x, y) + log1p(sp.exp(-sp.Abs(x - y)))),
    _binary("logaddexp2", "torch.logaddexp2(x, y)",
            lambda x, y: sp.Max(x, y) + log1p(sp.exp(-sp.Abs(x - y) * LN2)) / LN2),
    _binary("mul", "torch.mul(x, y)", lambda x, y: x * y),
    _binary("div", "torch.div(x, y)", lambda x, y: x / y, "real", "nonzero"),
    _binary("add_alpha", "torch.add(x, y, alpha=2.5)", lambda x, y: x + R(5, 2) * y),
    _binary("lerp", "torch.lerp(x, y, 0.3)", lambda x, y: x + R(3, 10) * (y - x)),
    Op("addcmul", "elementwise", "torch.addcmul(x, y, z, value=0.5)",
       lambda x, y, z: x + y * z / 2, (Arg("x"), Arg("y"), Arg("z"))),
    Op("addcdiv", "elementwise", "torch.addcdiv(x, y, z, value=0.5)",
       lambda x, y, z: x + y / z / 2, (Arg("x"), Arg("y"), Arg("z", (), "nonzero"))),
    _unary("clamp", "torch.clamp(x, min=-0.5, max=2.0)",
           lambda x: sp.Min(sp.Max(x, -R(1, 2)), 2), kinks=(-0.5, 2.0)),
    _binary("maximum", "torch.maximum(x, y)", sp.Max, kinks=(0.0,)),
    _binary("minimum", "torch.minimum(x, y)", sp.Min, kinks=(0.0,)),
    _unsupported("erfinv", "elementwise", "torch.erfinv(x)",
                 "its value and derivative sqrt(pi)/2 exp(erfinv(x)^2) need the inverse of erf, "
                 "outside symgrad's function vocabulary (no closed form over exp/log/erf)"),
    _unsupported("lgamma", "elementwise", "torch.lgamma(x)",
                 "derivative digamma(x): the gamma family is outside symgrad's vocabulary"),
    _unsupported("digamma", "elementwise", "torch.digamma(x)",
                 "derivative polygamma(1, x): outside symgrad's vocabulary"),
    _unsupported("polygamma", "elementwise", "torch.polygamma(1, x)",
                 "derivative polygamma(2, x): outside symgrad's vocabulary"),
    _unsupported("mvlgamma", "elementwise", "torch.mvlgamma(x, p=2)",
                 "a sum of lgamma terms: outside symgrad's vocabulary"),
    _unsupported("i0", "elementwise", "torch.i0(x)",
                 "modified Bessel function (derivative i1): outside symgrad's vocabulary"),
    _unsupported("i0e", "elementwise", "torch.special.i0e(x)",
                 "scaled Bessel function: outside symgrad's vocabulary"),
    _unsupported("i1", "elementwise", "torch.special.i1(x)",
                 "modified Bessel function of order 1: outside symgrad's vocabulary"),
    _unsupported("ndtri", "elementwise", "torch.special.ndtri(x)",
                 "the inverse normal CDF: an inverse function, outside symgrad's vocabulary"),
    _unsupported("zeta", "elementwise", "torch.special.zeta(x, q)",
                 "Hurwitz zeta; torch itself has no derivative with respect to x"),
]


def _vec(name, call, f, *, domain="real", kinks=(), notes="", extra=()):
    return Op(name, "reduction", call, f, (Arg("x", V, domain),) + tuple(extra), kinks, notes)


def _layer_norm(x, eps):
    m, v = mean(x), var(x, 0)
    return [(xi - m) / sp.sqrt(v + eps) for xi in x]


def _cummax_free_lse(xs):
    return [logsumexp(xs[:k + 1]) for k in range(len(xs))]


REDUCTIONS = [
    _vec("sum", "torch.sum(x)", lambda x: sp.Add(*x)),
    _vec("mean", "torch.mean(x)", lambda x: mean(x)),
    _vec("prod", "torch.prod(x)", lambda x: sp.Mul(*x), notes="zeros: torch's backward "
         "special-cases them"),
    _vec("var", "torch.var(x)", lambda x: var(x, 1), notes="correction=1 (Bessel)"),
    _vec("var_correction0", "torch.var(x, correction=0)", lambda x: var(x, 0)),
    _vec("std", "torch.std(x)", lambda x: sp.sqrt(var(x, 1))),
    _vec("std_correction0", "torch.std(x, correction=0)", lambda x: sp.sqrt(var(x, 0))),
    _vec("logsumexp", "torch.logsumexp(x, dim=0)", lambda x: logsumexp(x)),
    _vec("softmax", "F.softmax(x, dim=0)",
         lambda x: [sp.exp(xi - logsumexp(x)) for xi in x]),
    _vec("log_softmax", "F.log_softmax(x, dim=0)", lambda x: [xi - logsumexp(x) for xi in x]),
    _vec("softmin", "F.softmin(x, dim=0)",
         lambda x: [sp.exp(-xi - logsumexp([-v for v in x])) for xi in x]),
    _vec("vector_norm", "torch.linalg.vector_norm(x)", lambda x: norm2(x)),
    _vec("vector_norm_1", "torch.linalg.vector_norm(x, ord=1)",
         lambda x: sp.Add(*[sp.Abs(v) for v in x])),
    _vec("vector_norm_inf", "torch.linalg.vector_norm(x, ord=float('inf'))",
         lambda x: sp.Max(*[sp.Abs(v) for v in x]), notes="ties: any subgradient"),
    _vec("vector_norm_3", "torch.linalg.vector_norm(x, ord=3)",
         lambda x: sp.Add(*[sp.Abs(v) ** 3 for v in x]) ** R(1, 3)),
    _vec("norm", "torch.norm(x)", lambda x: norm2(x)),
    _vec("layer_norm", "F.layer_norm(x, (3,), eps=1e-5)", lambda x: _layer_norm(x, R(1, 10**5)),
         notes="(x - mean) / sqrt(var_biased + eps)"),
    Op("layer_norm_affine", "reduction", "F.layer_norm(x, (3,), weight=w, bias=b, eps=1e-5)",
       lambda x, w, b: [wi * yi + bi for yi, wi, bi in zip(_layer_norm(x, R(1, 10**5)), w, b)],
       (Arg("x", V), Arg("w", V), Arg("b", V))),
    _vec("rms_norm", "F.rms_norm(x, (3,), eps=1e-6)",
         lambda x: [xi / sp.sqrt(mean([v**2 for v in x]) + R(1, 10**6)) for xi in x],
         notes="x / sqrt(mean(x^2) + eps)"),
    _vec("batch_norm", "F.batch_norm(x.reshape(3, 1), None, None, training=True, eps=1e-5)"
         ".reshape(3)", lambda x: _layer_norm(x, R(1, 10**5)),
         notes="training mode: batch statistics, biased variance"),
    _vec("normalize", "F.normalize(x, dim=0)",
         lambda x: [xi / sp.Max(norm2(x), R(1, 10**12)) for xi in x],
         notes="x / max(||x||_2, eps), eps=1e-12"),
    _vec("cumsum", "torch.cumsum(x, 0)", lambda x: [sp.Add(*x[:k + 1]) for k in range(3)]),
    _vec("cumprod", "torch.cumprod(x, 0)", lambda x: [sp.Mul(*x[:k + 1]) for k in range(3)],
         notes="zeros: torch's backward special-cases them"),
    _vec("logcumsumexp", "torch.logcumsumexp(x, 0)", lambda x: _cummax_free_lse(x)),
    _vec("amax", "torch.amax(x)", lambda x: sp.Max(*x), notes="ties: any subgradient"),
    _vec("amin", "torch.amin(x)", lambda x: sp.Min(*x), notes="ties: any subgradient"),
    _vec("max", "torch.max(x)", lambda x: sp.Max(*x), notes="ties: any subgradient"),
    _vec("max_dim", "torch.max(x, dim=0).values", lambda x: sp.Max(*x),
         notes="ties: the gradient goes to one index"),
    Op("cosine_similarity", "reduction", "F.cosine_similarity(x, y, dim=0)",
       lambda x, y: dot(x, y) / sp.Max(norm2(x) * norm2(y), R(1, 10**8)),
       (Arg("x", V), Arg("y", V)), notes="x.y / max(||x|| ||y||, eps), eps=1e-8"),
    Op("pairwise_distance", "reduction", "F.pairwise_distance(x, y)",
       lambda x, y: norm2([a - b + R(1, 10**6) for a, b in zip(x, y)]),
       (Arg("x", V), Arg("y", V)), notes="||x - y + eps||_2, eps=1e-6 (documented)"),
    Op("dist", "reduction", "torch.dist(x, y)",
       lambda x, y: norm2([a - b for a, b in zip(x, y)]), (Arg("x", V), Arg("y", V))),
    Op("det", "reduction", "torch.linalg.det(X)", lambda X: sp.Matrix(X).det(),
       (Arg("X", (3, 3)),)),
    Op("inv", "reduction", "torch.linalg.inv(X)", lambda X: list(sp.Matrix(X).inv()),
       (Arg("X", (2, 2), "invertible"),)),
    Op("slogdet", "reduction", "torch.linalg.slogdet(X).logabsdet",
       lambda X: sp.log(sp.Abs(sp.Matrix(X).det())), (Arg("X", (2, 2), "invertible"),)),
    Op("trace", "reduction", "torch.trace(X)", lambda X: sp.Matrix(X).trace(),
       (Arg("X", (2, 2)),)),
    Op("matrix_norm", "reduction", "torch.linalg.matrix_norm(X)",
       lambda X: norm2(list(X)), (Arg("X", (2, 3)),), notes="Frobenius"),
    _unsupported("eigvalsh", "reduction", "torch.linalg.eigvalsh(X)",
                 "eigenvalues are roots of the characteristic polynomial: no closed form over "
                 "symgrad's vocabulary beyond 2x2 (and torch's gradient is undefined at "
                 "repeated eigenvalues)"),
    _unsupported("svdvals", "reduction", "torch.linalg.svdvals(X)",
                 "singular values: roots of a polynomial, no closed form over the vocabulary"),
    _unsupported("sort", "reduction", "torch.sort(x).values",
                 "order statistics: one Piecewise branch per permutation (n! branches)"),
    _unsupported("median", "reduction", "torch.median(x)",
                 "an order statistic: one Piecewise branch per permutation"),
]


def _loss(name, call, f, args, *, kinks=(), notes=""):
    return Op(name, "loss", call, f, tuple(args), kinks, notes)


X, T, P = Arg("x", V), Arg("t", V, "real", False), Arg("p", V, "prob")
L01 = Arg("t", V, "label01", False)
CLS = Arg("t", (), "class3", False)
PM1 = Arg("s", V, "pm1", False)


def _huber(e, delta):
    return sp.Piecewise((e**2 / 2, sp.Abs(e) < delta), (delta * (sp.Abs(e) - delta / 2), True))


def _smooth_l1(e, beta):
    return sp.Piecewise((e**2 / (2 * beta), sp.Abs(e) < beta), (sp.Abs(e) - beta / 2, True))


def _ce_smoothed(x, t, eps):
    lse = logsumexp(x)
    n = len(x)
    return (1 - eps) * (lse - pick(x, t)) + eps / n * sp.Add(*[lse - xi for xi in x])


def _cos(a, b):
    return dot(a, b) / sp.sqrt(dot(a, a) * dot(b, b))


def _triplet(x, y, z):
    a, p, n = x, y, z
    d = lambda u, v: norm2([ui - vi + R(1, 10**6) for ui, vi in zip(u, v)])  # noqa: E731
    return sp.Max(d(a, p) - d(a, n) + 1, 0)


LOSSES = [
    _loss("mse_loss", "F.mse_loss(x, t)", lambda x, t: mean([(a - b) ** 2 for a, b in zip(x, t)]),
          (X, T)),
    _loss("mse_loss_sum", "F.mse_loss(x, t, reduction='sum')",
          lambda x, t: sp.Add(*[(a - b) ** 2 for a, b in zip(x, t)]), (X, T)),
    _loss("l1_loss", "F.l1_loss(x, t)", lambda x, t: mean([sp.Abs(a - b) for a, b in zip(x, t)]),
          (X, T)),
    _loss("smooth_l1_loss", "F.smooth_l1_loss(x, t)",
          lambda x, t: mean([_smooth_l1(a - b, 1) for a, b in zip(x, t)]), (X, T)),
    _loss("smooth_l1_loss_beta", "F.smooth_l1_loss(x, t, beta=0.5)",
          lambda x, t: mean([_smooth_l1(a - b, R(1, 2)) for a, b in zip(x, t)]), (X, T)),
    _loss("huber_loss", "F.huber_loss(x, t)",
          lambda x, t: mean([_huber(a - b, 1) for a, b in zip(x, t)]), (X, T)),
    _loss("huber_loss_delta", "F.huber_loss(x, t, delta=2.0)",
          lambda x, t: mean([_huber(a - b, 2) for a, b in zip(x, t)]), (X, T)),
    _loss("binary_cross_entropy", "F.binary_cross_entropy(p, t)",
          lambda p, t: mean([-(b * sp.log(a) + (1 - b) * log1p(-a)) for a, b in zip(p, t)]),
          (P, L01), notes="documented: -(t log p + (1 - t) log(1 - p)); torch clamps log at -100"),
    _loss("bce_with_logits", "F.binary_cross_entropy_with_logits(x, t)",
          lambda x, t: mean([(1 - b) * softplus(a) + b * softplus(-a) for a, b in zip(x, t)]),
          (X, L01)),
    _loss("bce_with_logits_pos_weight",
          "F.binary_cross_entropy_with_logits(x, t, pos_weight=x.new_full((3,), 2.0))",
          lambda x, t: mean([(1 - b) * softplus(a) + 2 * b * softplus(-a)
                             for a, b in zip(x, t)]), (X, L01)),
    _loss("cross_entropy", "F.cross_entropy(x, t)",
          lambda x, t: logsumexp(x) - pick(x, t), (Arg("x", C), CLS)),
    _loss("cross_entropy_smoothing", "F.cross_entropy(x, t, label_smoothing=0.1)",
          lambda x, t: _ce_smoothed(x, t, R(1, 10)), (Arg("x", C), CLS),
          notes="(1 - e)(lse - x_t) + e/C sum_c (lse - x_c)"),
    _loss("cross_entropy_probs", "F.cross_entropy(x, q)",
          lambda x, q: sp.Add(*[qi * (logsumexp(x) - xi) for xi, qi in zip(x, q)]),
          (Arg("x", C), Arg("q", C, "label01", False)), notes="probability targets"),
    _loss("nll_loss", "F.nll_loss(x, t)", lambda x, t: -pick(x, t), (Arg("x", C), CLS)),
    _loss("kl_div", "F.kl_div(x, q, reduction='batchmean')",
          lambda x, q: sp.Add(*[b * (sp.log(b) - a) for a, b in zip(x, q)]) / 3,
          (X, Arg("q", V, "prob", False)), notes="sum q (log q - x) / input.size(0)"),
    _loss("kl_div_log_target", "F.kl_div(x, q, reduction='sum', log_target=True)",
          lambda x, q: sp.Add(*[sp.exp(b) * (b - a) for a, b in zip(x, q)]),
          (X, Arg("q", V, "real", False))),
    _loss("poisson_nll_loss", "F.poisson_nll_loss(x, t)",
          lambda x, t: mean([sp.exp(a) - b * a for a, b in zip(x, t)]),
          (Arg("x", V, "small"), Arg("t", V, "pos", False)), notes="log_input=True"),
    _loss("poisson_nll_loss_linear", "F.poisson_nll_loss(x, t, log_input=False)",
          lambda x, t: mean([a - b * sp.log(a + R(1, 10**8)) for a, b in zip(x, t)]),
          (Arg("x", V, "pos"), Arg("t", V, "pos", False)), notes="x - t log(x + eps), eps=1e-8"),
    _loss("gaussian_nll_loss", "F.gaussian_nll_loss(x, t, v)",
          lambda x, t, v: mean([(sp.log(sp.Max(c, EPS6))
                                 + (a - b) ** 2 / sp.Max(c, EPS6)) / 2
                                for a, b, c in zip(x, t, v)]),
          (X, T, Arg("v", V, "pos")), kinks=(1e-6,),
          notes="(log max(var, eps) + (x - t)^2 / max(var, eps)) / 2, eps=1e-6"),
    _loss("cosine_embedding_loss", "F.cosine_embedding_loss(x[None], y[None], s.reshape(1))",
          lambda x, y, s: sp.Piecewise((1 - _cos(x, y), s > 0), (sp.Max(_cos(x, y), 0), True)),
          (X, Arg("y", V), Arg("s", (), "pm1", False)), notes="margin=0"),
    _loss("margin_ranking_loss", "F.margin_ranking_loss(x, y, s, margin=0.5)",
          lambda x, y, s: mean([sp.Max(-c * (a - b) + R(1, 2), 0) for a, b, c in zip(x, y, s)]),
          (X, Arg("y", V), PM1)),
    _loss("hinge_embedding_loss", "F.hinge_embedding_loss(x, s)",
          lambda x, s: mean([sp.Piecewise((a, c > 0), (sp.Max(1 - a, 0), True))
                             for a, c in zip(x, s)]), (X, PM1), kinks=(1.0,)),
    _loss("soft_margin_loss", "F.soft_margin_loss(x, s)",
          lambda x, s: mean([softplus(-c * a) for a, c in zip(x, s)]), (X, PM1)),
    _loss("multilabel_soft_margin_loss", "F.multilabel_soft_margin_loss(x[None], t[None])",
          lambda x, t: mean([b * softplus(-a) + (1 - b) * softplus(a) for a, b in zip(x, t)]),
          (X, L01)),
    _loss("multi_margin_loss", "F.multi_margin_loss(x[None], t.reshape(1))",
          lambda x, t: sp.Add(*[sp.Piecewise((0, sp.Eq(t, i)),
                                             (sp.Max(1 - pick(x, t) + xi, 0), True))
                                for i, xi in enumerate(x)]) / 3, (Arg("x", C), CLS),
          notes="sum_{i != t} max(0, 1 - x_t + x_i) / C"),
    _loss("triplet_margin_loss", "F.triplet_margin_loss(x[None], y[None], z[None])",
          _triplet, (Arg("x", V), Arg("y", V), Arg("z", V)),
          notes="max(d(a, p) - d(a, n) + 1, 0), d = ||u - v + eps||_2, eps=1e-6"),
    _unsupported("ctc_loss", "loss", "F.ctc_loss(...)",
                 "a sum over all alignments (a dynamic programme over a variable-length "
                 "label sequence); expressible only unrolled for one fixed small case"),
]

CATALOGUE: tuple[Op, ...] = tuple(ACTIVATIONS + ELEMENTWISE + REDUCTIONS + LOSSES)
_BY_NAME = {op.name: op for op in CATALOGUE}
assert len(_BY_NAME) == len(CATALOGUE), "duplicate row names in the catalogue"


def by_name(name: str) -> Op:
    """The catalogue row ``name``; a clear error naming the choices otherwise."""
    from ..errors import SymgradError
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SymgradError(f"ops: unknown operator {name!r}; choose from "
                           f"{', '.join(sorted(_BY_NAME))}") from None
