"""The catalogue: one row per torch operator.

Each row gives the torch call (with the operator's own parameters), its mathematical definition
in sympy written from the *documented* formula (never from torch's implementation), the shapes
and input domains of its arguments, and notes. Definitions use exact forms of the same function
that keep symgrad's own rounding-error bound tight (the op table's two-branch softplus and
sigmoid, erfc for 1 + erf(-t)); mathematically they are the documented formula.

A row with ``unsupported="why"`` is an operator whose derivative symgrad cannot express yet: it is
listed in the report with the reason, never dropped.

>>> from symgrad.opcatalog.table import CATALOGUE, by_name
>>> by_name("softplus").call
'F.softplus(x)'
>>> len([op for op in CATALOGUE if not op.unsupported]) >= 80
True
"""

from __future__ import annotations


import sympy as sp
from sympy.codegen.cfunctions import log1p

from ..errors import SymgradError, did_you_mean
from ..optable import ENTRIES
from .losses import LOSSES
from .rows import (EPS6, LN2, PLACED, V, Arg, Op, R, act, binary, dot,
                   elu, entry, leaky, logsumexp, mean, norm2, sigmoid, softplus, unary,
                   unsupported, var)

__all__ = ["CATALOGUE", "Arg", "Op", "by_name"]


ACTIVATIONS = [
    entry("relu"),
    act("relu6", "F.relu6(x)", lambda x: sp.Min(sp.Max(x, 0), 6), kinks=(0.0, 6.0)),
    act("leaky_relu", "F.leaky_relu(x, negative_slope=0.01)",
         lambda x: leaky(x, R(1, 100)), kinks=(0.0,)),
    act("prelu", "F.prelu(x.reshape(1), x.new_tensor([0.25]))",
         lambda x: leaky(x, R(1, 4)), kinks=(0.0,),
         notes="weight 0.25 held fixed"),
    act("rrelu_eval", "F.rrelu(x, lower=0.125, upper=0.375, training=False)",
         lambda x: leaky(x, R(1, 4)), kinks=(0.0,),
         notes="eval mode: slope (lower + upper) / 2"),
    entry("elu"),
    act("elu_alpha", "F.elu(x, alpha=0.5)", lambda x: elu(x, R(1, 2)), kinks=(0.0,)),
    entry("selu"),
    entry("celu"),
    act("celu_alpha", "F.celu(x, alpha=1.5)",
         lambda x: sp.Max(x, 0) + R(3, 2) * (sp.exp(sp.Min(x, 0) / R(3, 2)) - 1),
         kinks=(0.0,)),
    entry("gelu"),
    entry("gelu_tanh"),
    entry("softplus"),
    act("softplus_beta", "F.softplus(x, beta=2.0, threshold=10.0)",
         lambda x: softplus(2 * x) / 2, kinks=(5.0,),
         notes="1/beta log(1 + e^(beta x)); torch returns x where beta x > threshold"),
    act("softsign", "F.softsign(x)", lambda x: x / (1 + sp.Abs(x)), kinks=(0.0,)),
    act("hardtanh", "F.hardtanh(x)", lambda x: sp.Min(sp.Max(x, -1), 1), kinks=(-1.0, 1.0)),
    act("hardtanh_range", "F.hardtanh(x, min_val=-2.0, max_val=3.0)",
         lambda x: sp.Min(sp.Max(x, -2), 3), kinks=(-2.0, 3.0)),
    act("hardswish", "F.hardswish(x)", lambda x: x * sp.Min(sp.Max(x + 3, 0), 6) / 6,
         kinks=(-3.0, 3.0)),
    act("hardsigmoid", "F.hardsigmoid(x)", lambda x: sp.Min(sp.Max(x / 6 + R(1, 2), 0), 1),
         kinks=(-3.0, 3.0)),
    entry("logsigmoid"),  # -softplus(-x)
    act("tanhshrink", "F.tanhshrink(x)", lambda x: x - sp.tanh(x)),
    act("softshrink", "F.softshrink(x, lambd=0.5)",
         lambda x: sp.Piecewise((x - R(1, 2), x > R(1, 2)), (x + R(1, 2), x < -R(1, 2)),
                                (0, True)), kinks=(-0.5, 0.5)),
    act("hardshrink", "F.hardshrink(x, lambd=0.5)",
         lambda x: sp.Piecewise((x, sp.Abs(x) > R(1, 2)), (0, True)), kinks=(-0.5, 0.5),
         notes="discontinuous at |x| = lambd"),
    act("threshold", "F.threshold(x, threshold=1.0, value=-0.5)",
         lambda x: sp.Piecewise((x, x > 1), (-R(1, 2), True)), kinks=(1.0,),
         notes="discontinuous at the threshold"),
    entry("sigmoid"),
    entry("tanh"),
    Op("glu", "activation", "F.glu(x, dim=0)",
       lambda x: [x[0] * sigmoid(x[2]), x[1] * sigmoid(x[3])], (Arg("x", (4,)),),
       notes="a * sigmoid(b), halves of x"),
]

