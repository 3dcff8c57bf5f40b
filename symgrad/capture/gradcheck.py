"""``symgrad.gradcheck``: ``torch.autograd.gradcheck``'s call and return convention, with the
user's eager autograd gradient compared against the exact derivative of the captured forward
(in ULPs of the dtype, with symgrad's rounding-error bound) instead of finite differences.

>>> import torch
>>> x = torch.randn(4, dtype=torch.float64, requires_grad=True)
>>> gradcheck(torch.tanh, (x,))
True
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils._pytree import tree_leaves, tree_map

from ..backends.torch import TORCH_DTYPES
from ..compare import FAILING, INCONCLUSIVE, STATUS_NAMES, SUSPECT, ulp
from ..config import VerifyConfig, dtype_name
from ..errors import SymgradError, checked_keywords
from ..hvp import function_through, once_differentiable_function
from ..modules.any import _mode, _path_fn, by_own_names, check_example_finite
from ..modules.functions import (failing_blocks, function_note, hook_note, stop_note,
                                 upstream_of_functions)
from ..modules.options import check_frozen
from ..modules.paths import COMPILED_NOTE, uncompiled
from ..modules.replay import NOTE_HEADS, with_saved_samples
from ..result import FAIL, PASS, UNDECIDED, Result, verdict_of
from ..result_text import HIDDEN_IN, SHAPES_SHOWN
from ..failpattern import block_lines
from ..verify import verify
from .captured import capture, cotangent_note
from .closed import closed_note, closed_over
from .export import arg_names, display_name, leaf_names
from .hooks import user_copy
from ..tensor.rulecheck import SUFFIX
from .names import own_labels

LOG = logging.getLogger(__name__)  # raise_exception=False: the error's lines at INFO
MAX_LINES = 5  # findings shown in a GradcheckError (the worst first)
HIDDEN_HERE = "the error's .result"  # where a line's hidden blocks are (``HIDDEN_IN``'s Failure)
TORCH_OPTIONS = frozenset({  # torch.autograd.gradcheck's finite-difference knobs: ignored
    "eps", "atol", "rtol", "nondet_tol", "check_undefined_grad", "check_grad_dtypes",
    "check_batched_grad", "check_batched_forward_grad", "check_forward_ad",
    "check_backward_ad", "fast_mode", "masked", "grad_outputs",
    "gen_non_contig_grad_outputs", "check_fwd_over_rev", "check_rev_over_rev"})
TORCH_SAID = "torch.autograd.gradcheck's own, accepted and ignored"  # how the line lists them


class GradcheckError(RuntimeError):
    """A gradient disagrees with the exact derivative, or the check could not decide
    (``torch.autograd.GradcheckError`` is a ``RuntimeError`` too). ``result``: the ``Result``
    behind it (``result.failures``, each ``Failure.point`` the sample's whole values, which a
    line shortens), or None."""

    def __init__(self, text: str, result: Result | None = None) -> None:
        super().__init__(text)
        self.result = result


@checked_keywords(also=sorted(TORCH_OPTIONS), also_said=TORCH_SAID)  # a typo: one line
def gradcheck(func: Callable, inputs: Sequence[Any] | Any, *,
              dtype: str | torch.dtype | None = None,
              samples: int = 4, seed: int = 0, raise_exception: bool = True,
              reference: Callable | None = None, parameters: bool = True,
              frozen: str = "check", rule_check: bool = True,
              **torch_options: Any) -> bool:
    """Check the backward of ``func`` at ``inputs`` against the exact derivative.

    Arguments:
        func: a function or ``nn.Module`` of tensors. A module's trainable parameters are
            checked too, by their own names (``parameters=False``: held at their values, as
            torch.autograd.gradcheck does).
        inputs: a tensor or a tuple of arguments; the float tensors with ``requires_grad``
            are differentiated, integer tensors are held at their values.
        dtype: the dtype to check in ("float64", "float32", "bfloat16", "float16" or a torch
            dtype; default: that of the differentiated inputs); the verdict is in ULPs of it
            (bfloat16: what its 8 bits cannot resolve is inconclusive, never a pass).
        samples: points checked: the given one and ``samples - 1`` around it (each
            differentiated entry scaled by a random factor in [5/8, 11/8]).
        seed: seeds the random cotangent of a non-scalar output and the points around.
        raise_exception: raise ``GradcheckError`` on a failing or inconclusive check (else
            return False, silently as torch's does). Either way the failing samples are saved
            (``symgrad.modules.replay.DIRECTORY``, one ``.pt`` each); with False the error's
            lines, which name the files, are logged at INFO on the ``symgrad.capture.gradcheck``
            logger (``logging.basicConfig(level=logging.INFO)`` shows them).
        reference: an independent torch function of the same arguments whose forward is
            captured instead of ``func``'s (an opaque kernel export cannot see through);
            ``func``'s value is then checked against it too.
        parameters: also check a module's parameters that require grad (default True).
        frozen: a module's parameters with ``requires_grad=False``, when some parameter is
            checked: "check" (the default: checked as if trainable) or "hold" (held at their
            values, as buffers).
        rule_check: in float32, bfloat16 or float16, also run ``func`` once in float64 on the
            same points and fail a backward rule it proves wrong there, where the narrow dtype
            rounds the error away (``VerifyConfig.rule_check``; False: the narrow run alone).
        torch_options: torch.autograd.gradcheck's own keywords (eps, atol, rtol, fast_mode,
            ...), accepted so that a test suite switches with one import, and ignored: they
            tune finite differences, which symgrad does not use.
    Returns:
        True when every gradient entry passes (the value itself is judged only with
        ``reference=``; without it a value the dtype cannot resolve is not held against the
        backward, a failing one still fails).
    """
    return _check(1, func, inputs, dtype, samples, seed, raise_exception, reference,
                  parameters, frozen, rule_check)


@checked_keywords(also=sorted(TORCH_OPTIONS), also_said=TORCH_SAID)  # a typo: one line
def gradgradcheck(func: Callable, inputs: Sequence[Any] | Any, *,
                  dtype: str | torch.dtype | None = None,
                  samples: int = 4, seed: int = 0, raise_exception: bool = True,
                  reference: Callable | None = None, parameters: bool = True,
                  frozen: str = "check", rule_check: bool = True,
                  **torch_options: Any) -> bool:
    """Check the double backward of ``func``: torch's Hessian-vector products (the gradient
    of g·v along a random direction v per point) against the exact ones
    (``sg.verify(order=2)``). Arguments and return as ``gradcheck`` (``grad_outputs`` is
    accepted and ignored: the cotangent is symgrad's own random one)."""
    return _check(2, func, inputs, dtype, samples, seed, raise_exception, reference,
                  parameters, frozen, rule_check)


def _check(order: int, func: Callable, inputs, dtype, samples: int, seed: int,
           raise_exception: bool, reference: Callable | None, parameters: bool,
           frozen: str, rule_check: bool = True) -> bool:
    """gradcheck (order 1) and gradgradcheck (order 2)."""
    what = "gradcheck" if order == 1 else "gradgradcheck"  # (a typo: ``checked_keywords``)
    check_frozen(frozen, what)
    for role, f in (("func", func), ("reference", reference)):  # gradcheck("tanh", ...)
        if isinstance(f, type) and issubclass(f, torch.autograd.Function):  # (newuser9:
            raise SymgradError(f"{what}: {role}= is the autograd.Function class "  # read as
                               f"{f.__name__}; pass {f.__name__}.apply")  # an export failure)
        if isinstance(f, type) and issubclass(f, torch.nn.Module):
            raise SymgradError(f"{what}: {role}= is the class {f.__name__}, not a module; pass "
                               f"an instance: {f.__name__}(...)")
        if f is not None and not callable(f):  # (newuser9: read "running it on inputs=")
            raise SymgradError(f"{what}: {role}= must be a function or module, got "
                               f"{type(f).__name__} {f!r:.40}; pass the callable itself, e.g. "
                               "torch.tanh or MyFunction.apply")
    func, compiled = uncompiled(func)  # torch.compile(m): m captured, run compiled
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise SymgradError(f"{what}: samples= must be a positive integer (the given point "
                           f"and samples - 1 around it), got {samples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:  # (numpy's own error)
        raise SymgradError(f"{what}: seed= must be a non-negative integer (it seeds the "
                           f"cotangents and the points around), got {seed!r}")
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff = [a for a in tree_leaves(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    params = [p for p in func.parameters() if p.requires_grad] \
        if parameters and isinstance(func, torch.nn.Module) else []
    if not diff and not params:
        ints = [f"input {i} ({str(a.dtype).removeprefix('torch.')})" for i, a in
                enumerate(args) if isinstance(a, torch.Tensor) and not a.is_floating_point()]
        raise SymgradError(f"{what}: no input requires grad and no module parameter is "
                           "checked; give the tensors to check requires_grad=True" + (
                               f" ({', '.join(ints[:3])}: integer, which cannot require "
                               "grad; give a float tensor, x.double().requires_grad_())"
                               if ints and not any(isinstance(a, torch.Tensor) and
                                                   a.is_floating_point() for a in args)
                               else ""))
    complex_ = [(n, a) for n, a in zip(leaf_names(args, arg_names(func, len(args))),
                                       tree_leaves(list(args)))
                if isinstance(a, torch.Tensor) and a.is_complex()]  # (newuser10: read
    if complex_:  # "dtype=torch.complex128 is not supported", a dtype= never given)
        n, a = complex_[0]
        raise SymgradError(f"{what}({display_name(func)}): input {n} is "
                           f"{str(a.dtype).removeprefix('torch.')}: complex inputs are not "
                           "supported (real dtypes only); give its real and imaginary parts "
                           "as two real inputs, e.g. lambda re, im: func(torch.complex(re, im))")
    if dtype is None:
        _one_dtype(what, func, args, params)
    name = dtype_name(dtype if dtype is not None else (diff or params)[0].dtype)
    tdtype = TORCH_DTYPES[name]
    args = tree_map(lambda a: user_copy(a, dtype=tdtype)  # with its hooks, as torch's check
                    if isinstance(a, torch.Tensor) and a.is_floating_point() else a, args)
    names = arg_names(func, len(args))
    captured = capture(reference if reference is not None else func, args,
                       module_params=("trainable" if frozen == "hold" else "param")
                       if params else "input", seed=seed, names=names,
                       name=display_name(func), who=f"{what}({display_name(func)})")
    check_example_finite(captured, reference if reference is not None else func,
                         f"{what}({display_name(func)})")  # (read "at: parameter 'input0'")
    vary = [b.name for b in captured.model.param_blocks]
    fn = captured.torch_fn(func if reference is not None else None)
    fn = _path_fn(fn, "compile") if compiled else fn
    at = captured.at(samples, seed, vary)
    result = verify(captured.model, torch_fn=fn, dtype=name, seed=seed, order=order,
                    at=at, backends=("torch_fn",), config=VerifyConfig(rule_check=rule_check))
    result = by_own_names(result, own_labels(captured.slots))  # conv1.weight[0, 3]
    held = closed_over(func, diff)  # a lambda's closed-over module (newuser12)
    if result.ok or (order == 1 and reference is None and _gradients_decide(result)):
        if held:
            warnings.warn(closed_note(f"{what}({display_name(func)})", held), stacklevel=4)
        return True
    result.notes += [n for n in (cotangent_note(captured.cotangents, seed, "the output is"),)
                     if n]  # what "expected" is then: sum(output * c)'s gradient
    # the failing samples saved, as sg.verify(module=) saves them, whichever way it answers
    result = with_saved_samples(result, captured, at, how=again(func, what), holding=(
        "the inputs, and the module's parameters and buffers" if isinstance(
            func, torch.nn.Module) else "the inputs"), keep_values=True)
    text = message(result, captured.model.name, what, dtype=name, samples=samples, seed=seed)
    if isinstance(func, torch.nn.Module) and result.verdict == FAIL and (  # a weight's hook
            failing := failing_blocks(result)):  # (newuser9); the custom Function they flow
        with torch.random.fork_rng(devices=[]), _mode(func, func.training):  # through, as
            fn_note = function_note(upstream_of_functions(func, tuple(args), None, ()),
                                    failing) if order == 1 else None  # (order 2's: below)
        text += "".join(f"\n  note: {n}" for n in (hook_note(func, failing), fn_note) if n)
    if held:
        text += f"\n  note: {closed_note('the function', held)}"
    if stopped := stop_note(captured.detached):  # what the exact derivative kept (issue 18)
        text += f"\n  note: {stopped}"
    text += f"\n  note: {COMPILED_NOTE.replace('module=', 'func=')}" if compiled else ""
    if order == 2 and result.verdict == FAIL and (
            once := once_differentiable_function(func, args)):
        text += (f"\n  note: the backward of the custom autograd.Function {once!r} is "
                 "@once_differentiable: torch builds no double backward through it, so its "
                 "Hessian-vector products fail; write that backward with differentiable torch "
                 "ops (without the decorator) to support second order")  # (newuser10)
    elif order == 2 and result.verdict == FAIL and (
            through := function_through(func, args, result)):
        text += f"\n  note: {through}"
    if raise_exception:
        raise GradcheckError(text, result)
    LOG.info("%s", text)  # False is silent, as torch's; the lines (files too) for a log reader
    return False


def again(func: Callable, what: str = "gradcheck") -> str:
    """How a sample ``with_saved_samples`` wrote runs again through ``what`` (the inputs keep
    their requires_grad; samples=1: that point alone)."""
    load = ("p = torch.load(path); module.load_state_dict(p['state'], strict=False); "
            if isinstance(func, torch.nn.Module) else "p = torch.load(path); ")
    owner = getattr(func, "__self__", None)  # Fn.apply: the call names Fn's apply, not Fn
    call = ("module" if isinstance(func, torch.nn.Module) else f"{owner.__name__}.apply"
            if isinstance(owner, type) and issubclass(owner, torch.autograd.Function)
            else display_name(func))
    call = call if call.replace(".", "_").isidentifier() else "func"  # a lambda
    return f"{load}sg.{what}({call}, p['inputs'], samples=1)"


def _gradients_decide(result: Result) -> bool:
    """True when only the value column is undecided and every gradient entry passes.

    gradcheck judges the backward, as torch's does. Without ``reference=`` the value is the
    captured forward's own (for a non-scalar output, symgrad's cotangent sum of it): a value
    the dtype cannot resolve (a bfloat16 sum of 12 outputs cancelling below its allowance)
    says nothing about the backward. A failing value still fails (the verdict is FAIL then).
    """
    if result.verdict != UNDECIDED:
        return False
    status = result.comparisons["torch_fn"].status
    grads = [k for k, out in enumerate(result.outputs) if out != "value"]
    return verdict_of([status[:, grads]]) == PASS


def _one_dtype(what: str, func: Callable, args: tuple, params: list) -> None:
    """Without ``dtype=``, every float input (and checked module parameter) must share one
    dtype: which one would judge is otherwise a guess (torch itself raises on most mixes).
    One line naming the first input of another dtype, both dtypes and the fixes."""
    named = list(zip(leaf_names(args, arg_names(func, len(args))), tree_leaves(list(args))))
    named += [(f"parameter {n}", p) for n, p in func.named_parameters() if p.requires_grad] \
        if params else []
    floats = [(n, t) for n, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]
    first = floats[0] if floats else None
    for n, t in floats[1:]:
        if t.dtype != first[1].dtype:
            a, b = (str(x.dtype).removeprefix("torch.") for x in (first[1], t))
            fix = (f"convert the module (module.to(torch.{a}))" if n.startswith("parameter ")
                   else f"give every input one dtype ({n}.to(torch.{a})) or pass dtype= to "
                   "check in one dtype (each input converted to it)")
            raise SymgradError(f"{what}({display_name(func)}): {first[0]} is {a} and {n} is {b}; "
                               f"which dtype judges would be a guess: {fix}")


def message(result: Result, what: str, check: str = "gradcheck", *,
            dtype: str = "float64", samples: int = 1, seed: int = 0) -> str:
    """The error text: a headline, then one line per finding (worst first), in the user's
    names, and what the lines' "sample k" is (``samples`` points, ``seed``). An inconclusive
    headline says what can help: entries whose exact value is below ``dtype``'s normal range
    cannot be resolved in it at any number of points (a wider dtype or another point can);
    others may resolve with more points or float64."""
    own = result.verdict == FAIL and any(f.backend == "torch_fn" for f in result.failures)
    backend = "torch_fn" if own or "torch_fn" + SUFFIX not in result.comparisons else (
        "torch_fn" + SUFFIX)  # only the float64 rule check fails (symgrad.tensor.rulecheck)
    counts = result.counts(backend)
    if result.verdict == FAIL:
        found = [f for f in result.findings("failures") if f.backend == backend]
        n = sum(counts[STATUS_NAMES[k]] for k in FAILING)
        double = "double " if check != "gradcheck" else ""
        head = (_undefined(found, what, check) if counts["domain"] == n else  # (newuser10)
                f"symgrad.{check}: the {double}backward of {what!r} disagrees with the exact "
                f"derivative in {dtype} ({n} entries failing):" if backend == "torch_fn" else
                f"symgrad.{check}: the {double}backward rule of {what!r} is wrong, seen in "
                f"float64 ({n} entries failing, the same code run in float64 on the same "
                f"points); its {dtype} gradient is within {dtype}'s rounding of the exact value "
                "there, which hides it:")
    else:
        found = [f for f in result.undecided if f.backend == backend]
        n = counts["inconclusive"] + counts["suspect"]
        total = sum(counts.values())
        share = 100 * n / max(total, 1)
        pct = f"{share:.0f}" if share >= 10 else f"{share:.2g}"
        head = (f"symgrad.{check}: inconclusive for {what!r} — {n} of {total:,} entries "
                f"({pct}%) could not be decided in {dtype}, none failing (not a pass)"
                f"{_where(result, backend)}; {_advice(found, dtype)}:")
    lines = [f"  {f.message().removeprefix(backend + ': ').replace(HIDDEN_IN, HIDDEN_HERE)}"
             for f in found[:MAX_LINES]]  # (the Failure a line names is the error's .result's)
    more = max(n, len(found)) - len(lines)  # the finding lists hold the worst few only
    shapes = [f"  note: {t}" for t in block_lines(  # by how much and where, per failing
        result.comparisons[backend], result.blocks, result.outputs)[:SHAPES_SHOWN]  # block
              ] if result.verdict == FAIL else []  # (newuser13)
    # "at sample 1" beside inputs the user never gave reads as a bug (newuser6): say what it is
    which = ("  note: sample 0 is the inputs as given" + (
        f"; {'sample 1 scales' if samples == 2 else f'samples 1..{samples - 1} scale'} each "
        "differentiated entry by a random factor in "
        f"[5/8, 11/8] (seed {seed})" if samples > 1 else ""))
    saved = [f"  note: {n}" for n in result.notes  # a non-scalar output's cotangent, then
             if n.startswith("the output is not a scalar")]  # the saved samples
    saved += [f"  note: {n}" for n in result.notes if n.startswith(NOTE_HEADS)]
    return "\n".join([head, *lines] + ([f"  … and {more} more"] if more > 0 else [])
                      + shapes + [which] + saved)


def _undefined(found: list, what: str, check: str) -> str:
    """The headline where every failing entry is a domain one: the function itself is
    undefined there (newuser10: a log of negative inputs read "the backward ... disagrees
    with the exact derivative" above lines saying "not a backend error")."""
    at = sorted({f.sample for f in found})
    return (f"symgrad.{check}: {what!r} or its derivative is undefined at the points checked "
            f"(sample {', '.join(map(str, at[:4]))}: log or sqrt of a negative, sqrt at 0, "
            "0/0, ...), so its "
            "gradient cannot be checked there; give inputs inside its domain (e.g. x.abs() + "
            "0.1 for a log):")


def _where(result: Result, backend: str) -> str:
    """The blocks (and the value) that hold the undecided entries, most first
    (``": in W (12), x (1)"``; "" where the statuses were not kept per entry)."""
    status = result.comparisons[backend].status
    if status.ndim != 2:
        return ""
    open_ = np.isin(status, (INCONCLUSIVE, SUSPECT)).sum(axis=0)
    per = sorted([(int(open_[0]), "the value")] + [
        (int(open_[a:b].sum()), name) for name, a, b in result.blocks], key=lambda t: -t[0])
    per = [f"{name} ({k})" for k, name in per if k]
    return f": in {', '.join(per[:3])}{', …' if len(per) > 3 else ''}" if per else ""


def _advice(found: list, dtype: str) -> str:
    """What can decide the undecided ``found`` in a ``dtype`` run (see ``message``): an entry
    whose exact value is within its rounding allowance (its terms cancel below what ``dtype``
    resolves) is decided by float64 or at another point, not by more points."""
    tiny = torch.finfo(TORCH_DTYPES[dtype]).tiny
    below = [f for f in found if abs(f.expected) < tiny]
    wider = "" if dtype == "float64" else " or dtype=torch.float64"
    if not below:
        small = [f for f in found if f.kind == "inconclusive"
                 and f.allowed_ulps * float(ulp(np.array(f.expected), dtype)) >= abs(f.expected)]
        if not small:
            return f"try more points (samples=){wider}"
        f = small[0]
        allowed = f.allowed_ulps * float(ulp(np.array(f.expected), dtype))
        where = f"dL/d{f.output[3:]}" if f.output.startswith("d/d") else f"the {f.output}"
        fix = "at another point (seed=)" if dtype == "float64" else (
            "in dtype=torch.float64 or at another point (seed=)")
        return (f"{dtype} cannot resolve {'them' if len(small) == len(found) else 'some'} "
                f"here: their exact values lie within the rounding {dtype} allows for them "
                f"(e.g. {where} = {f.expected:.3g} against {allowed:.3g}: terms that "
                f"cancel), so a wrong sign would pass too; check {fix}")
    f = below[0]
    where = f"{f.output[3:] if f.output.startswith('d/d') else f.output}'s exact value"
    tail = ("" if len(below) == len(found)
            else f"; for the other {len(found) - len(below)}, try more points (samples=)")
    wider = "" if dtype == "float64" else (
        f", or in dtype=torch.float64 (normal down to {torch.finfo(torch.float64).tiny:.3g})")
    return (f"{len(below)} of them ({where} {f.expected:.3g}) lie below {dtype}'s normal range "
            f"(smallest normal {tiny:.3g}), which more points cannot resolve: check at a point "
            f"where that gradient is larger{wider}{tail}")
