"""Any ``nn.Module``, verified by its own parameter names: ``sg.verify(module=m, inputs=x,
targets=y, loss=F.cross_entropy)``.

The module (with the loss applied to its output and the targets) is captured
(``symgrad.capture``: torch.export, core ATen) into a tensor program; the user's autograd
gradient on each torch path ("eager", "compile", "sdpa-math", ...; ``symgrad.modules.paths``)
is compared against the exact derivative of that captured forward, at the example point and
``samples - 1`` points around it (default 8, the pooled test's minimum; each parameter and
float input entry scaled by a random factor in [5/8, 11/8]; targets, integer inputs and buffers
held). Rows and messages use the
module's own names (``conv1.weight[0, 1, 2, 2]``). The forward is the reference here: a
forward bug is invisible (the GPT layouts, ``sg.verify(model, module=m)``, also check the
forward against an independent description).

>>> import torch, symgrad as sg
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
>>> x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> r = sg.verify(module=net.double(), inputs=x, targets=torch.tensor([0, 1, 1, 0, 1]),
...               loss=torch.nn.functional.cross_entropy, samples=2)
>>> r.ok, r.outputs[1]
(True, 'd/d0.weight[0, 0]')
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map

from ..backends import torch as torch_backend
from ..capture.captured import Captured, capture, cotangent_note
from ..capture.dropout import torch_own
from ..capture.export import arg_names, display_name
from ..capture.hooks import user_copy
from ..capture.names import own_labels, renamer
from ..capture.usercode import user_error
from ..config import Tolerance, VerifyConfig
from ..confirm import GIVEN_SAMPLES
from ..errors import SymgradError
from ..points import check_finite
from ..result import Failure, Result
from ..tensor.program import leaves
from ..tensor.verify import verify_tensor
from . import paths as paths_mod
from .functions import (failing_blocks, function_note, hook_note, stop_note,
                        upstream_of_functions)
from .replay import with_saved_samples
from .mapping import Plan
from .undefined import refuse_undefined_example
from .run import (ModuleOptions, ModuleRun, backend_name, check_module, keep_path,
                  named_by_module)

AROUND_EXAMPLE = ("no fresh samples are drawn on this path (the points are the example "
                  "inputs and points around them)")  # a capture's untested suspicion: why
DEFAULT_SAMPLES = int(Tolerance().pooled_min_samples)  # sg.verify(module=, inputs=) without
#   samples=: the example and 7 around, as many as the pooled test needs (with 4, every run
#   said "resolution not reached: the pooled test needs >= 8 samples"); LlamaBlock and a small
#   CNN take about as long at 8 as at 4 (2.4 vs 3.9 s, 2.8 vs 3.1 s wall at load ~13)
SDPA = torch_own("scaled_dot_product_attention")
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)  # what
#   train mode changes (named in the eval-mode note)


def check_example_finite(captured: Captured, module: Any, who: str) -> None:
    """A NaN in the example (an infinite parameter too) refused in the module's own names
    (``fc1.weight``; at= read the block ``fc1_weight`` and said "at:", an argument the user
    never gave: newuser8), before any run (``points.check_finite``). ``module``: the module
    or function captured; an argument is an "input" though it is differentiated
    (``sg.gradcheck``'s, read "at: parameter 'input0'": newuser12)."""
    label = own_labels(captured.slots)
    buffers = {n for n, _ in module.named_buffers()} if isinstance(module, nn.Module) else set()
    state = {s.name for s in captured.slots if s.source == "state"}
    for b in captured.model.blocks:
        if b.name in captured.example:
            kind = ("buffer" if label[b.name] in buffers else "parameter") if (
                b.name in state) else "input"
            check_finite(b, np.asarray(captured.example[b.name], dtype=np.float64)[None], who,
                         kind=kind, name=label.get(b.name, b.name))


def verify_any_module(module: nn.Module, inputs: Any, *, cfg: VerifyConfig,
                      options: ModuleOptions = ModuleOptions(),
                      targets: Any = None) -> Result:
    """``sg.verify(module=, inputs=, targets=, loss=, train=, paths=)`` (see its docstring).

    Arguments:
        module: any ``torch.nn.Module`` whose parameters are in the run's dtype.
        inputs: its example inputs, a tensor or a tuple (``module(*inputs)``); float tensors
            are cast to the run's dtype; ``requires_grad`` ones are differentiated too.
        cfg: the run (samples: points checked; dtype; seed).
        options: ``loss(output, *targets)`` (None: the output itself if a scalar, else its
            sum against a fixed random cotangent), ``train`` (train mode; dropout fed symgrad's
            keep-masks),
            ``paths``.
        targets: the loss's targets, a tensor or a tuple, held at their values.
    Returns:
        A ``Result`` named by the module's parameters; ``result.module`` says which paths ran.
    """
    t_call = time.perf_counter()
    cfg = cfg.with_samples(DEFAULT_SAMPLES)  # a config without samples: this path's default
    module, compiled = paths_mod.uncompiled(module)  # torch.compile(m): m, on "compile" too
    if compiled and options.paths == ModuleOptions().paths:
        options = replace(options, paths=("eager", "compile"))
    paths = paths_mod.check_paths(options.paths)
    torch_backend.check_device(cfg.device, cfg.dtype)
    _check(module, cfg, options)
    if targets is not None and options.loss is None:
        raise SymgradError("verify: targets= are fed to loss(output, targets); pass loss= (e.g. "
                           "loss=torch.nn.functional.cross_entropy)")
    args = _tensors(inputs, cfg, "inputs")
    hold = options.frozen == "hold"
    if not any(p.requires_grad or not hold for p in module.parameters()) and not any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in tree_leaves(args)):
        raise SymgradError(f"verify(module={display_name(module)}): nothing to differentiate: the "
                           f"module has no {'trainable ' if hold else ''}parameters and no "
                           "input requires grad; give the inputs to check requires_grad=True "
                           "(inputs=x.requires_grad_())")
    extra = _tensors(targets, cfg, "targets") if targets is not None else ()
    was_training = module.training
    with _mode(module, options.train):
        names = arg_names(module, len(args)) + (
            ["targets"] if len(extra) == 1 else [f"targets{i}" for i in range(len(extra))])
        captured = capture(module, args + extra, loss=options.loss, n_targets=len(extra),
                           seed=cfg.seed, names=names, name=display_name(module),
                           who=f"verify(module={display_name(module)})", has_train=True,
                           module_params="trainable" if hold else "param",
                           grad=[bool(a.requires_grad) for a in tree_leaves(args + extra)
                                 if isinstance(a, torch.Tensor)])
        run, fns = _paths(captured, paths, cfg, options.train)
        run.first_message_s = time.perf_counter() - t_call
        vary = [b.name for b in captured.model.param_blocks] + [
            s.name for s in captured.slots if s.source == "arg" and s.role == "input"
            and s.key < len([a for a in tree_leaves(args) if isinstance(a, torch.Tensor)])]
        at = captured.at(cfg.samples, cfg.seed, vary)
        check_example_finite(captured, module, f"verify(module={display_name(module)})")
        result = verify_tensor(captured.model, torch_fn=None, at=at, cfg=replace(
            cfg, backends=("torch_fn",)),  # the user's code only: no own programs
            extra={backend_name(p): (fn, p) for p, fn in fns.items()},
            fresh=lambda m: fresh_around(captured, m, cfg.seed, vary))
    refuse_undefined_example(result, f"verify(module={display_name(module)})")  # (newuser13)
    result.timings["first_message_s"] = run.first_message_s
    result = with_saved_samples(named_by_module(result, captured.model, own_names(captured),
                                                cfg.seed), captured, at)
    if result.failures or result.undecided:  # each line says "sample k ... seed=S": what k is
        k = "1 scales" if cfg.samples == 2 else f"1..{cfg.samples - 1} scale"  # not "1..1"
        result.notes.append(f"samples: 0 is the example (the module's parameters and inputs= "
                            f"as given); {k} each parameter and float "
                            "input entry by a random factor in [5/8, 11/8] (signs and zeros "
                            f"kept; seed {cfg.seed})" if cfg.samples > 1 else
                            "samples: 0 is the example (the module's parameters and inputs= "
                            "as given)")
    if result.verdict == "fail" and (failing := failing_blocks(result)):
        with _mode(module, options.train):  # one more eager run, its state restored again
            note = function_note(upstream_of_functions(module, args, options.loss, extra),
                                 failing)
        result.notes += [n for n in (note, hook_note(module, failing)) if n]
    result = by_own_names(result, own_labels(captured.slots), findings=False)  # the notes
    result.module = run
    result.notes += run_notes(module, was_training, options, captured, cfg.seed)
    result.notes += [paths_mod.COMPILED_NOTE] if compiled else []
    result.notes += [n for n in (stop_note(captured.detached),) if n]  # (issue 18)
    return result


