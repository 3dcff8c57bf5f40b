"""The causes a failure's kind implies, and the first split's wording.

``Cause`` (a class, a name, a one-line explanation) and ``Context`` (what the pipeline knows
about one failing sample, handed over as data) are the catalogue's vocabulary; ``by_kind`` is the
cause a failure kind implies alone (domain, overflow, kink, non-finite), and ``function_differs``
/ ``refine`` word the first split: the function differs (the loss value of the same backend at
the same sample disagrees) versus the derivative is wrong (the value agrees).

>>> by_kind("overflow", "torch", False, float("inf"), 1.0).name
'overflow'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OWN = ("numpy", "torch")  # symgrad's own programs; "torch_fn" is the user's code


def as_user_code(backend: str) -> str:
    """"torch_fn" for the user's own code under any of its names (sg.verify(module=)'s
    "module", "module[compile]", ...: the same code, so the same causes apply); else
    ``backend`` itself.

    >>> as_user_code("module[compile]"), as_user_code("numpy")
    ('torch_fn', 'numpy')
    """
    return "torch_fn" if backend == "module" or backend.startswith("module[") else backend


@dataclass(frozen=True)
class Cause:
    klass: str  # function differs / derivative wrong / known torch convention /
    #             saturation/clamping inside torch / dtype promotion in user code / precision
    #             loss / overflow / underflow / domain
    name: str
    explanation: str


@dataclass(frozen=True)
class Entries:
    """The failing block's entries at every compared sample (``backward.block_entries``):
    arrays of shape (samples, block size), views of the comparison's."""

    name: str  # the block (parameter or input) by the user's name
    expected: np.ndarray  # the exact derivative rounded to float64
    exact_zero: np.ndarray  # the exact derivative is exactly 0 (high and low part)
    got: np.ndarray  # the backend's
    failing: np.ndarray  # a mismatch
    row: int  # the failure's row and column in these arrays
    column: int


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
    block: Entries | None = None  # the failing block's entries (a backward's own bugs)


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