ELEMENTWISE = [
    entry("exp"),
    unary("exp2", "torch.exp2(x)", lambda x: sp.exp(x * LN2)),
    unary("expm1", "torch.expm1(x)", lambda x: sp.exp(x) - 1),
    entry("log"),
    unary("log2", "torch.log2(x)", lambda x: sp.log(x) / LN2, domain="pos"),
    unary("log10", "torch.log10(x)", lambda x: sp.log(x) / sp.log(10), domain="pos"),
    unary("log1p", "torch.log1p(x)", log1p, domain="gtm1"),
    unary("sqrt", "torch.sqrt(x)", sp.sqrt, domain="pos"),
    unary("rsqrt", "torch.rsqrt(x)", lambda x: x ** R(-1, 2), domain="pos"),
    unary("square", "torch.square(x)", lambda x: x**2),
    unary("pow_int", "torch.pow(x, 3)", lambda x: x**3),
    unary("pow_frac", "torch.pow(x, 2.5)", lambda x: x ** R(5, 2), domain="pos"),
    unary("pow_neg", "torch.pow(x, -2)", lambda x: x**-2, domain="nonzero"),
    binary("pow_tensor", "torch.pow(x, y)", lambda x, y: sp.exp(y * sp.log(x)), "pos", "small"),
    unary("reciprocal", "torch.reciprocal(x)", lambda x: 1 / x, domain="nonzero"),
    unary("abs", "torch.abs(x)", sp.Abs, kinks=(0.0,)),
    unary("sin", "torch.sin(x)", sp.sin),
    unary("cos", "torch.cos(x)", sp.cos),
    unary("tan", "torch.tan(x)", sp.tan, domain="small"),
    unary("asin", "torch.asin(x)", sp.asin, domain="unit"),
    unary("acos", "torch.acos(x)", sp.acos, domain="unit"),
    unary("atan", "torch.atan(x)", sp.atan),
    binary("atan2", "torch.atan2(x, y)",
            lambda x, y: sp.Piecewise((sp.atan(x / y), y > 0),
                                      (sp.atan(x / y) + sp.pi, (y < 0) & (x >= 0)),
                                      (sp.atan(x / y) - sp.pi, True)), "real", "nonzero",
            notes="atan2(x, y) = arg(y + i x); y != 0 (the y = 0 axis is a branch of its own)"),
    unary("sinh", "torch.sinh(x)", sp.sinh),
    unary("cosh", "torch.cosh(x)", sp.cosh),
    unary("asinh", "torch.asinh(x)",
           lambda x: sp.Piecewise((log1p(x + x**2 / (1 + sp.sqrt(1 + x**2))), x >= 0),
                                  (-log1p(-x + x**2 / (1 + sp.sqrt(1 + x**2))), True)),
           notes="log(x + sqrt(x^2 + 1)) in its cancellation-free form"),
    unary("acosh", "torch.acosh(x)",
           lambda x: log1p((x - 1) + sp.sqrt((x - 1) * (x + 1))), domain="ge1",
           notes="log(x + sqrt(x^2 - 1)) = log1p((x - 1) + sqrt((x - 1)(x + 1)))"),
    unary("atanh", "torch.atanh(x)", lambda x: (log1p(x) - log1p(-x)) / 2, domain="unit"),
    unary("erf", "torch.erf(x)", sp.erf),
    unary("erfc", "torch.erfc(x)", sp.erfc),
    unary("erfcx", "torch.special.erfcx(x)", lambda x: sp.exp(x**2) * sp.erfc(x),
           domain="small"),
    unary("ndtr", "torch.special.ndtr(x)", lambda x: sp.erfc(-x / sp.sqrt(2)) / 2),
    unary("log_ndtr", "torch.special.log_ndtr(x)",
           lambda x: sp.log(sp.erfc(-x / sp.sqrt(2)) / 2), domain="small"),
    unary("entr", "torch.special.entr(x)", lambda x: -x * sp.log(x), domain="pos"),
    unary("sinc", "torch.sinc(x)",
           lambda x: sp.Piecewise((1, sp.Eq(x, 0)), (sp.sin(sp.pi * x) / (sp.pi * x), True)),
           domain="small"),
    unary("logit", "torch.logit(x)", lambda x: sp.log(x) - log1p(-x), domain="prob"),
    unary("logit_eps", "torch.logit(x, eps=1e-6)",
           lambda x: (lambda z: sp.log(z) - log1p(-z))(
               sp.Min(sp.Max(x, EPS6), 1 - EPS6)),
           domain="prob", kinks=(1e-6, 1 - 1e-6), notes="x clamped to [eps, 1 - eps]"),
    binary("xlogy", "torch.xlogy(x, y)", lambda x, y: x * sp.log(y), "real", "pos",
            notes="documented: 0 where x = 0, else x log y; for y > 0 that is x log y"),
    binary("xlog1py", "torch.special.xlog1py(x, y)", lambda x, y: x * log1p(y), "real",
            "gtm1", notes="0 where x = 0, else x log1p(y)"),
    binary("hypot", "torch.hypot(x, y)", lambda x, y: sp.sqrt(x**2 + y**2), "real", "nonzero"),
    binary("logaddexp", "torch.logaddexp(x, y)",
            lambda x, y: sp.Max(x, y) + log1p(sp.exp(-sp.Abs(x - y)))),
    binary("logaddexp2", "torch.logaddexp2(x, y)",
            lambda x, y: sp.Max(x, y) + log1p(sp.exp(-sp.Abs(x - y) * LN2)) / LN2),
    binary("mul", "torch.mul(x, y)", lambda x, y: x * y),
    binary("div", "torch.div(x, y)", lambda x, y: x / y, "real", "nonzero"),
    binary("add_alpha", "torch.add(x, y, alpha=2.5)", lambda x, y: x + R(5, 2) * y),
    binary("lerp", "torch.lerp(x, y, 0.3)", lambda x, y: x + R(3, 10) * (y - x)),
    Op("addcmul", "elementwise", "torch.addcmul(x, y, z, value=0.5)",
       lambda x, y, z: x + y * z / 2, (Arg("x"), Arg("y"), Arg("z"))),
    Op("addcdiv", "elementwise", "torch.addcdiv(x, y, z, value=0.5)",
       lambda x, y, z: x + y / z / 2, (Arg("x"), Arg("y"), Arg("z", (), "nonzero"))),
    unary("clamp", "torch.clamp(x, min=-0.5, max=2.0)",
           lambda x: sp.Min(sp.Max(x, -R(1, 2)), 2), kinks=(-0.5, 2.0)),
    binary("maximum", "torch.maximum(x, y)", sp.Max, kinks=(0.0,)),
    binary("minimum", "torch.minimum(x, y)", sp.Min, kinks=(0.0,)),
    unsupported("erfinv", "elementwise", "torch.erfinv(x)",
                 "its value and derivative sqrt(pi)/2 exp(erfinv(x)^2) need the inverse of erf, "
                 "outside symgrad's function vocabulary (no closed form over exp/log/erf)"),
    unsupported("lgamma", "elementwise", "torch.lgamma(x)",
                 "derivative digamma(x): the gamma family is outside symgrad's vocabulary"),
    unsupported("digamma", "elementwise", "torch.digamma(x)",
                 "derivative polygamma(1, x): outside symgrad's vocabulary"),
    unsupported("polygamma", "elementwise", "torch.polygamma(1, x)",
                 "derivative polygamma(2, x): outside symgrad's vocabulary"),
    unsupported("mvlgamma", "elementwise", "torch.mvlgamma(x, p=2)",
                 "a sum of lgamma terms: outside symgrad's vocabulary"),
    unsupported("i0", "elementwise", "torch.i0(x)",
                 "modified Bessel function (derivative i1): outside symgrad's vocabulary"),
    unsupported("i0e", "elementwise", "torch.special.i0e(x)",
                 "scaled Bessel function: outside symgrad's vocabulary"),
    unsupported("i1", "elementwise", "torch.special.i1(x)",
                 "modified Bessel function of order 1: outside symgrad's vocabulary"),
    unsupported("ndtri", "elementwise", "torch.special.ndtri(x)",
                 "the inverse normal CDF: an inverse function, outside symgrad's vocabulary"),
    unsupported("zeta", "elementwise", "torch.special.zeta(x, q)",
                 "Hurwitz zeta; torch itself has no derivative with respect to x"),
]


