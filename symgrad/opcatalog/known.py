"""Named causes of the torch behaviours the catalogue finds, as data (a row per behaviour).

``symgrad.causes`` names causes by failure kind (overflow, flushed to zero, domain…) and
recognises BCE/softplus behaviours from a model's intermediates; the catalogue knows which torch
operator ran at which input, so its behaviours are recognised here from the operator and the
input. Each entry was established by reading torch's formula (named in the explanation) and
checking the failing input by hand. A failure no entry and no kind explains stays *unexplained*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..causes import by_kind
from ..compare import dtype_info
from ..domains import round_to
from .table import Op


@dataclass(frozen=True)
class Known:
    klass: str  # a symgrad.causes class (known torch convention / saturation/clamping inside
    #             torch / precision loss / real derivative error …)
    name: str
    explanation: str
    ops: tuple[str, ...]  # catalogue rows it applies to
    applies: Callable[["Seen"], bool]  # does it explain this failing entry


@dataclass(frozen=True)
class Seen:
    """One failing entry as the recognisers see it."""

    point: dict
    dtype: str
    order: str  # "gradient" / "hessian-vector"
    output: str
    expected: float
    got: float

    def arr(self, name: str) -> np.ndarray:
        return np.atleast_1d(np.asarray(self.point[name], dtype=np.float64))

    @property
    def x(self) -> np.ndarray:
        return self.arr("x")

    @property
    def rel(self) -> float:
        return abs(self.got - self.expected) / max(abs(self.expected), 1e-300)


def _floats(s: Seen) -> np.ndarray:
    """Every real-valued input entry at the sample (read-out and directions excluded)."""
    vals = [np.ravel(np.asarray(v, dtype=np.float64)) for k, v in s.point.items()
            if k != "readout" and not k.startswith("v_")]
    return np.concatenate(vals) if vals else np.zeros(0)


def _scale(s: Seen) -> float:
    """The natural size of the computation: sum |read-out| x sum |direction| x max(1, |x|)."""
    r = float(np.abs(np.asarray(s.point.get("readout", 1.0))).sum())
    v = sum(float(np.abs(np.asarray(val)).sum()) for k, val in s.point.items()
            if k.startswith("v_")) or 1.0
    return r * max(v, 1.0) * max(1.0, float(np.abs(_floats(s)).max(initial=0.0)))


def _absolute_rounding(s: Seen) -> bool:
    """The error is below the rounding of the O(1) terms torch's formula sums."""
    return abs(s.got - s.expected) <= 8 * dtype_info(s.dtype).eps * _scale(s)


def _squares_overflow(s: Seen) -> bool:
    """Some argument's squares (cubes) overflow, or all of an argument's underflow."""
    info = dtype_info(s.dtype)
    for k, v in s.point.items():
        if k == "readout" or k.startswith("v_"):
            continue
        big = float(np.abs(np.asarray(v, dtype=np.float64)).max(initial=0.0))
        if big >= math.sqrt(info.max / 8) or 0 < big < info.tiny ** (1 / 3) * 2:
            return True
    return False


def _absorbed(s: Seen) -> bool:
    """Entries (or the constant margins/thresholds, ~1) differ by more than 1/eps in size: a
    sum rounds onto a branch point (max(., 0), |e| < beta) that the exact value is beside."""
    a = np.abs(_floats(s))
    nz = a[a > 0]
    if not len(nz):
        return False
    return max(nz.max(), 1.0) >= min(nz.min(), 1.0) / dtype_info(s.dtype).eps


def _subnormal(s: Seen) -> bool:
    a = np.abs(_floats(s))
    return bool(((a > 0) & (a < dtype_info(s.dtype).tiny)).any())


def _cond(s: Seen) -> float:
    with np.errstate(all="ignore"):
        try:
            return float(np.linalg.cond(np.asarray(s.point["X"], dtype=np.float64)))
        except np.linalg.LinAlgError:
            return math.inf


OUTPUT_FORM = ("torch computes this derivative from its rounded output (sigmoid: s(1 - s); "
               "expm1: y + 1; elu: y + alpha): once the output rounds to its limit the "
               "derivative's small exact value is lost")

OUTPUT_FORM_OPS = ("sigmoid", "silu", "glu", "logsigmoid", "softplus", "softplus_beta", "mish",
                   "expm1", "elu", "elu_alpha", "selu", "celu", "celu_alpha", "tanh", "tanhshrink",
                   "gelu_tanh", "logaddexp", "logaddexp2", "softmax", "log_softmax", "softmin",
                   "logsumexp", "logcumsumexp", "cross_entropy", "cross_entropy_smoothing",
                   "cross_entropy_probs", "bce_with_logits", "bce_with_logits_pos_weight",
                   "multilabel_soft_margin_loss", "soft_margin_loss")
