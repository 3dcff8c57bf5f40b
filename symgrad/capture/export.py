"""Run ``torch.export`` on a user's function or module and name what flows into its graph.

A plain function is wrapped in a module (``Call``) whose forward takes the tensor arguments
only (other arguments are baked in), so a function and a module go the same way. Each graph
input gets a ``Slot``: its block name (a module's own parameter name with dots as underscores,
a function's own argument name), where its value comes from, and its role.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.export.graph_signature import InputKind
from torch.utils._pytree import (SUPPORTED_NODES, tree_flatten, tree_flatten_with_path, tree_leaves,
                                 tree_unflatten)

from .anchors import anchored, function_class
from .composites import decompositions
from .dropout import Feed, mask_rng
from .signature import positional_names
from .stops import marking, stop_gradients
from .usercode import user_error
from ..domains import Bernoulli
from ..errors import SymgradError

PREFIX = "fn."  # the wrapped callable's attribute in ``Call``
QUIET_LOGGERS = ("torch._subclasses.fake_tensor", "torch.export", "torch._export",
                 "torch._dynamo", "torch.fx.experimental.symbolic_shapes",
                 "torch.__trace")  # their tracebacks (a shape mistake logs ~20 lines at ERROR
#   before export raises) are silenced while tracing; torch.__trace (structured trace, set to
#   DEBUG by torch itself) logs ~30 DEBUG records per export, which pytest shows under
#   "Captured log call" for every failing test that calls gradcheck
RNN_WEIGHTS = (r"The tensor attributes (self\.fn\.([\w.]+\.)?_flat_weights\[\d+\](, )?)+ were "
               r"assigned during export")  # nn.LSTM/GRU/RNN re-list their own parameters in
#   forward: torch's, not the user's, and harmless to the capture (the parameters are read as
#   parameters); a user's own tensor attribute assigned in forward still warns


class Call(torch.nn.Module):
    """``fn(*args)`` as a module whose forward takes the tensor arguments only; with ``loss``,
    ``loss(fn(*args[:-n_targets]), *args[-n_targets:])`` (a module's output and its targets,
    ``sg.verify(module=, inputs=, targets=, loss=)``). An argument may nest tensors in
    tuples, lists or dicts (an LSTM's ``(h0, c0)``): ``template`` is every leaf of ``args``
    (``args`` as given), ``slots`` the positions of the tensors among them."""

    def __init__(self, fn: Callable, args: Sequence[Any], loss: Callable | None = None,
                 n_targets: int = 0, who: str | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.__dict__["loss"] = loss  # not a submodule: its state is no block
        self.n_targets = n_targets
        self.args = list(args)
        self.template, self.spec = tree_flatten(self.args)
        self.n_leaves = len(self.template)  # the arguments' leaves; the keep-masks after them
        self.slots = [i for i, a in enumerate(self.template) if isinstance(a, torch.Tensor)]
        self.feed = Feed(fn if isinstance(fn, torch.nn.Module) else None,
                         who or f"capture({display_name(fn)!r})")  # dropout's keep-masks
        self.recording = False  # the capture's eager run: the feed lists the dropout sites
        self.stops: tuple[str, ...] = ()  # the user's stop-gradients' lines (``export``)

    def add_masks(self, masks: Sequence[torch.Tensor]) -> None:
        """The keep-masks as tensor arguments after the user's (one per ``feed.sites``)."""
        self.template = self.template[:self.n_leaves] + list(masks)
        self.slots = [i for i, a in enumerate(self.template) if isinstance(a, torch.Tensor)]

    def share_masks(self, other: "Call") -> None:
        """``other``'s dropout sites and keep-mask arguments (a reference= run's callable)."""
        self.add_masks(other.template[other.n_leaves:])
        self.feed.sites = other.feed.sites

    def forward(self, *tensors: torch.Tensor) -> Any:
        leaves = list(self.template)
        for i, t in zip(self.slots, tensors):
            leaves[i] = t
        args = tree_unflatten(leaves[:self.n_leaves], self.spec)
        with self.feed.active(leaves[self.n_leaves:], recording=self.recording), \
                stop_gradients():  # masks fed; stops marked while ``export`` traces
            if self.loss is None:  # a dataclass output, which export cannot flatten: its fields
                return _fields(self.fn(*args))
            k = len(args) - self.n_targets
            return self.loss(self.fn(*args[:k]), *args[k:])


@dataclass(frozen=True)
class Slot:
    """One graph input: its placeholder, block name, source and role.

    ``source`` is "state" (a module parameter or buffer: ``key`` its name in the wrapper),
    "tied" (a parameter that is the same tensor as an earlier one, nanoGPT's ``lm_head`` tied
    to ``wte``: ``name`` is that one's, so both uses are one block), "constant" (a lifted
    constant) or "arg" (``key``: the position among tensor arguments, nested ones flattened).
    ``role`` is "param" (differentiated), "input" (a float block, not differentiated), "ids"
    (an integer argument used only as embedding indices: an integer input block, its range
    the table's rows) or "known" (other integers, bools, constants: folded at their values).
    """

    placeholder: str
    name: str
    source: str
    key: Any
    role: str
    value: torch.Tensor
    label: str = ""  # the user's name where it is no block name: a keep-mask's ``drop.keep``
    domain: Any = None  # an input's domain where known: a keep-mask's Bernoulli(1 - p)


def display_name(fn: Callable) -> str:
    """The user's name of ``fn``: a function's, a module's class, a custom Function's class."""
    cls = function_class(fn)
    if cls is not None:
        return cls.__name__
    return getattr(fn, "__name__", type(fn).__name__)


def arg_names(fn: Callable, n_args: int) -> list[str]:
    """The user's names of ``fn``'s positional arguments (``input<i>``, by position, where
    neither its signature nor its docstring names them); a custom Function's are those of
    its ``forward`` after ``ctx``."""
    cls = function_class(fn)
    target = (cls.forward if cls is not None else fn.forward if isinstance(fn, torch.nn.Module)
              else fn)
    params = positional_names(target)  # a builtin's from its docstring (torch.tanh: input)
    if cls is not None and cls.setup_context is torch.autograd.Function.setup_context:
        params = params[1:]  # ctx (a setup_context-style forward has none: newuser10)
    return [params[i] if i < len(params) else f"input{i}" for i in range(n_args)]


def leaf_names(args: Sequence[Any], names: Sequence[str]) -> list[str]:
    """The user's name of every leaf of ``args`` (``Call.template``'s order): an argument's
    own name (``names``, one per argument), a nested leaf's with its place in it.

    >>> leaf_names((torch.ones(2), (torch.ones(1), torch.ones(1))), ["input", "hx"])
    ['input', 'hx_0', 'hx_1']
    """
    out = []
    for name, arg in zip(names, args):
        for path, _ in tree_flatten_with_path(arg)[0]:
            keys = [getattr(k, "idx", getattr(k, "key", getattr(k, "name", k))) for k in path]
            out.append(re.sub(r"\W", "_", "_".join([name, *map(str, keys)])))
    return out


def block_name(key: str) -> str:
    """A module's parameter name as a block name: ``l1.weight`` -> ``l1_weight``."""
    name = re.sub(r"\W", "_", key[len(PREFIX):] if key.startswith(PREFIX) else key)
    return name if name.isidentifier() else f"p_{name}"


def _fields(out: Any) -> Any:
    """A dataclass output (not a registered pytree) as the dict of its fields (newuser10:
    refused as untraceable with no loss=); anything else as is."""
    if is_dataclass(out) and not isinstance(out, type) and type(out) not in SUPPORTED_NODES:
        return {f.name: getattr(out, f.name) for f in fields(out)}
    return out


def export(fn: Callable, args: Sequence[Any], loss: Callable | None = None,
           n_targets: int = 0, who: str | None = None, *, has_train: bool = False,
           seed: int = 0) -> tuple[Call, torch.export.ExportedProgram]:
    """``torch.export`` of ``fn(*args)`` (core ATen after decompositions), after one eager run
    of it on ``args`` (a shape or argument mistake is named as such, not as a tracing
    failure).

    Arguments:
        fn: a function or ``nn.Module``.
        args: its example arguments (tensors and Python values).
        loss, n_targets: as for ``Call`` (the last ``n_targets`` arguments go to ``loss``).
        who: how messages name the call (default ``capture('<fn name>')``), e.g.
            ``verify(module=Sequential)``.
        has_train: the caller has a ``train=`` option (``sg.verify(module=)``): a module that
            raises in train mode is told to check it.
        seed: seeds the example's dropout keep-masks (``dropout.mask_rng``).
    Returns:
        The wrapper module (its dropout sites ``call.feed.sites``, their example masks the
        last tensor arguments) and its exported program.
    """
    what = display_name(fn)
    who = who or f"capture({what!r})"
    call = Call(fn, args, loss, n_targets, who)
    tensors = tuple(call.template[i] for i in call.slots)
    call.recording = True  # the eager run lists the dropout sites
    try:
        run_eagerly(call, tensors, who, has_train=has_train)
    finally:
        call.recording = False
    if call.feed.sites:  # each a keep-mask argument, in the run's float dtype
        rng, like = mask_rng(seed, 0), _widest_float(fn, tensors)
        call.add_masks([torch.as_tensor(s.draw(rng), dtype=like.dtype, device=like.device)
                        for s in call.feed.sites])
        tensors = tuple(call.template[i] for i in call.slots)
    printed = io.StringIO()  # torch.export prints a failed trace's partial graph to stderr
    try:  # the user's lines kept in the graph: fn's, its helpers', the loss's (``anchored``)
        with warnings.catch_warnings(), quiet_logs(), contextlib.redirect_stderr(printed), \
                anchored(fn, loss), marking() as stops:
            warnings.simplefilter("ignore", FutureWarning)  # torch's own notices
            warnings.filterwarnings("ignore", message=RNN_WEIGHTS, category=UserWarning)
            ep = torch.export.export(call, tensors).run_decompositions(decompositions())
    except SymgradError as exc:  # symgrad's own line (``stops``: a leaf written in place)
        sys.stderr.write(printed.getvalue())
        raise SymgradError(f"{who}: {str(exc).removeprefix('capture: ')}") from None
    except Exception as exc:  # noqa: BLE001 - any tracing failure is the user's to fix
        graph = str(getattr(exc, "partial_fx_graph", "") or "")
        sys.stderr.write(printed.getvalue().replace(graph + "\n", "") if graph
                         else printed.getvalue())  # what the user's own code printed
        run_eagerly(call, tensors, who, has_train=has_train, grad=True)  # export traces
        # under autograd: a bug only grad mode reaches (an in-place op on an input that
        # requires grad, a grad-only branch) is the user's, named at their frame
        line = _value_branch(exc, graph)
        if line:
            raise SymgradError(
                f"{who}: torch.export cannot trace {what!r}: a Python branch on a tensor's "
                f"value at {line} (the branch taken would depend on the point); write it with "
                "torch.where (both sides computed, the kink placed), or give reference= a "
                "torch function of the same arguments without the branch") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if FAKE_CONSTANT in first:  # torch lifted a value it could not trace (newuser9's
            #   .data; since detach18 .data reads as .detach(), so it is another op)
            held = re.search(r"model attribute: ([\w.]+?)\.? ", str(exc))
            raise SymgradError(
                f"{who}: torch.export cannot trace {what!r} ({first[:90]}...): it met an op it "
                "cannot trace through and kept its value as a constant"
                + (f" (torch calls it {held.group(1)})" if held else "")
                + "; not a .data read (read as .detach(), a stop-gradient): write that step "
                "with plain torch ops, or give "
                "reference= a torch function of the same arguments that export can trace"
            ) from None
        raise SymgradError(f"{who}: runs eagerly but torch.export cannot trace {what!r} "
                           f"({type(exc).__name__}: {first}); for an opaque kernel (C++/CUDA/"
                           "Triton, numpy) give an independent description: gradcheck(fn, "
                           "inputs, reference=a torch function of the same arguments that "
                           "export can trace)") from None
    sys.stderr.write(printed.getvalue())
    call.stops = tuple(dict.fromkeys(filter(None, stops)))  # (export restores the module's
    return call, ep  # attributes after tracing: set here)


FAKE_CONSTANT = "fake tensor in the exported program constant"  # torch's words for a
#   value it could not trace through (a .data read, before detach18)


def _widest_float(fn: Callable, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A tensor in the run's float dtype and on its device: the widest of the float arguments
    and a module's parameters (float64 on the CPU where there is none)."""
    own = list(fn.parameters()) if isinstance(fn, torch.nn.Module) else []
    floats = [t for t in list(tensors) + own if t.is_floating_point()]
    return max(floats, key=lambda t: torch.finfo(t.dtype).bits) if floats else torch.zeros(
        (), dtype=torch.float64)


def _value_branch(exc: BaseException, graph: str) -> str | None:
    """``file:line (code)`` of the user's line whose data-dependent branch stopped the trace
    (``if x.item() > 0``, ``bool(tensor)``): the last frame comment of torch's partial graph;
    None for any other tracing failure."""
    if "DataDependent" not in type(exc).__name__:
        return None
    found = re.findall(r"# File: (\S+?):(\d+) in \S+, code: (.*)", graph)
    return f"{found[-1][0]}:{found[-1][1]} ({found[-1][2].strip()})" if found else None


def run_eagerly(call: Call, tensors: Sequence[torch.Tensor], who: str, *,
                has_train: bool = False, grad: bool = False) -> None:
    """Run ``call`` once on copies of its example tensors (no grad unless ``grad``; the
    global RNG and a module's buffers, BatchNorm's running stats, restored afterwards); what
    raises is a one-line ``SymgradError`` naming the options to check (``train=`` too where
    ``has_train``: the caller has that option and the module ran in train mode) and the
    user's own frame that raised (``usercode.user_error``, as for a ``torch_fn``)."""
    module = call.fn if isinstance(call.fn, torch.nn.Module) else None
    saved = {n: b.detach().clone() for n, b in module.named_buffers()} if module else {}
    try:
        with torch.set_grad_enabled(grad), torch.random.fork_rng(devices=[]):
            call(*[t.detach().clone().requires_grad_(t.requires_grad) for t in tensors])  # a
            # forward that changes an input in place (x.mul_(2)) leaves the example as given
    except SymgradError:
        raise  # symgrad's own line (a dropout it cannot feed): already named by ``who``
    except Exception as exc:  # noqa: BLE001 - the user's code on the user's inputs
        k = len(call.args) - call.n_targets
        targets = ("shapes " + _shapes(call.args[k:]) if k < len(call.args) else "none given")
        check = f"inputs= (shapes {_shapes(call.args[:k])})" + (
            f" / targets= ({targets}) / loss=" if call.loss is not None else "")
        if module is not None and module.training and has_train:
            check += " / train= (the module ran in train mode)"
        if grad:
            check += " / its code under autograd (it ran without grad)"
        raise SymgradError(user_error(f"{who}: running it on inputs=", exc, check)) from None
    finally:
        if module is not None:
            with torch.no_grad():
                for n, b in module.named_buffers():
                    if n in saved:
                        b.copy_(saved[n])


def _shapes(values: Sequence[Any]) -> str:
    """The shapes of the tensors among ``values`` (nested ones too), an integer or bool one's
    dtype beside it (an int64 x where floats are meant raised "mixed dtype": newuser9):
    ``(4, 6), (4,) int64``."""
    return ", ".join(str(tuple(v.shape)) + ("" if v.is_floating_point() else " " + str(
        v.dtype).removeprefix("torch.")) for v in tree_leaves(list(values))
        if isinstance(v, torch.Tensor)) or "none"


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """torch's export loggers (``QUIET_LOGGERS``) above CRITICAL while tracing; each
    logger's level restored afterwards."""
    loggers = [logging.getLogger(n) for n in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _only_indices(ep: torch.export.ExportedProgram, placeholder: str) -> bool:
    """The integer input is read only as the indices of embeddings (token ids)."""
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == placeholder)
    return bool(node.users) and all(
        u.target is torch.ops.aten.embedding.default and u.args[1] is node
        and node not in u.args[2:] for u in node.users)


def _storage(value: torch.Tensor) -> tuple:
    """What makes two state tensors the same tensor (tied weights): storage, shape, strides."""
    return (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
            value.stride())


def slots(call: Call, ep: torch.export.ExportedProgram, names: Sequence[str],
          grad: Sequence[bool], module_params: str) -> list[Slot]:
    """Every graph input as a ``Slot``.

    Arguments:
        call: the wrapper ``export`` made.
        ep: its exported program.
        names: the user's name of each tensor argument (in ``call.slots`` order).
        grad: whether each tensor argument is differentiated.
        module_params: "param" (a module's parameters are differentiated), "input" (held)
            or "trainable" (those with ``requires_grad`` differentiated, the frozen held).
    Returns:
        One slot per placeholder, in graph order.
    """
    out, user, seen = [], 0, {}
    first_mask = len(call.slots) - len(call.feed.sites)  # the keep-masks' arguments: the last
    for spec in ep.graph_signature.input_specs:
        ph = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            value = call.template[call.slots[user]]
            role = ("param" if grad[user] else "input") if value.is_floating_point() else (
                "ids" if _only_indices(ep, ph) else "known")
            site = call.feed.sites[user - first_mask] if user >= first_mask else None
            out.append(Slot(ph, names[user], "arg", user, role, value.detach(),
                            site.label if site else "", Bernoulli(1 - site.p) if site else None))
            user += 1
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            own = (ep.state_dict[spec.target] if spec.target in ep.state_dict
                   else ep.constants[spec.target])
            value = own.detach()
            role = ("known" if not value.is_floating_point()
                    else "input" if spec.kind != InputKind.PARAMETER
                    else ("param" if own.requires_grad else "input")
                    if module_params == "trainable" else module_params)
            first = seen.setdefault(_storage(value), block_name(spec.target))
            source = "state" if first == block_name(spec.target) else "tied"
            out.append(Slot(ph, first, source, spec.target, role, value))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            out.append(Slot(ph, block_name(spec.target), "constant", spec.target, "known",
                            ep.constants[spec.target].detach()))
        else:
            raise SymgradError(f"capture: graph input {ph!r} of kind {spec.kind.name} is not "
                               "supported")
    blocks = [s.name for s in out if s.role != "known" and s.source != "tied"]
    dup = sorted({b for b in blocks if blocks.count(b) > 1})
    if dup:
        raise SymgradError(f"capture: block name(s) {dup} are used twice (a parameter and an "
                           "argument, or names that differ only by '.' and '_'); rename one")
    return out