def fresh_around(captured: Captured, m: int, seed: int, vary: list[str]) -> dict:
    """``m`` fresh points around the example for the confirmation of a suspicion (another
    seed's draws, the example itself left out): a suspected systematic error or an entry
    beyond the fast bound is confirmed or refuted on them, as on a drawn model's fresh
    samples, instead of staying inconclusive."""
    return {k: v[1:] for k, v in captured.at(m + 1, seed + 1, vary).items()}


def run_notes(module: nn.Module, was_training: bool, options: ModuleOptions,
              captured: Captured, seed: int = 0) -> list[str]:
    """What the run did that the user may not assume: eval mode for a module that was in
    train mode, frozen parameters checked all the same, and a non-scalar loss (or output)
    checked along a random cotangent (which one, drawn from ``seed``)."""
    notes = []
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    if frozen:
        notes.append(f"{len(frozen)} frozen parameter(s) (requires_grad=False: "
                     f"{', '.join(frozen[:3])}{' ...' if len(frozen) > 3 else ''}) "
                     + ("held at their values (frozen=\"hold\")" if options.frozen == "hold"
                        else "are checked as if trainable: the gradient autograd would give "
                        "them (frozen=\"hold\" holds them at their values)"))
    mode = [f"{n} ({type(m).__name__})" for n, m in module.named_modules()
            if isinstance(m, MODE_DEPENDENT)]
    if was_training and not options.train and mode:
        notes.append(f"the module was in train mode; it was verified in eval mode (train=False, "
                     f"the default): {', '.join(mode[:3])}{' ...' if len(mode) > 3 else ''} ran "
                     "as in eval (dropout off, batch norm on its running statistics); "
                     "train=True checks batch norm's batch statistics and dropout (fed "
                     "symgrad's keep-masks)")
    sites = captured.call.feed.sites
    if sites:
        listed = ", ".join(f"{s.label} p={s.p:g}" for s in sites[:3])
        notes.append(f"dropout fed symgrad's keep-masks ({listed}"
                     f"{' ...' if len(sites) > 3 else ''}): "
                     "x * keep / (1 - p), keep an input of the captured program held at its "
                     "values, the same in your code's run; each sample draws its own masks "
                     "from the run's seed" + ("; nn.MultiheadAttention's attention dropout "
                     "(inside F.scaled_dot_product_attention) ran as that call's math form "
                     "(softmax(q kᵀ·scale + mask), dropout, times v)" if any(
                         "attention" in s.call for s in sites) else ""))
    used = {n.id for n in leaves([captured.model.loss], "param")}  # extra.weight: newuser9
    label = own_labels(captured.slots)
    unused = [label[b.name] for b in captured.model.param_blocks if b.node.id not in used]
    if unused:
        notes.append(f"{len(unused)} parameter(s) do not reach the loss ({', '.join(unused[:3])}"
                     f"{' ...' if len(unused) > 3 else ''}): exact gradient 0, torch's .grad "
                     "None; if not meant, check that forward uses them")
    what = "the loss is" if options.loss is not None else "no loss= given and the output is"
    notes += [n for n in (cotangent_note(captured.cotangents, seed, what),) if n]
    return notes


