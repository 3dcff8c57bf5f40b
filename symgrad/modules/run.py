"""Verify a user's nn.Module by parameter name: the pipeline of ``sg.verify(model, module=...)``.

match names (one error listing every problem) -> run one sample on every path (fail fast) ->
the model's tensor program verified with every module path as an extra backend
(``symgrad.tensor.verify``: derive, run, oracle, compare) -> a Result whose rows and messages
use the module's own parameter names, and whose failures reference their sample by index and
seed instead of dumping thousands of inputs.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from torch import nn

from ..backends import torch as torch_backend
from ..compare import FAILING, ulp
from ..config import OWN_BACKENDS, VerifyConfig
from ..errors import SymgradError, checked_keywords
from ..model import Model
from ..result import Result
from ..tensor.model import TensorModel, program_of
from ..tensor.verify import verify_tensor
from ..zoo.gpt2 import eval_twin
from . import departure, glue, mapping, paths as paths_mod


@dataclass(frozen=True)
class ModuleOptions:
    """How ``sg.verify`` runs a user's module (``module=``)."""

    map: object = None  # None: detect the layout; a layout name, dict or callable (mapping.plan)
    train: bool = False  # False: eval mode (dropout off); True: train mode, keep-masks fed
    loss: Callable | None = None  # loss(output, targets) -> scalar; None: mean next-token CE
    paths: tuple[str, ...] = ("eager",)  # symgrad.modules.paths.PATHS names
    frozen: str = "check"  # captured module: "check" requires_grad=False parameters, or "hold"


@dataclass
class ModuleRun:
    """What happened to each path, attached to the Result as ``result.module``."""

    layout: str
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason in words
    backends: dict[str, str] = field(default_factory=dict)  # path -> backend name in the Result
    first_message_s: float = 0.0  # from the call to the end of the one-sample probe
    departures: dict = field(default_factory=dict)  # backend -> tensor.departure.Search, for
    #                                                 each failing module backend


def backend_name(path: str) -> str:
    return "module" if path == "eager" else f"module[{path}]"


def keep_path(run: ModuleRun, fns: dict, path: str, fn: Callable, reason: str) -> None:
    """A probed path: skipped with its reason (``run.skipped``), or kept as a backend."""
    if reason:
        run.skipped[path] = reason
    else:
        fns[path] = fn
        run.backends[path] = backend_name(path)


def verify_module(model: TensorModel, module: nn.Module, *, cfg: VerifyConfig,
                  options: ModuleOptions = ModuleOptions()) -> Result:
    """The module path of ``sg.verify`` (see its docstring): every path of ``module`` is
    probed on one sample, then verified as an extra backend of ``model``'s tensor views.

    Arguments:
        model: the tensor program describing the module (``sg.verify`` passes a plain model
            as its program, ``symgrad.verify.as_program``).
        module: the user's ``nn.Module``, matched to ``model`` by parameter name.
        cfg: the run.
        options: ``sg.verify``'s module options (map, train, loss, paths).
    Returns:
        A ``Result`` in the module's own parameter names, ``result.module`` its ``ModuleRun``.
    """
    t_call = time.perf_counter()
    paths = paths_mod.check_paths(options.paths)
    plan, rate = _matched(model, module, cfg, options.map)
    run = ModuleRun(plan.layout)
    if options.train and getattr(model, "dropout", True) is False and rate:
        raise SymgradError(f"module: train=True needs the model's dropout keep-masks; "
                           f"{model.name!r} was built without them (build it with "
                           "dropout=True, e.g. symgrad.zoo.gpt2.gpt(config, dropout=True))")
    fns = {}
    for path in paths:
        if options.train and paths_mod.PATHS[path].compiled:
            run.skipped[path] = ("train=True: keep-masks are fed by patching F.dropout in Python,"
                                 " which a compiled graph would bake in; verify it in eval mode")
            continue
        try:
            fn = _probed(model, module, plan, cfg, options, path, rate)
            reason = paths_mod.skip_reason(path, None, fn.sdpa_calls, cfg.device)
        except SymgradError as exc:
            if path == "eager":
                raise
            reason = paths_mod.skip_reason(path, exc, 0, cfg.device)
        keep_path(run, fns, path, fn, reason)
    run.first_message_s = time.perf_counter() - t_call
    if cfg.progress:
        print(f"  module {type(module).__name__}: layout {plan.layout}, {len(plan.names)} "
              f"parameter tensors matched; one sample ran on {', '.join(fns) or 'no path'} in "
              f"{run.first_message_s:.2f} s", file=sys.stderr, flush=True)
    if not fns:
        raise SymgradError("module: no path could run: " + "; ".join(
            f"{p}: {r}" for p, r in run.skipped.items()))

    model = model_for_mode(model, options.train)  # eval mode: the twin without dropout
    result = verify_tensor(model, torch_fn=None, cfg=cfg, extra={
        backend_name(path): (fn, path) for path, fn in fns.items()})
    result.timings["first_message_s"] = run.first_message_s
    run.departures = _departures(result, model, module, fns, plan, result.values, cfg,
                                 options.train)
    result = named_by_module(result, model, plan, cfg.seed)
    result = departure.explain(result, run.departures)
    result.module = run
    return result


