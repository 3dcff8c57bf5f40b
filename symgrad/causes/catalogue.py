"""The catalogue of torch behaviours symgrad found, each recognised from a ``Context``.

One ``Entry`` per behaviour: its ``Cause``, the backends it can explain (the user's code:
``torch_fn``) and a detector that reads the failing sample's data (the exact sigmoid / softplus /
logit intermediates, the dtype, the loss value, the ops that changed a tensor's dtype) and
returns the detail that goes in parentheses after the explanation, or None.

>>> from .kinds import Context
>>> class F: output, got, expected = "d/dw", 0.5, 1.0
>>> _softplus_threshold(Context(ops={"softplus": [(None, [25.0])]}), F, 0.5)
'softplus argument 25 > 20'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..compare import dtype_info
from ..logistic import adjoint_cancellation
from ..result_text import CLAMP_NOT_DIFFERENTIATED  # its line keeps the why (KEPT_CAUSES)
from .kinds import Cause, Context


@dataclass(frozen=True)
class Entry:
    """A torch behaviour symgrad found, recognised from data about the failing sample."""

    cause: Cause
    backends: tuple[str, ...]
    applies: Callable[["Context", object, float], str | None]  # (context, failure,
    #                                                                     relative error)
    orders: tuple[int, ...] = (1,)  # the derivative orders the behaviour explains (these are
    #                                 first-order behaviours of torch's forward and backward)
    nonfinite: bool = False  # it explains a NaN or inf gradient: asked before the wording of a
    #                          non-finite kind (where-trap, intermediate overflow), not after


BCE_EPS = 1e-12  # nn.BCELoss's backward: (p - y) / max(p (1 - p), 1e-12) (torch's EPSILON)


def rounds_to_zero(c: float, dtype: str) -> bool:
    """Does the positive constant ``c`` round to 0 in ``dtype`` (below half its smallest
    subnormal)?

    >>> rounds_to_zero(1e-12, "float16"), rounds_to_zero(1e-12, "bfloat16")
    (True, False)
    """
    info = dtype_info(dtype)
    return c < info.tiny * info.eps / 2


def _bce_clamp(ctx: Context, failure, rel: float) -> str | None:
    for p, _ in ctx.ops.get("bce_sigmoid", []):  # a sigmoid a log reads; a bare one is no BCE
        if p * (1 - p) < 1e-12 and rel > 1e-3:  # a clamp is gross, not a few digits
            return f"p(1-p) = {float(p * (1 - p)):.3g}"
    return None


def _bce_log_clamp(ctx: Context, failure, rel: float) -> str | None:
    """float32/bfloat16: the sigmoid rounds to 0 or 1, BCELoss's log(0) is clamped at -100."""
    if failure.output != "value" or not np.isfinite(ctx.value_got) or ctx.value_got < 99:
        return None
    p = _rounded_probability(ctx)
    if p is None:
        return None
    return (f"p = {float(p):.9g} rounds to {0 if p < 0.5 else 1} in {ctx.dtype}; loss "
            f"{ctx.value_got:g} instead of {ctx.value_expected:.6g}")


def _bce_eps_underflow(ctx: Context, failure, rel: float) -> str | None:
    """float16: BCELoss's backward divides by max(p(1-p), 1e-12) and 1e-12 is 0 there, so a
    sigmoid that rounds to 0 or 1 makes it 0/0 (NaN) or 1/0 (inf)."""
    if failure.output == "value" or not rounds_to_zero(BCE_EPS, ctx.dtype):
        return None
    p = _rounded_probability(ctx)
    if p is None:
        return None
    return (f"p = {float(p):.9g} rounds to {0 if p < 0.5 else 1} and {BCE_EPS:g} rounds "
            f"to 0 in {ctx.dtype}: max(p(1-p), {BCE_EPS:g}) = 0")


def _rounded_probability(ctx: Context):
    """The first probability a BCE reads (``ctx.ops["bce_sigmoid"]``) that rounds to 0 or 1 in
    the run's dtype, else None."""
    eps = dtype_info(ctx.dtype).eps
    return next((p for p, _ in ctx.ops.get("bce_sigmoid", []) if min(p, 1 - p) < eps / 2), None)


def _norm_clamp(ctx: Context, failure, rel: float) -> str | None:
    """A gradient entry (its loss value agreeing) whose path runs through a norm's eps clamp
    that is active at the sample (``ctx.ops["norm_clamp"]``: (None, [norm, eps]))."""
    if failure.output == "value" or ctx.value_status in ("mismatch", "non-finite",
                                                          "systematic"):
        return None
    for _, (norm, eps) in ctx.ops.get("norm_clamp", []):
        return f"|x| = {norm:.3g} < eps = {eps:.3g}"
    return None


def _softplus_threshold(ctx: Context, failure, rel: float) -> str | None:
    for _, args in ctx.ops.get("softplus", []):
        if args and args[0] > 20:
            return f"softplus argument {float(args[0]):.4g} > 20"
    return None


def bce_sites(ctx: Context) -> list[tuple[float, float]]:
    """(logit z, target y: NaN if unknown) of the BCE / log-sigmoid sites (a softplus, a log of
    a sigmoid) the failing entry flows through (``ctx.ops["bce"]``, ``tensor.context``)."""
    return [(float(a[0]), float(a[1]) if len(a) > 1 else float("nan"))
            for _, a in ctx.ops.get("bce", []) if a and a[0] is not None]


