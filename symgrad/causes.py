"""Root causes: every disagreement gets a class and a one-line explanation.

The first split of every failure: **function differs** (the loss value of the same backend at the
same sample disagrees beyond its bound: the code computes a different function, and its gradient
follows it) versus **derivative wrong** (the value agrees, the gradient does not: the derivative
of the same function is wrong). Before that split, what is known: the failure kind (domain,
overflow, kink, non-finite), and a catalogue of behaviours symgrad found in torch (BCELoss clamps,
the softplus threshold, saturated logits, integer tensors promoted to float32), each recognised
from data the pipeline hands over in a ``Context`` (exact intermediates at the sample, the value's
status, the ops that promoted an integer tensor). This module imports nothing of the pipeline's.

>>> by_kind("domain", "torch", False, float("nan"), float("nan")).name
'domain'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p

from .compare import dtype_info
from .logistic import adjoint_cancellation

OWN = ("numpy", "torch")  # symgrad's own programs; "torch_fn" is the user's code


@dataclass(frozen=True)
class Cause:
    klass: str  # function differs / derivative wrong / known torch convention /
    #             saturation/clamping inside torch / dtype promotion in user code / precision
    #             loss / overflow / underflow / domain
    name: str
    explanation: str


@dataclass(frozen=True)
class Context:
    """What the pipeline knows about one failing sample, handed over as data."""

    dtype: str = "float64"  # the backend's dtype
    value_status: str = "ok"  # status of the loss value, same backend and sample
    value_expected: float = float("nan")
    value_got: float = float("nan")
    ops: dict = field(default_factory=dict)  # op_values(): exact sigmoid/softplus values
    promotions: tuple[str, ...] = ()  # torch ops that turned an integer tensor into floats
    #                                   of another dtype than the run's (user code)
    lowered: tuple[str, ...] = ()  # torch ops that turned the run's floats into a lower-
    #                                precision dtype (a .float() in a float64 run; user code)
    departure: str = ""  # where the forward first departs (symgrad.tensor.departure), in words;
    #                      "" when not located (intermediates not visible or none compared)
    forward_agrees: bool = False  # every compared intermediate agreed (a departure search ran)
    random: str = ""  # two runs of the same sample differ beyond rounding (tensor.departure.
    #                   Unreproducible, in words): dropout or sampling left on in eval mode
    unlocated: str = ""  # why a departure search compared nothing (module_map=, ...), in words
    order: int = 1  # 2: the outputs are Hessian-vector products (torch's double backward)


def by_kind(kind: str, backend: str, has_branch: bool, got: float, expected: float, *,
            value_finite: bool = True, guard_zero: str | None = None) -> Cause | None:
    """The cause implied by the failure kind alone (None: look further).

    ``value_finite``: the loss value at the same sample is finite (a where-trap poisons only the
    gradient; a NaN in the value is the forward's). ``guard_zero``: a constant of the model that
    rounds to 0 in the dtype (a guard like ``+ 1e-10`` in float16).
    """
    if kind == "domain":
        return Cause("domain", "domain", "the model is undefined at the sample (log/sqrt of a "
                                         "negative, division by zero): not a backend error")
    if kind == "overflow":
        return Cause("overflow", "overflow", "the exact value exceeds the dtype's range")
    if kind == "kink":
        return Cause("known torch convention", "kink", "a kink: the backend picked one "
                     "subgradient (torch.relu: H(0) = 0; torch.maximum: 1/2)")
    if kind == "precision loss":
        return Cause("precision loss", "cancellation", "the computation as written cancels "
                     "here; the error is within its rounding bound")
    if kind == "non-finite":
        if guard_zero is not None:
            return Cause("underflow", "guard rounds to zero", f"the guard constant {guard_zero} "
                         "rounds to 0 in this dtype, so the guarded expression hits 0/0 or "
                         "1/0; use a guard the dtype can represent")
        if not value_finite:
            return Cause("function differs", "forward NaN", f"{backend}'s loss value itself is "
                         "NaN/inf at this sample (0/0, inf - inf; e.g. a softmax over a fully "
                         "masked row): the forward breaks, not the derivative")
        if np.isnan(got) and has_branch:
            return Cause("known torch convention", "where-trap",
                         "NaN from the branch not taken (torch.where / Max evaluate both sides; "
                         "a NaN there poisons the gradient while the value is fine)")
        return Cause("overflow", "intermediate overflow", f"{backend} overflowed (or hit 0/0, "
                     "inf-inf) in an intermediate although the exact value is finite")
    if kind == "mismatch" and got == 0 and abs(expected) < 1e-150:
        return Cause("overflow", "flushed to zero", f"{backend} flushed a tiny value to 0 after "
                     "an intermediate over- or underflowed (exp of a huge argument)")
    return None


DERIVATIVE_WRONG = Cause("derivative wrong", "real derivative error",
                         "the loss value agrees with the exact one, the gradient is outside its "
                         "bound: the derivative of the same function is wrong")
SECOND_DERIVATIVE_WRONG = Cause("derivative wrong", "real second-derivative error",
                                "g·v (the first derivative along v) agrees with the exact one, "
                                "the Hessian-vector product is outside its bound: the double "
                                "backward of the same function is wrong")


RANDOM = Cause("function differs", "random forward", "")


def function_differs(ctx: Context, output: str) -> Cause:
    """"Function differs", with where (a located departure), why (randomness in eval mode), or
    the loss value's expected and got (never printed when unknown: NaN)."""
    if ctx.random:  # the forward is not even reproducible: no departure can be trusted
        return Cause(RANDOM.klass, RANDOM.name, f"the function differs: {ctx.random}")
    if ctx.departure:  # located: the one-line sentence says where, expected vs got
        return Cause("function differs", "forward departs", f"the function differs: "
                     f"{ctx.departure}")
    known = not (np.isnan(ctx.value_expected) and np.isnan(ctx.value_got))
    what = (f"the loss value at this sample (expected {ctx.value_expected!r}, "
            f"got {ctx.value_got!r})" if output != "value" and known else "the loss value")
    where = ("every compared intermediate agrees, so it departs after the last of them (in "
             "the loss)" if ctx.forward_agrees else
             f"{ctx.unlocated}, so where it departs is not located" if ctx.unlocated else
             "the user code's intermediates are not visible to symgrad, so where it departs "
             "is not located")
    return Cause("function differs", "different function",
                 f"{what} disagrees beyond its bound: the code computes a different function "
                 f"(a wrong constant, formula or dtype in the forward); its gradient follows "
                 f"it - fix the forward first ({where})")


SPLIT = ("function differs: different function", "derivative wrong: real derivative error")


def refine(cause: str, ctx: Context, output: str) -> Cause | None:
    """The first split again once a departure search ran (``ctx.departure`` /
    ``ctx.forward_agrees``): a failure classed by the split alone (``SPLIT``) is re-classed -
    a located departure means the function differs, wherever the loss value lands; a forward
    that agrees everywhere keeps "derivative wrong" and says so. Other causes (a kind, a
    catalogued torch behaviour) stay: None."""
    bare = cause.split(" — ")[-1]
    if bare not in SPLIT:
        return None
    if ctx.random or ctx.departure or bare == SPLIT[0]:
        return function_differs(ctx, output)
    if ctx.forward_agrees:
        return Cause(DERIVATIVE_WRONG.klass, DERIVATIVE_WRONG.name,
                     DERIVATIVE_WRONG.explanation + " (the forward agrees at every compared "
                     "intermediate)")
    return None


@dataclass(frozen=True)
class Entry:
    """A torch behaviour symgrad found, recognised from data about the failing sample."""

    cause: Cause
    backends: tuple[str, ...]
    applies: Callable[["Context", object, float], str | None]  # (context, failure,
    #                                                                     relative error)
    orders: tuple[int, ...] = (1,)  # the derivative orders the behaviour explains (these are
    #                                 first-order behaviours of torch's forward and backward)


def _bce_clamp(ctx: Context, failure, rel: float) -> str | None:
    for p, _ in ctx.ops.get("bce_sigmoid", []):  # a sigmoid a log reads; a bare one is no BCE
        if p * (1 - p) < 1e-12 and rel > 1e-3:  # a clamp is gross, not a few digits
            return f"p(1-p) = {float(p * (1 - p)):.3g}"
    return None


def _bce_log_clamp(ctx: Context, failure, rel: float) -> str | None:
    """float32/bfloat16: the sigmoid rounds to 0 or 1, BCELoss's log(0) is clamped at -100."""
    if failure.output != "value" or not np.isfinite(ctx.value_got) or ctx.value_got < 99:
        return None
    eps = dtype_info(ctx.dtype).eps
    for p, _ in ctx.ops.get("bce_sigmoid", []):
        if min(p, 1 - p) < eps / 2:
            return (f"p = {float(p):.9g} rounds to {0 if p < 0.5 else 1} in {ctx.dtype}; loss "
                    f"{ctx.value_got:g} instead of {ctx.value_expected:.6g}")
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


# symgrad's own ops whose programs run a stable form (step kind -> the op as the user wrote
# it); bce only where it runs from the logit (ops.bce of ops.sigmoid: no log of a probability)
STABLE_OPS = {"bce": "ops.bce", "softplus": "ops.softplus",
              "logsumexp": "the log-sum-exp of ops.softmax / ops.cross_entropy",
              "cross_entropy": "ops.cross_entropy", "nll": "ops.cross_entropy",
              "log_softmax": "ops.log_softmax", "softmax": "ops.softmax",
              "sigmoid": "ops.sigmoid"}


def stable_ops(steps) -> list[str]:
    """symgrad's stable ops among a model's steps, as the user wrote them.

    Arguments:
        steps: (kind, expression as the program computes it) per step.
    Returns:
        The ops (``STABLE_OPS``), each once, in the steps' order.

    >>> z, p = sp.symbols("z p")
    >>> stable_ops([("sigmoid", 1 / (1 + sp.exp(-z))), ("bce", log1p(sp.exp(z)) - z)])
    ['ops.sigmoid', 'ops.bce']
    >>> stable_ops([("bce", -sp.log(p))])  # bce of a probability: the form as written
    []
    """
    found = [STABLE_OPS[k] for k, e in steps
             if k in STABLE_OPS and not (k == "bce" and e.has(sp.log))]
    return list(dict.fromkeys(found))


def precision_loss(backend: str, stable: list[str], own_loses: bool | None = None) -> Cause:
    """The cause of a precision-loss warning (an entry within its bound but beyond
    ``precision_loss_ulps``), from which ops the model was written with: "use a stable form"
    only where the model has none of symgrad's; where it has, the digits are lost elsewhere or
    inherently, and where ``own_loses`` is known (do symgrad's own programs lose digits at the
    same entry?) it says which for the user's code.

    Arguments:
        backend: the backend that lost the digits.
        stable: ``stable_ops`` of the model.
        own_loses: symgrad's own programs' status at the same sample and entry, for a
            ``torch_fn`` finding (None: unknown or not asked).
    Returns:
        The ``Cause``.

    >>> precision_loss("torch_fn", ["ops.bce"], own_loses=False).name
    'cancellation in the code verified'
    """
    if not stable:
        return Cause("precision loss", "cancellation", "the model as written cancels here; "
                     "the error is within its rounding bound; a stable form (log1p, "
                     "log-sum-exp, log-sigmoid, softplus) would avoid it")
    ops = ", ".join(stable)
    if backend not in OWN and own_loses is False:
        return Cause("precision loss", "cancellation in the code verified",
                     f"symgrad's own program (stable: {ops}) keeps these digits at this entry; "
                     "the code verified computes another form, which cancels here (within its "
                     "rounding bound)")
    return Cause("precision loss", "inherent cancellation",
                 f"the model already uses symgrad's stable forms ({ops}), which do not cancel; "
                 + ("symgrad's own program loses these digits too: " if own_loses else "")
                 + "the digits are lost in the gradient itself here (the chain rule sums terms "
                 "of opposite sign) or in a step written in plain sympy, not in those ops "
                 "(within the rounding bound)")


def softplus_arguments(expr: sp.Expr) -> list[sp.Expr]:
    """Arguments t of every softplus written by hand: log(1 + exp(t)), log1p(exp(t))."""
    found = []
    for f in expr.atoms(sp.log, log1p):
        arg = f.args[0]
        inner = arg - 1 if isinstance(f, sp.log) else arg
        if isinstance(inner, sp.exp):
            found.append(inner.args[0])
    return found


def sigmoid_arguments(expr: sp.Expr) -> list[sp.Expr]:
    """Logits t of every sigmoid written by hand: 1/(1 + exp(-t)) (a Pow(1 + exp(-t), -1))."""
    found = []
    for f in expr.atoms(sp.Pow):
        base, power = f.args
        if power == -1 and isinstance(base - 1, sp.exp):
            found.append(-(base - 1).args[0])
    return found


def guard_in(exprs, dtype: str) -> str | None:
    """A non-zero constant of the expressions ``exprs`` (any program's steps) that rounds to 0
    in ``dtype`` (as text), if any."""
    smallest = dtype_info(dtype).tiny * dtype_info(dtype).eps  # smallest subnormal
    for expr in exprs:
        for c in expr.atoms(sp.Number):
            if c != 0 and abs(float(c)) < smallest / 2:
                return str(c)
    return None


def classify_failure(failure, ctx: Context, *, has_branch: bool,
                     guard_zero: str | None = None) -> Cause:
    """The root cause of one failure of any program (scalar steps or tensor nodes), from data
    alone: the kind (``by_kind``), then the catalogue of torch behaviours (``CATALOGUE``, read
    from ``ctx``), then the first split (``first_split``).

    Arguments:
        failure: a ``symgrad.result.Failure``.
        ctx: what the pipeline knows about the failing sample.
        has_branch: the program has a branch (Piecewise, Max, Min: a where-trap is possible).
        guard_zero: a constant of the program that rounds to 0 in the dtype, as text.
    Returns:
        The ``Cause``; its explanation ends with the catalogue entry's detail, if one applied.
    """
    value_finite = failure.output != "value" and ctx.value_status != "non-finite"
    cause = by_kind(failure.kind, failure.backend, has_branch, failure.got, failure.expected,
                    value_finite=value_finite, guard_zero=guard_zero)
    if cause is not None:
        return cause
    rel = abs(failure.got - failure.expected) / max(abs(failure.expected), 1e-300)
    for e in CATALOGUE:
        if failure.backend in e.backends and ctx.order in e.orders:
            detail = e.applies(ctx, failure, rel)
            if detail:
                return Cause(e.cause.klass, e.cause.name, f"{e.cause.explanation} ({detail})")
    return first_split(failure, ctx)


def first_split(failure, ctx: Context) -> Cause:
    """Function differs (the loss value of the same backend and sample fails, or a departure
    search located where the forward departs) versus derivative wrong (it agrees)."""
    value_failed = ctx.value_status in ("mismatch", "non-finite", "systematic")
    if failure.output == "value" or value_failed or ctx.departure or ctx.random:
        return function_differs(ctx, failure.output)
    if ctx.forward_agrees:
        return refine(DERIVATIVE_WRONG.klass + ": " + DERIVATIVE_WRONG.name, ctx, failure.output)
    return SECOND_DERIVATIVE_WRONG if ctx.order == 2 else DERIVATIVE_WRONG