def _matched(model: TensorModel, module: nn.Module, cfg: VerifyConfig, map) -> tuple:
    """The checks every module run starts with (the device, the module's dtypes and devices)
    and its parameters matched to ``model``'s blocks (``map``: ``ModuleOptions.map``):
    ``(plan, dropout rate)``."""
    torch_backend.check_device(cfg.device, cfg.dtype)
    check_module(module, cfg)
    plan = mapping.plan(model, module, map)
    rate = model.gpt_config.drop_rate if hasattr(model, "gpt_config") else 0.0
    return plan, rate


def _probed(model: TensorModel, module: nn.Module, plan, cfg: VerifyConfig,
            options: ModuleOptions, path: str, rate: float) -> Callable:
    """The module on one torch ``path`` as ``fn(**blocks)``, run once on one sample (fail
    fast: a wrong mapping or a path that cannot run raises here, before any verification)."""
    mcfg = glue.ModuleConfig(options.train, options.loss, path, rate)
    fn = glue.module_fn(model, module, plan, mcfg, paths_mod.wrapper(path))
    glue.probe(fn, model, plan, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
    return fn


def _departures(result: Result, model: TensorModel, module: nn.Module, fns: dict, plan,
                values: dict, cfg: VerifyConfig, train: bool) -> dict:
    """For each failing module backend, where its forward first departs at the sample of its
    worst failure (``symgrad.modules.departure``); timed as ``departure_s``."""
    t0 = time.perf_counter()
    found = {}
    for path, fn in fns.items():
        name = backend_name(path)
        first = next((f for f in result.failures if f.backend == name), None)
        if first is None:
            continue
        if paths_mod.PATHS[path].compiled:  # hooks would make dynamo retrace the graph
            found[name] = departure.Search(None, (), ("a compiled path's intermediates are not "
                                                      "captured",), 0.0, first.sample)
            continue
        found[name] = departure.locate(model, module, fn, plan.layout, values,
                                       first.sample, dtype=cfg.dtype, device=cfg.device,
                                       tol=cfg.tolerance, train=train)
    if found:
        result.timings["departure_s"] = time.perf_counter() - t0
    return found


def check_module(module, cfg: VerifyConfig) -> None:
    """An ``nn.Module`` whose float parameters are in the run's dtype and on its device (each
    refusal one line saying how to convert or move it); ``modules.any`` checks the same."""
    if not isinstance(module, nn.Module):
        raise SymgradError(f"module= must be a torch.nn.Module, got {type(module).__name__}")
    want = torch_backend.TORCH_DTYPES[cfg.dtype]
    for name, p in module.named_parameters():
        if p.is_floating_point() and p.dtype != want:
            raise SymgradError(f"module: parameter {name} is {str(p.dtype)[6:]}, the run is "
                               f"{cfg.dtype}; convert the module (module.to(torch.{cfg.dtype}))"
                               f" or pass dtype={str(p.dtype)[6:]!r}")
        if p.device.type != str(cfg.device).split(":")[0]:
            raise SymgradError(f"module: parameter {name} is on {p.device}, the run is on "
                               f"{cfg.device}; move the module (module.to({cfg.device!r})) or "
                               f"pass device={p.device.type!r}")


def module_torch_fn(model: TensorModel, module: nn.Module, *, cfg: VerifyConfig,
                    options: ModuleOptions = ModuleOptions()) -> tuple[TensorModel, Callable]:
    """A module matched to ``model`` by parameter name, as ``torch_fn(**blocks)`` of the model
    it is verified against (the eval twin in eval mode): how order 2 verifies a module, its
    double backward through ``symgrad.hvp.double_backward`` (eager path only).

    Arguments:
        model: the tensor program describing the module (GPT layouts, or ``options.map``).
        module: the user's ``nn.Module``.
        cfg: the run (its seed, dtype and device probe one sample first).
        options: ``sg.verify``'s module options; ``paths`` must be ("eager",).
    Returns:
        ``(model, fn)``: the model to verify and the module as its per-sample torch code.
    """
    paths = paths_mod.check_paths(options.paths)
    if paths != ("eager",):
        raise SymgradError(f"order=2 with module= verifies the module's eager path (its double "
                           f"backward); paths={paths!r} is first-order only: pass "
                           "paths=('eager',), or verify the other paths at order=1")
    plan, rate = _matched(model, module, cfg, options.map)
    fn = _probed(model, module, plan, cfg, options, "eager", rate)
    fn.__name__ = f"module {type(module).__name__}"
    fn.names = (ModuleOutputs(model, plan).rename, plan.labels)  # the rows: hvp.relabel
    return model_for_mode(model, options.train), fn


def model_for_mode(model: TensorModel, train: bool) -> TensorModel:
    """In eval mode a module's dropout is off: a GPT with dropout keep-masks is verified as its
    twin without them (``symgrad.zoo.gpt2.eval_twin``)."""
    gcfg = getattr(model, "gpt_config", None)
    if train or gcfg is None or gcfg.drop_rate == 0:
        return model
    return eval_twin(model)


class ModuleOutputs(Sequence):
    """The Result's output names in the module's own names ("value", then
    "d/d<parameter>[i, j]" per block entry), computed on demand: a large model's millions of
    entries are never listed."""

    def __init__(self, model: TensorModel, plan: mapping.Plan) -> None:
        self.blocks = list(model.param_blocks)
        self.plan = plan
        self.starts = np.cumsum([0] + [int(np.prod(b.shape)) if b.shape else 1
                                       for b in self.blocks])
        self.by_name = {b.name: i for i, b in enumerate(self.blocks)}
        self.positions: dict[str, int] | None = None  # name -> position, built on first index

    def __len__(self) -> int:
        return 1 + int(self.starts[-1])

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = int(k) % len(self) if int(k) < 0 else int(k)
        if k == 0:
            return "value"
        i = int(np.searchsorted(self.starts, k - 1, side="right")) - 1
        return f"d/d{self.plan.entry_name(self.blocks[i].name, k - 1 - int(self.starts[i]))}"

    def index(self, name: str, *args) -> int:
        """The position of an output name (a dict built on first use, then O(1))."""
        if self.positions is None:
            self.positions = {n: k for k, n in enumerate(self)}
        if name not in self.positions:
            raise ValueError(f"{name!r} is not an output")
        return self.positions[name]

    def rename(self, output: str) -> str:
        """A model output name ("d/dh0_Wq[1,2]") in the module's names; others unchanged."""
        m = re.fullmatch(r"d/d(\w+)(?:\[([\d,]+)\])?", output)
        if not m or m.group(1) not in self.by_name:
            return output
        b = self.blocks[self.by_name[m.group(1)]]
        idx = tuple(int(x) for x in m.group(2).split(",")) if m.group(2) else ()
        flat = int(np.ravel_multi_index(idx, b.shape)) if b.shape else 0
        return f"d/d{self.plan.entry_name(b.name, flat)}"


def named_by_module(result: Result, model: TensorModel, plan: mapping.Plan, seed: int) -> Result:
    """Rows and messages in the module's names; each failure's inputs as the run that draws
    them again: its sample k of ``seed`` and ``samples`` (sample k's draws depend on both)."""
    names = ModuleOutputs(model, plan)
    again = {"seed": seed, "samples": result.config.samples}

    forward_differs = {n for n, c in result.comparisons.items()
                       if np.isin(c.status[:, 0], FAILING).any()}

    def fix(f):
        note = f.note
        if (f.backend in forward_differs and f.backend not in OWN_BACKENDS
                and f.output != "value" and f.kind == "mismatch"):
            note = "; ".join(filter(None, (note, (  # a named cause's detail kept first
                "its loss value differs too: the module's forward computes a different "
                "function (not only a wrong backward)"))))
        return replace(f, output=names.rename(f.output), point=dict(again), note=note)
    result.outputs = names
    result.blocks = [(plan.labels.get(n, n), a, b) for n, a, b in result.blocks]
    result.failures = [fix(f) for f in result.failures]
    result.precision_losses = [fix(f) for f in result.precision_losses]
    result.kinks = [fix(f) for f in result.kinks]
    result.worst = [fix(f) for f in result.worst]
    result.undecided = [fix(f) for f in result.undecided]
    return result


# ---------------------------------------------------------------- paths side by side
@dataclass
class PathsReport:
    """The same module verified on several torch paths, side by side."""

    result: Result
    rows: list[dict]  # per path: verdict, worst/median ULPs, largest difference from eager

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def verdict(self) -> str:
        """pass / fail / inconclusive of the module's paths (symgrad's own programs are shown,
        not deciding)."""
        return self.result.verdict

    def __str__(self) -> str:
        from tabulate import tabulate
        return (f"{self.result.model}: {len(self.rows)} torch path(s)\n"
                + tabulate(self.rows, headers="keys"))


PATHS_SAMPLES = 8  # samples compare_paths draws when neither samples= nor its config sets them


@checked_keywords  # compare_paths(model, m, path=...): one line, "did you mean 'paths'?"
def compare_paths(model: Model | TensorModel, module: nn.Module, *, paths=paths_mod.ALL_PATHS,
                  samples: int | None = None, seed: int | None = None,
                  device: str | None = None, dtype: str | None = None, map=None,
                  loss: Callable | None = None,
                  config: VerifyConfig | None = None) -> PathsReport:
    """Verify ``module`` on every torch path (eager, torch.compile, each sdpa backend) against
    one exact derivative, and name where the paths differ.

    Arguments:
        model, module, map, loss: as for ``sg.verify(model, module=...)`` (eval mode).
        paths: names from ``symgrad.modules.PATHS``; unavailable or inapplicable ones are kept
            as rows with the reason.
        samples, seed, device, dtype, config: the run (default ``PATHS_SAMPLES``, seed 0,
            cpu, float64); a keyword given beside ``config`` follows ``sg.verify``'s rule:
            it sets a field the config leaves at its default, and one that the config sets
            to another value is one line naming both.
    Returns:
        A ``PathsReport``: ``print(report)`` is the table; ``report.result`` the full Result.

    >>> import symgrad as sg                                         # doctest: +SKIP
    >>> print(sg.compare_paths(model, module, paths=("eager", "sdpa-math")))  # doctest: +SKIP
    """
    cfg = (config or VerifyConfig()).with_keywords(
        "compare_paths", samples=samples, seed=seed, device=device, dtype=dtype).with_samples(
        PATHS_SAMPLES)
    paths = paths_mod.check_paths(paths)
    model = program_of(model)
    result = verify_module(model, module, cfg=cfg,
                           options=ModuleOptions(map=map, loss=loss, paths=paths))
    rows = []
    base = result.comparisons.get("module")
    for path in paths:
        name = backend_name(path)
        row = {"path": path, "description": paths_mod.PATHS[path].description}
        if path in result.module.skipped:
            row.update(verdict="skipped", note=result.module.skipped[path])
        else:
            comp = result.comparisons[name]
            row.update(verdict=PATH_VERDICT[result.backend_verdict(name)],
                       **{"worst ULPs": result.worst_ulps(name),
                          "median ULPs": result.median_ulps(name)},
                       note=_difference(result, comp, base) if path != "eager" else "")
        rows.append(row)
    return PathsReport(result, rows)


PATH_VERDICT = {"pass": "ok", "fail": "FAIL", "inconclusive": "inconclusive"}


def _difference(result: Result, comp, base) -> str:
    """Where a path's gradient differs most from eager's, measured against the allowance (the
    rounding-error bound of that entry, absolute, in the run's dtype), so that exact zeros do
    not dominate. The absolute difference and allowance are printed; their ratio only while it
    means something (a finite allowance above zero, a ratio up to ``RATIO_SHOWN``)."""
    if base is None:
        return "no eager run to compare with"
    delta = np.abs(comp.got - base.got)
    if not np.any(delta) and not np.any(np.isnan(delta)):
        return "bitwise identical to eager"
    allow = (comp.allowed_abs if comp.allowed_abs is not None
             else comp.allowed_ulps * ulp(comp.expected, comp.dtype))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        share = delta / allow
    share = np.where(np.isnan(share), np.inf, share)
    i, k = np.unravel_index(int(np.argmax(share)), share.shape)
    where = result.outputs[k][3:] if k else "the loss value"
    d, a, r = float(delta[i, k]), float(allow[i, k]), float(share[i, k])
    meaning = (f" = {r:.3g} of its allowance" if np.isfinite(r) and a > 0 and r <= RATIO_SHOWN
               else "")
    return (f"differs from eager in {int((delta != 0).sum())} of {delta.size} entries; most in "
            f"{where} at sample {int(result.oracle_samples[i])}: |difference| "
            f"{d:.3g}, allowance {a:.3g}{meaning}")


RATIO_SHOWN = 1e6  # beyond, the allowance is at the underflow floor: the ratio says nothing