def _saturated_logit(ctx: Context, failure, rel: float) -> str | None:
    """BCE-with-logits at a saturated logit z loses digits where the computed quantity cancels.
    The value: torch's (1 - y) z - log_sigmoid(z) (terms of size |z| leaving e^-|z| at z << 0,
    y = 0) or the naive log(1 - sigmoid(z)) err by a few units of rounding of the cancelled
    terms: 2 u (|z| + 1) summed over the distinct logits (or the naive form's relative u e^|z|
    of a loss ~|z|: below 1e-3). A gradient entry: the adjoint sigmoid(z) - y errs by that
    rounding times how much it cancels at the entry's target (``adjoint_cancellation``), at
    most 1e-3 relative: at y = 0, z << 0 nothing cancels, a proven error there is no precision
    loss. Only logits on the entry's own path count (``bce_sites``), else the first split."""
    sites = [(z, y) for z, y in bce_sites(ctx) if abs(z) > 4]
    if not sites:
        return None
    u, err = dtype_info(ctx.dtype).eps / 2, abs(failure.got - failure.expected)
    z, y = max(sites, key=lambda s: abs(s[0]))
    if failure.output != "value":
        explained = min(1e-3, sum(2 * u * (a + 1) * adjoint_cancellation(a, t)
                                  for a, t in {(abs(z), t) for z, t in sites}))
        return (f"logit {z:.4g}" + ("" if np.isnan(y) else f", target {y:.3g}") + f": relative "
                f"error {rel:.3g} within the adjoint's cancellation {explained:.3g}"
                if rel <= explained else None)
    cancelled = 2 * u * sum(abs(z) + 1 for z in {abs(z) for z, _ in bce_sites(ctx)})
    return (f"logit {z:.4g}: terms of size ~{abs(z):.3g} cancel to leave e^-|z| = "
            f"{np.exp(-abs(z)):.3g}; error {err:.3g} within the cancelled terms' rounding "
            f"{cancelled:.3g}" if rel < 1e-3 or err <= cancelled else None)  # loss ~ e^|z|


def _promotion(ctx: Context, failure, rel: float) -> str | None:
    if ctx.promotions:
        return f"{', '.join(sorted(set(ctx.promotions)))} on an integer tensor"
    return None


def _lowered(ctx: Context, failure, rel: float) -> str | None:
    if ctx.lowered:
        return f"{', '.join(dict.fromkeys(ctx.lowered))} in a {ctx.dtype} run"
    return None


CATALOGUE = (
    Entry(Cause("dtype promotion in user code", "lower precision in user code",
                "the code verified converts the run's floats to a lower-precision dtype "
                "(.float(), .to(torch.float32)): what follows carries that dtype's rounding; "
                "drop the conversion, or verify with that dtype"), ("torch_fn",), _lowered),
    Entry(Cause("dtype promotion in user code", "integer input promoted",
                "a torch op applied to an integer (int64) input returns torch's default dtype "
                "(float32), not the run's: convert the input with .to(dtype) first"),
          ("torch_fn",), _promotion),
    Entry(Cause("saturation/clamping inside torch", "BCELoss clamp",
                "nn.BCELoss clamps log at -100: once the sigmoid rounds to 0 or 1 in the dtype "
                "the loss is 100; use BCEWithLogits / log-sigmoid"), ("torch_fn",),
          _bce_log_clamp),
    Entry(Cause("saturation/clamping inside torch", "BCELoss clamp",
                "nn.BCELoss's backward divides by max(p(1-p), 1e-12) (and clamps log at -100): "
                "at a saturated sigmoid its gradient is wrong"), ("torch_fn",), _bce_clamp),
    Entry(Cause("saturation/clamping inside torch", "BCELoss eps underflow",
                "nn.BCELoss's backward divides by max(p(1-p), 1e-12), and its 1e-12 rounds to 0 "
                "in this dtype: once the sigmoid rounds to 0 or 1 the gradient is 0/0 (NaN) or "
                "1/0 (inf); use BCEWithLogits / log-sigmoid, or a wider dtype"), ("torch_fn",),
          _bce_eps_underflow, nonfinite=True),
    Entry(Cause("derivative wrong", CLAMP_NOT_DIFFERENTIATED,
                "the eps clamp of a norm, max(|x|, eps), is active here and the backward does "
                "not differentiate it: torch's F.cosine_similarity clamps its norms in place "
                "with gradient tracking off, so its backward treats max(|x|, eps) as |x| (slope "
                "1, not 0) and is not the derivative of its own forward; clamp with autograd "
                "(x / x.norm(dim=-1, keepdim=True).clamp_min(eps), F.normalize) or keep the "
                "norms above eps"), ("torch_fn",), _norm_clamp),
    Entry(Cause("known torch convention", "softplus threshold",
                "torch's softplus returns x (gradient 1) above threshold=20: an approximation "
                "with relative error up to e^-20 = 2e-9"), ("torch_fn",), _softplus_threshold),
    Entry(Cause("precision loss", "saturated logit",
                "torch's BCE-with-logits (F.binary_cross_entropy_with_logits: (1 - y) z - "
                "log_sigmoid(z)) and the naive log(1 - sigmoid(z)) lose digits at a saturated "
                "logit, worst in float32: they subtract nearly equal numbers; a log-sigmoid / "
                "softplus(z) - y z form with log1p does not"), ("torch_fn",),
          _saturated_logit),
)