def own_names(captured: Captured) -> Plan:
    """The module's own name of each parameter block (``conv1.weight``; an input's: its
    argument name), as the ``Plan`` that ``named_by_module`` reads."""
    label = own_labels(captured.slots)
    blocks = captured.model.param_blocks
    names = [label[b.name] for b in blocks]
    return Plan("captured", names, {label[b.name]: tuple(b.shape) for b in blocks},
                {b.name: label[b.name] for b in blocks},
                {b.name: np.stack([np.full(b.size, i), np.arange(b.size)], 1)
                 for i, b in enumerate(blocks)}, {})


def by_own_names(result: Result, labels: dict[str, str], *, findings: bool = True) -> Result:
    """``result`` with its rows, findings (outputs and point keys, causes) and notes in the
    user's names (``findings=False``: the notes and causes only, where the rows are renamed
    elsewhere), and the
    confirmation's given-samples reason in the capture's words (its points are the example and
    points around it, not the user's ``at=``)."""
    rename = renamer(labels)

    def fix(f: Failure) -> Failure:  # a cause names blocks too ("no gradient reaches a_weight")
        f = replace(f, cause=rename(f.cause), note=rename(f.note))
        return replace(f, output=rename(f.output), point={
            labels.get(k, k): v for k, v in f.point.items()}) if findings else f
    if findings:
        result.outputs = [rename(o) for o in result.outputs]
        result.blocks = [(labels.get(n, n), a, b) for n, a, b in result.blocks]
    for kind in ("failures", "precision_losses", "kinks", "worst", "undecided"):
        setattr(result, kind, [fix(f) for f in getattr(result, kind)])
    result.comparisons = {
        n: replace(c, unconfirmed=tuple(rename(t.replace(GIVEN_SAMPLES, AROUND_EXAMPLE))
                                        for t in c.unconfirmed),
                   evidence=tuple(rename(t) for t in c.evidence),
                   systematic=tuple(replace(f, block=labels.get(f.block, f.block),
                                            evidence=rename(f.evidence)) for f in c.systematic))
        for n, c in result.comparisons.items()}
    return result