SQUARING_OPS = ("vector_norm", "norm", "vector_norm_3", "dist", "pairwise_distance",
                "matrix_norm", "std", "std_correction0", "var", "var_correction0",
                "cosine_similarity", "cosine_embedding_loss", "triplet_margin_loss", "rms_norm",
                "layer_norm", "layer_norm_affine", "batch_norm", "normalize", "hypot", "asinh",
                "acosh", "atan2", "atan", "mse_loss", "mse_loss_sum")
BRANCHY_OPS = ("margin_ranking_loss", "hinge_embedding_loss", "triplet_margin_loss",
               "multi_margin_loss", "smooth_l1_loss", "smooth_l1_loss_beta", "huber_loss",
               "huber_loss_delta", "l1_loss", "cosine_embedding_loss", "det")
_ALL = ()  # filled below: the subnormal-input entry applies to every row

KNOWN: tuple[Known, ...] = (
    Known("known torch convention", "softplus threshold",
          "torch's softplus returns x (gradient 1) where beta*x > threshold: an approximation "
          "with relative error up to e^-threshold (2e-9 at threshold=20)",
          ("softplus",), lambda s: s.x.max() >= 20),
    Known("known torch convention", "softplus threshold",
          "torch's softplus returns x (gradient 1) where beta*x > threshold: an approximation "
          "with relative error up to e^-threshold (4.5e-5 at beta=2, threshold=10)",
          ("softplus_beta",), lambda s: 2 * s.x.max() >= 10),
    Known("precision loss", "derivative from the rounded output", OUTPUT_FORM
          + "; the error stays below the rounding of the O(1) terms (|error| <= 8 eps x "
          "|read-out| x |direction| x max(1, |x|))", OUTPUT_FORM_OPS, _absolute_rounding),
    Known("precision loss", "1 + tanh(u) cancels",
          "torch's tanh-GELU computes x/2 (1 + tanh(u)): for x < -3 the sum cancels and the "
          "small exact value (and its derivative) is lost; x * sigmoid(2u) would not",
          ("gelu_tanh",), lambda s: s.x.min() < -2.5),
    Known("real derivative error", "hardsigmoid backward uses a float32 1/6",
          "torch's hardsigmoid backward multiplies by the float32 constant 1/6 in every dtype: "
          "in float64 its gradient is wrong by 3e-8 relative (1.3e8 ULPs) on (-3, 3)",
          ("hardsigmoid",), lambda s: abs(s.x).max() < 3 and s.rel < 1e-7),
    Known("known torch convention", "pow masks exponent 0",
          "torch's pow backward is where(exponent == 0, 0, exponent * x^(exponent-1)): the "
          "mask is constant, so double backward loses d/d(exponent) of it (x^-1) at exponent 0",
          ("pow_tensor",), lambda s: s.order == "hessian-vector" and float(s.arr("y")[0]) == 0),
    Known("precision loss", "prod backward through prod / x",
          "torch's prod/cumprod backward is prod / x (where no entry is 0): with a subnormal or "
          "near-zero entry the quotient loses digits, and its derivative (double backward) "
          "cancels P/x^2 - P/x^2 terms of huge size",
          ("prod", "cumprod"),
          lambda s: (s.order == "hessian-vector" or abs(s.x).min() < 1e-3 * abs(s.x).max()
                     or abs(s.x).min() < dtype_info(s.dtype).tiny)),
    Known("real derivative error", "logcumsumexp backward loses terms at large magnitude",
          "torch's logcumsumexp backward works in the log domain, adding log-gradients to "
          "outputs of size |x|: beyond |x| ~ 1e15 the terms of other outputs round away "
          "(gradient 1 where the exact value is 3)",
          ("logcumsumexp",), lambda s: abs(s.x).max() > 1e15),
    Known("saturation/clamping inside torch", "BCELoss clamp",
          "nn.BCELoss's backward divides by max(p(1-p), 1e-12) and clamps log at -100: at "
          "p(1 - p) < 1e-12 its gradient is wrong", ("binary_cross_entropy",),
          lambda s: ((s.arr("p") * (1 - s.arr("p"))).min() < 1e-12
                     or (s.order == "hessian-vector"
                         and s.rel < 8e-12 / (s.arr("p") * (1 - s.arr("p"))).min()))),
    Known("precision loss", "BCE-with-logits pos_weight cancels",
          "with pos_weight torch computes (1 - t) x + w (log1p(e^-|x|) + max(-x, 0)): at a large "
          "negative logit x - x cancels and the small exact loss loses digits",
          ("bce_with_logits_pos_weight",), lambda s: s.x.min() < -4),
    Known("known torch convention", "gaussian_nll_loss var clamp is straight-through",
          "torch clamps var to eps in place under no_grad: below eps the loss uses eps but the "
          "gradient flows as if var were eps (the exact derivative of max(var, eps) there is 0)",
          ("gaussian_nll_loss",), lambda s: s.arr("v").min() < 1e-6),
    Known("known torch convention", "cosine_embedding_loss adds eps to the norms",
          "torch computes cos = x.y / sqrt((|x|^2 + 1e-12)(|y|^2 + 1e-12)) (EPSILON, "
          "undocumented): a relative change of ~1e-12/|x|^2", ("cosine_embedding_loss",),
          lambda s: (s.rel < 1e-6 or abs(s.got - s.expected) < 1e-10
                     or min(abs(s.x).max(), abs(s.arr("y")).max()) < 1e-2)),
    Known("precision loss", "matrix backward through the inverse",
          "torch differentiates det/slogdet/inv through an LU factorisation (det * A^-T): at "
          "an ill-conditioned matrix that loses digits the exact cofactors do not",
          ("det", "slogdet", "inv"),
          lambda s: s.rel <= 64 * dtype_info(s.dtype).eps * _cond(s) or _cond(s) > 1e6),
    Known("precision loss", "second-order rounding of an exact zero",
          "var/std (and the variance inside a norm) of equal entries is exactly 0; torch's rounded mean leaves residuals whose "
          "squares (a second-order rounding effect) the first-order bound cannot see",
          ("var", "var_correction0", "std", "std_correction0", "layer_norm", "layer_norm_affine",
           "batch_norm"), lambda s: s.expected == 0 or float(s.x.max()) == float(s.x.min())),
    Known("known torch convention", "eps rounded to the dtype",
          "eps=1e-6 is compared in the input's dtype: at x = float32(1e-6) torch does not clamp "
          "while the exact clamp at the double 1e-6 does", ("logit_eps",),
          lambda s: s.dtype != "float64" and float(s.x[0]) in (
              float(round_to(np.array([1e-6]), s.dtype)[0]),
              float(round_to(np.array([1 - 1e-6]), s.dtype)[0]))),
    Known("overflow", "squares overflow (no scaling)",
          "torch sums squares (or cubes) of the entries without rescaling: beyond sqrt(max) "
          "they overflow to inf (or below sqrt(tiny) underflow to 0) and the gradient is lost "
          "(LAPACK-style norms rescale)", SQUARING_OPS, _squares_overflow),
    Known("precision loss", "rounding lands on a branch point",
          "inputs differ in size by more than 1/eps: a difference rounds onto a branch point "
          "(max(., 0), |e| < beta, a margin) that the exact value is beside, so torch takes "
          "the other branch", BRANCHY_OPS, _absorbed),
    Known("precision loss", "subnormal input",
          "a subnormal input carries fewer significant bits; products with it round at the "
          "subnormal spacing and later divisions magnify that", tuple(_ALL), _subnormal),
    Known("precision loss", "rounded exponent 1/p",
          "torch computes (sum |x|^p)^(1/p) with 1/p rounded to the dtype: a relative error "
          "up to u * |ln(sum |x|^p)|", ("vector_norm_3",),
          lambda s: s.rel < 8 * dtype_info(s.dtype).eps * (1 + abs(3 * math.log(abs(s.x).max()
                                                                           + 1e-300)))),
)


def classify(op: Op, dtype: str, order: str, kind: str, point: dict, output: str,
             expected: float, got: float) -> tuple[str, str]:
    """(cause "class: name" or "unexplained", explanation) of one failing entry."""
    seen = Seen(point, dtype, order, output, expected, got)
    for k in KNOWN:
        if op.name in k.ops or k.name == "subnormal input":
            try:
                hit = bool(k.applies(seen))
            except (TypeError, KeyError, ValueError, IndexError):
                hit = False
            if hit:
                return f"{k.klass}: {k.name}", k.explanation
    cause = by_kind(kind, "torch", False, got, expected)
    if cause is not None:
        return f"{cause.klass}: {cause.name}", cause.explanation
    return "unexplained", ("outside the rounding-error bound with no known cause: a real "
                           "derivative error, or a behaviour not yet catalogued")
