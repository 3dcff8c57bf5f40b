"""``assert_gradients_match``: a property-based gradient test with shrinking.

>>> import sympy as sp, symgrad as sg, torch
>>> from symgrad.testing import assert_gradients_match
>>> w, x = sp.symbols("w x")
>>> m = sg.Model("m", sp.tanh(w * x), params={w: sg.Uniform(-2, 2)}, inputs={x: sg.Uniform(-3, 3)})
>>> assert_gradients_match(m, torch_fn=lambda w, x: torch.tanh(w * x), max_examples=20)
>>> wide = sg.Model("wide", sp.tanh(w * x), params=[w], inputs=[x])
>>> assert_gradients_match(wide, torch_fn=lambda w, x: torch.tanh(w * x), max_examples=20,
...                        dtype="float32", allow_inconclusive=True)

On the wide model, without ``allow_inconclusive=True``, that search ends in an AssertionError
once it reaches a saturated input (whether 20 examples do depends on hypothesis' seed): at a
saturated tanh (|w x| >= 9 in float32, >= 19 in float64) tanh rounds to 1, and torch's
backward, x (1 - y^2) from its rounded output y, is 0 while the exact d/dw is ~4 x exp(-2|w x|);
the rounding allowance there is larger than the exact value, so no computation in that dtype
could be told right from wrong (inconclusive, never a pass).
"""

from __future__ import annotations

import math
from functools import partial, wraps
from typing import Callable

import torch

from .errors import checked_keywords
from .hvp import second_order
from .model import Model
from .strategies import inputs as model_inputs
from .verify import as_program, verify as run_verify