def _check(module: Any, cfg: VerifyConfig, options: ModuleOptions) -> None:
    """The module, its dtype and device (``run.check_module``); train mode's dropout is fed
    symgrad's keep-masks (``capture.dropout``)."""
    check_module(module, cfg)


def _tensors(value: Any, cfg: VerifyConfig, what: str) -> tuple:
    """A tensor or a tuple/list of arguments (one may nest tensors: an LSTM's ``(h0, c0)``);
    float tensors copied in the run's dtype with their gradient hooks
    (``capture.hooks.user_copy``: an input's ``register_hook`` hook changes the gradient
    compared, as it changes what ``loss.backward()`` leaves in ``x.grad``)."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not any(isinstance(a, torch.Tensor) for a in tree_leaves(items)):
        raise SymgradError(f"verify: {what}= holds no tensor; give a tensor or a tuple of them")
    dtype = torch_backend.TORCH_DTYPES[cfg.dtype]
    named = [(what if len(items) == 1 else f"{what}[{i}]", a)
             for i, item in enumerate(items) for a in tree_leaves(item)]
    for n, a in named:
        if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != dtype:
            got = str(a.dtype).removeprefix("torch.")
            raise SymgradError(f"verify: {n} is {got}, the module and the run are {cfg.dtype} "
                               f"(torch would refuse the mix); convert it ({n}.to(torch."
                               f"{cfg.dtype})) or run in {got}: module.to(torch.{got}), "
                               f"dtype={got!r}")
    return tree_map(lambda a: (user_copy(a, dtype=dtype, device=cfg.device)  # with its hooks
                               if a.is_floating_point() else a.to(cfg.device))
                    if isinstance(a, torch.Tensor) else a, items)


@contextmanager
def _mode(module: nn.Module, train: bool):
    """The module in train or eval mode, its buffers (BatchNorm's running stats, which each
    train-mode run updates) and modes restored afterwards."""
    modes = {m: m.training for m in module.modules()}
    saved = {n: b.detach().clone() for n, b in module.named_buffers()}
    module.train(train)
    try:
        yield
    finally:
        with torch.no_grad():
            for n, b in module.named_buffers():
                if n in saved:
                    b.copy_(saved[n])
        for m, was in modes.items():
            m.training = was


def _paths(captured: Captured, paths: tuple[str, ...], cfg: VerifyConfig,
           train: bool) -> tuple[ModuleRun, dict[str, Callable]]:
    """Each path's torch function, probed at the example point (eager must run: what its
    forward or backward raises is one line naming the user's frame, ``_eager_error``; another
    path that cannot run is skipped with its reason)."""
    run, fns = ModuleRun("captured"), {}
    eager = captured.torch_fn()
    for path in paths:
        fn = _path_fn(eager, path)
        counter = _CountSDPA() if paths_mod.PATHS[path].sdpa_backend else None
        stage = ["forward"]
        try:
            with counter if counter is not None else nullcontext():
                _probe(fn, captured, cfg, stage)
            reason = paths_mod.skip_reason(path, None, counter.calls if counter else 1,
                                           cfg.device)
        except Exception as exc:  # noqa: BLE001 - a path that cannot run is a row, not a crash
            if path == "eager":
                if isinstance(exc, SymgradError):
                    raise  # symgrad's own line already
                raise SymgradError(_eager_error(exc, captured, stage[0], train)) from None
            reason = paths_mod.skip_reason(path, exc, 0, cfg.device)
        keep_path(run, fns, path, fn, reason)
    if not fns:
        raise SymgradError("module: no path could run: " + "; ".join(
            f"{p}: {r}" for p, r in run.skipped.items()))
    return run, fns


def _eager_error(exc: Exception, captured: Captured, stage: str, train: bool) -> str:
    """The one line for the module's own eager run raising at the example point, after the
    capture's runs passed (its forward on an eager-only branch, or its backward: a custom
    Function's, a hook's): the user's frame (``usercode.user_error``) and the shapes of the
    arguments it received, by the user's names."""
    who = f"verify(module={captured.model.name})"
    what = f"{who}: its eager {stage}" + (" (train mode)" if train else "")
    check = ("its forward where an eager autograd run differs from the capture's (run "
             "without grad, then traced: both passed), e.g. a branch on torch.is_grad_enabled()"
             " or torch.compiler.is_compiling()" if stage == "forward" else
             "its backward (a custom autograd.Function's, a hook's) against those shapes")
    received = ", ".join(f"{s.name} {tuple(s.value.shape)}" for s in captured.slots
                         if s.source == "arg")
    return user_error(what, exc, check, received or None)