def _vec(name, call, f, *, domain="real", kinks=(), notes="", extra=()):
    return Op(name, "reduction", call, f, (Arg("x", V, domain),) + tuple(extra), kinks, notes)


def _layer_norm(x, eps):
    m, v = mean(x), var(x, 0)
    return [(xi - m) / sp.sqrt(v + eps) for xi in x]


def _rows(f, X):
    """``f`` of each row of the matrix ``X``."""
    return [f(*X.row(i)) for i in range(X.rows)]


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
    # rows of four: the inputs' ties (the first k of the 8 entries equal, k = 2..8) give
    # 2-, 3- and 4-way ties within a row
    Op("amax_dim1", "reduction", "torch.amax(X, dim=1)", lambda X: _rows(sp.Max, X),
       (Arg("X", (2, 4)),), notes="ties: any subgradient (torch: an even split)"),
    Op("max_dim1", "reduction", "torch.max(X, dim=1).values", lambda X: _rows(sp.Max, X),
       (Arg("X", (2, 4)),), notes="ties: the gradient goes to one index"),
    Op("vector_norm_inf_dim1", "reduction", "torch.linalg.vector_norm(X, ord=float('inf'), "
       "dim=1)", lambda X: _rows(sp.Max, X.applyfunc(sp.Abs)), (Arg("X", (2, 4)),),
       notes="ties: any subgradient (torch: an even split)"),
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
    unsupported("eigvalsh", "reduction", "torch.linalg.eigvalsh(X)",
                 "eigenvalues are roots of the characteristic polynomial: no closed form over "
                 "symgrad's vocabulary beyond 2x2 (and torch's gradient is undefined at "
                 "repeated eigenvalues)"),
    unsupported("svdvals", "reduction", "torch.linalg.svdvals(X)",
                 "singular values: roots of a polynomial, no closed form over the vocabulary"),
    unsupported("sort", "reduction", "torch.sort(x).values",
                 "order statistics: one Piecewise branch per permutation (n! branches)"),
    unsupported("median", "reduction", "torch.median(x)",
                 "an order statistic: one Piecewise branch per permutation"),
]


for _e in ENTRIES:  # op-table entries not placed above (new ops): at the end of their group
    if _e.name not in PLACED:
        (ACTIVATIONS if _e.group == "activation" else ELEMENTWISE).append(entry(_e.name))

CATALOGUE: tuple[Op, ...] = tuple(ACTIVATIONS + ELEMENTWISE + REDUCTIONS + LOSSES)
_BY_NAME = {op.name: op for op in CATALOGUE}
assert len(_BY_NAME) == len(CATALOGUE), "duplicate row names in the catalogue"


def by_name(name: str) -> Op:
    """The catalogue row ``name``; a clear error naming the choices otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        hint = f"{h} " if (h := did_you_mean(name, _BY_NAME)) else ""
        raise SymgradError(f"ops: unknown operator {name!r}; {hint}choose from "
                           f"{', '.join(sorted(_BY_NAME))}") from None