class ScaleBackward(torch.autograd.Function):
    """A planted wrong gradient: the identity forward, a backward that multiplies the incoming
    gradient by ``factor`` (only at ``index`` when one is given). Works under vmap."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, factor, index):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.factor, ctx.index = inputs[1], inputs[2]

    @staticmethod
    def backward(ctx, g):
        if ctx.index is None:
            return g * ctx.factor, None, None
        mask = torch.zeros_like(g)
        mask[ctx.index] = 1.0
        return g + mask * g * (ctx.factor - 1.0), None, None


def scale_backward(x: torch.Tensor, factor: float, index=None) -> torch.Tensor:
    """``x`` unchanged, its gradient scaled by ``factor`` (at ``index`` only, if given): the
    mutant a verifier must catch, and ``gradcheck`` misses below ~1e-3.

    >>> import torch
    >>> w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    >>> scale_backward(w, 1 + 1e-9).backward()
    >>> float(w.grad) == 1 + 1e-9
    True
    """
    return ScaleBackward.apply(x, factor, index)


def scale_block_backward(torch_fn: Callable, block: str, factor: float) -> Callable:
    """``torch_fn`` (a function of keyword blocks) with dL/d``block`` multiplied by ``factor``:
    a wrong backward on one named block, the forward unchanged (the planted bug of the
    mutant suites, ``scripts/detection.py`` and the gate).

    Arguments:
        torch_fn: the user's code, ``fn(**blocks) -> scalar``.
        block: the name of the block whose gradient is scaled.
        factor: the scale (1 + 1e-9, -1, 0, ...).
    Returns:
        The mutant, a function of the same blocks.

    >>> import torch
    >>> f = scale_block_backward(lambda w, x: w * x, "w", 2.0)
    >>> w = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    >>> f(w=w, x=torch.tensor(3.0, dtype=torch.float64)).backward()
    >>> float(w.grad)
    6.0
    """
    @wraps(torch_fn)
    def mutant(**blocks):
        blocks[block] = scale_backward(blocks[block], factor)
        return torch_fn(**blocks)
    return mutant


def _observation(result) -> float:
    """log10 of the worst error / allowance of a result, always finite (hypothesis' ``target``
    refuses inf and NaN): an infinite ratio (a non-finite gradient, a zero allowance, an
    overflowing quotient) is observed as 1e300, a NaN one as nothing (0)."""
    worst = 0.0
    for f in result.worst:
        try:
            ratio = float(f.ulps) / float(f.allowed_ulps) if f.allowed_ulps > 0 else math.inf
        except (OverflowError, ZeroDivisionError):
            ratio = math.inf
        if math.isnan(ratio):
            continue
        worst = max(worst, min(ratio, 1e300) if f.ulps > 0 else 0.0)
    return math.log10(worst + 1e-300)


@checked_keywords  # assert_gradients(m, max_example=5): one line, "did you mean"
def assert_gradients_match(model: Model, torch_fn: Callable | None = None, *,
                           max_examples: int = 100, dtype: str = "float64",
                           device: str = "cpu", allow_inconclusive: bool = False,
                           order: int = 1) -> None:
    """Search for an input where a backend's gradient disagrees with the exact derivative.

    Uses hypothesis (derandomized: the same run every time) with ``hypothesis.target`` steering
    toward the largest error relative to its allowance.

    Arguments:
        model: the model (its exact derivative is the reference).
        torch_fn: the user's torch code; None: symgrad's own programs are verified.
        max_examples: inputs hypothesis tries.
        dtype, device: where the backends run.
        allow_inconclusive: False (default): an inconclusive verdict (an entry the dtype or the
            oracle cannot decide, or a suspicion not proven either way) fails the test too,
            once the search has found no fail (its first such input, not shrunk); True: only
            a fail does.
        order: 2 searches parameters, inputs and directions v for a wrong Hessian-vector
            product (torch's double backward, ``symgrad.hvp``).
    Raises:
        AssertionError: exactly one, with the table of the worst entries: on a failing
            verdict with the minimal (shrunk) input; unless allowed, on an inconclusive one
            after the search, with the first such input.
    """
    __tracebackhide__ = True  # pytest shows the AssertionError, not this helper's source
    from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings, target


    # hypothesis seeds its derandomized search from check's source: it stays as it was before
    # order 2, which reaches it only through these two names (the directions v searched too)
    def inputs(m: Model):
        return model_inputs(second_order(as_program(m))[0] if order == 2 else m)
    # an inconclusive input is not raised inside the search (hypothesis would shrink it: on a
    # 2-layer MLP over 5 min of verify calls, each input as undecidable as the last); it is
    # kept, the search goes on for a fail, and the first one found is raised after it
    runs: list = []
    verify = partial(_recording, run_verify, runs, order=order)

    worst: dict = {}
    bad = ("fail",)

    # every phase but explain, which after the shrink runs more examples (which parts of the
    # minimal one may vary), each under sys.settrace (Python < 3.12), for notes on hypothesis'
    # exception that the AssertionError below replaces (`from None`): 36 of the 51 verifies of
    # test_wrong_code_fails_with_table_and_minimal_input, ~80 % of its CPU, none of them read.
    # Given here, not in the decorator: the derandomized seed hashes check's source with its
    # decorators (a nested function's indented source keeps them), so the examples the
    # search tries and the minimal one stay as they were
    settings = partial(hypothesis_settings, phases=[p for p in Phase if p is not Phase.explain])

    @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(inputs(model))
    def check(sample):
        r = verify(model, torch_fn=torch_fn, at=sample, dtype=dtype, device=device)
        target(_observation(r), label="log10 error / allowance")
        if r.verdict in bad:
            worst["result"] = r
            lines = [f.message() for f in r.failures[:10]]
            why = ("disagree with the exact derivative" if r.verdict == "fail" else
                   "are inconclusive against the exact derivative (not proven right; pass "
                   "allow_inconclusive=True to accept that)")
            raise AssertionError(f"gradients of {model.name} {why}:\n  " + "\n  ".join(lines)
                                 + f"\n{r}")

    # check's source above seeds hypothesis' derandomized search: left as it was, its message
    # is rewritten here (_message: each finding once) from the last failing result
    try:
        check()
        undecided = [r for r in runs if not isinstance(r, str)]
        if undecided and not allow_inconclusive:
            raise AssertionError(_message(model, undecided[0], None,
                                          tried=(len(undecided), len(runs))))
    except AssertionError as exc:
        raise AssertionError(_message(model, worst.get("result"), exc)) from None
    except BaseExceptionGroup as group:  # several errors at once: one AssertionError, the first
        first = group.subgroup(AssertionError)
        if first is None:
            raise
        exc = next(_leaves(first))
        raise AssertionError(_message(model, worst.get("result"), exc)) from None


def _recording(run: Callable, runs: list, *args, **kwargs):
    """``run(*args, **kwargs)``, its result kept in ``runs`` (its verdict; an inconclusive
    one whole)."""
    r = run(*args, **kwargs)
    runs.append(r if r.verdict == "inconclusive" else r.verdict)
    return r


def _message(model: Model, r, exc: BaseException | None, *,
             tried: tuple[int, int] | None = None) -> str:
    """The failure message: what disagrees, each finding line once, the table (``str(r)``
    without its findings), the minimal input; ``exc``'s own text where no result was kept.
    ``tried``: an inconclusive result raised after the search: at how many of how many
    inputs the search ran one."""
    if r is None:
        return f"{exc}"
    at = (f" at {tried[0]} of the {tried[1]} inputs searched, none failing" if tried else "")
    why = ("disagree with the exact derivative" if r.verdict == "fail" else
           f"are inconclusive against the exact derivative{at} (not proven right; pass "
           "allow_inconclusive=True to accept that)" + ("; the first" if tried else ""))
    return "\n".join([f"gradients of {model.name} {why}:"] + r.finding_lines()
                      + r.summary_lines()) + (_first(r) if tried else _minimal(r))


def _first(r) -> str:
    """The first inconclusive input, as found (hypothesis shrinks failures, not these)."""
    point = (r.failures or r.worst)[0].point
    return ("\nfirst inconclusive input (not shrunk: an input the dtype cannot decide is no "
            "bug to minimise): " + ", ".join(f"{k}={v}" for k, v in point.items()))


def _leaves(group: BaseExceptionGroup):
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def _minimal(r) -> str:
    """The shrunk input of the last failing result, in words."""
    if r is None:
        return ""
    found = r.failures or r.worst
    if not found:
        return ""
    return "\nminimal input: " + ", ".join(f"{k}={v}" for k, v in found[0].point.items())