def _path_fn(eager: Callable, path: str) -> Callable:
    """``fn(**blocks)`` on one path: eager, compiled (inductor), or sdpa pinned."""
    wrap = paths_mod.wrapper(path)
    inner = wrap(lambda blocks: eager(**blocks)) if wrap is not None else None

    def fn(**blocks: torch.Tensor) -> torch.Tensor:
        with paths_mod.path_context(path):
            return inner(blocks) if inner is not None else eager(**blocks)
    fn.__name__ = eager.__name__
    fn.runs_in_float64 = inner is None  # every float block in the blocks' dtype: a float64
    #   re-run decides a float32 suspicion (symgrad.backends.float64); compiled: not re-run
    return fn


def _probe(fn: Callable, captured: Captured, cfg: VerifyConfig, stage: list[str]) -> None:
    """One forward and backward at the example point (fail fast, before the oracle);
    ``stage[0]`` says which ran last (``forward``, ``backward``)."""
    dtype = torch_backend.TORCH_DTYPES[cfg.dtype]
    blocks = {b.name: torch.as_tensor(captured.example[b.name], device=cfg.device).to(
        torch.long if b.domain.integer else dtype) for b in captured.model.blocks}
    for b in captured.model.param_blocks:
        blocks[b.name].requires_grad_(True)
    stage[0] = "forward"
    out = fn(**blocks)
    stage[0] = "backward"
    out.backward()


class _CountSDPA(torch.overrides.TorchFunctionMode):
    """Counts the calls of ``F.scaled_dot_product_attention`` (an sdpa path applies only to a
    module that calls it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is SDPA:  # torch's own (``capture.dropout`` patches F's while a run goes)
            self.calls += 1
        return func(*args, **(kwargs or {}))
