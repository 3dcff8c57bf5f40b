"""Walk an exported graph into tensor-program nodes, op by op, through ``aten.TABLE``.

An op whose arguments are all known (constants, integer inputs, bool buffers) is run in torch
itself (folded); any other op must be a key of the table, or the walk stops with one line that
names the ATen op and the user's source line.
"""

from __future__ import annotations

import operator
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.fx

from ..errors import SymgradError
from ..tensor.program import Node, input as leaf_input, param
from .activations import RANDOM_FREE
from .aten import lowering
from .export import PREFIX, Slot
from .values import is_known

_FRAME = re.compile(r'File "([^"]+)", line (\d+)(?:, in (\S+))?')
_SKIP = tuple({str(d) + os.sep for p in (torch.__file__, __file__)  # torch, capture: as
               for d in (Path(p).parent, Path(p).resolve().parent)})  # given and resolved
CHAIN_SHOWN = 4  # frames a chain names at most: the outermost and the innermost ones


def where_in_source(fx_node: torch.fx.Node) -> str:
    """The user's source line of an exported node: the innermost frame of its stack trace
    outside torch itself and symgrad's capture (whole directories: a user's ``torch_utils/``
    is the user's), and not generated code (``<string>``, fx's ``<eval_with_key>``), as
    ``file:line: code``, the code that frame's own line holds. Where the user's code reached
    it through calls of their own (a module's ``forward`` calling a helper: the frames
    ``capture.anchors`` kept), each calling frame first, as a traceback lists them:
    ``/src/net.py:14 in forward → net.py:6 in rough: code`` (a file's whole path where it
    changes, its name where it repeats; at most ``CHAIN_SHOWN`` frames). Where every frame is torch's (a torch module inside
    ``nn.Sequential``), the innermost submodule that ran it, as ``submodule 1.0
    (Upsample)``; "" when export kept neither."""
    trace = fx_node.meta.get("stack_trace") or ""
    lines = trace.strip().splitlines()
    frames = []
    for i, line in enumerate(lines):
        m = _FRAME.search(line)
        if m and not m.group(1).startswith(_SKIP) and not m.group(1).startswith("<"):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            code = "" if _FRAME.search(nxt) else nxt.strip()  # a frame without its code line
            frames.append((m.group(1), m.group(2), m.group(3) or "", code))
    found = _chain(frames)
    stack = list((fx_node.meta.get("nn_module_stack") or {}).values())
    if not found and stack and stack[-1][0].removeprefix(PREFIX.rstrip(".")):
        path, kind = stack[-1][0].removeprefix(PREFIX), stack[-1][1]  # the user's own path
        kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
        found = f"submodule {path} ({kind.rpartition('.')[2]})"
    return found


def _chain(frames: list[tuple[str, str, str, str]]) -> str:
    """``file:line: code`` of the innermost of ``frames`` (file, line, function, code;
    outermost first), after the frames that called it (see ``where_in_source``)."""
    frames = [f for i, f in enumerate(frames)  # a lambda calling one on its own line read
              if i == 0 or f[2] != "<lambda>" or f[:3] != frames[i - 1][:3]]  # "x.py:27 in
    #   <lambda> → x.py:27 in <lambda>": once (a method recursing keeps each of its frames)
    if not frames:
        return ""
    if len(frames) == 1:
        file, line, _, code = frames[0]
        return f"{file}:{line}: {code}"
    if len(frames) > CHAIN_SHOWN:
        skipped = len(frames) - CHAIN_SHOWN
        frames = frames[:1] + [("", "", "", f"… {skipped} more")] + frames[1 - CHAIN_SHOWN:]
    out, last = [], None
    for file, line, name, code in frames:
        if not file:  # the frames left out
            out.append(code)
            continue
        out.append(f"{file if file != last else os.path.basename(file)}:{line}")
        out[-1] += f" in {name}" if name else ""
        last = file
    return " → ".join(out) + (f": {frames[-1][3]}" if frames[-1][3] else "")


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return f"aten.{name}" if isinstance(target, torch._ops.OpOverload) else name


def _bind(target: Any, args: tuple, kwargs: dict) -> dict:
    """An op's arguments by their schema names, defaults filled in."""
    schema = target._schema.arguments
    out = {a.name: a.default_value for a in schema if a.has_default_value()}
    out.update({a.name: v for a, v in zip(schema, args)})
    out.update(kwargs)
    return out


def leaf(slot: Slot) -> Any:
    """A graph input's value in the walk: a param / input / integer-ids node, or the known
    tensor."""
    shape = tuple(slot.value.shape)
    if slot.role == "param":
        return param(slot.name, shape)
    if slot.role == "input":  # a keep-mask's domain its Bernoulli(1 - p): drawn, it is 0/1
        return leaf_input(slot.name, shape, slot.domain)
    if slot.role == "ids":  # token ids: an integer input, its range the table's rows
        return leaf_input(slot.name, shape, integer=True)
    return slot.value


def walk(graph: torch.fx.Graph, inputs: dict[str, Any]) -> list[Any]:
    """The captured value of each graph output.

    Arguments:
        graph: the exported (core ATen) graph.
        inputs: placeholder name -> its value in the walk (``leaf``).
    Returns:
        The output values (nodes, known tensors), flattened as torch's pytree flattens them.
    """
    env: dict[torch.fx.Node, Any] = {}
    for n in graph.nodes:
        if n.op == "placeholder":
            env[n] = inputs[n.name]
        elif n.op == "call_function":
            env[n] = _step(n, env)
        elif n.op == "output":
            return list(torch.fx.node.map_arg(n.args[0], lambda a: env[a]))
    raise SymgradError("capture: the exported graph has no output")


NO_GRADIENT = {  # ops of a float tensor that end its gradient: said, not "not supported yet"
    torch.ops.aten._local_scalar_dense.default: (
        ".item() / float(tensor) makes a Python number, and no gradient flows through it "
        "(torch's gradcheck fails there too); keep it a tensor (return x.sum(), not "
        "x.sum().item())")}


def _step(n: torch.fx.Node, env: dict) -> Any:
    args = torch.fx.node.map_arg(n.args, lambda a: env[a])
    kwargs = torch.fx.node.map_arg(n.kwargs, lambda a: env[a])
    if n.target is operator.getitem:
        return args[0][args[1]]
    if torch.Tag.nondeterministic_seeded in getattr(n.target, "tags", ()) and not (
            n.target in RANDOM_FREE and RANDOM_FREE[n.target](_bind(n.target, args, kwargs))):
        place = where_in_source(n)
        raise SymgradError(f"capture: {_op_name(n.target)}{f' at {place}' if place else ''} "
                           "draws random numbers, which differ on every call of your code; "
                           "symgrad feeds its own keep-masks to F.dropout and nn.Dropout(1d/2d/"
                           "3d) only: call those, capture in eval() mode, or pass the random "
                           "tensor as an input")
    if _reads_uncaptured(n.target, args):
        return None  # batch norm's saved statistics feeding a running-stat update
    if is_known(list(args)) and is_known(list(kwargs.values())):
        return n.target(*args, **kwargs)  # constants only: folded by torch itself
    low = lowering(n.target)
    place = where_in_source(n)
    at = f" at {place}" if place else ""
    if n.target in NO_GRADIENT:
        raise SymgradError(f"capture: {_op_name(n.target)}{at}: {NO_GRADIENT[n.target]}")
    if low is None and _returned_integers(n):
        return None  # (a.tanh(), a.argmax(-1)): no derivative, as torch's gradcheck skips it
    if low is None:
        raise SymgradError(f"capture: ATen op {_op_name(n.target)}{at} is not supported yet "
                           "(the supported ops: reports/capture_ops.md); rewrite that line "
                           "with supported ops, or describe the function as a symgrad model "
                           "and use sg.verify(model, torch_fn=...)")
    try:
        out = low(_bind(n.target, args, kwargs), tuple(_shape(n)))
    except SymgradError as exc:
        raise SymgradError(f"{exc}{at} ({_op_name(n.target)})") from None
    _check_shape(n, out)
    return out


def _returned_integers(n: torch.fx.Node) -> bool:
    """``n`` gives an integer or bool tensor that only leaves the function as an output (an
    ``argmax`` returned beside the value: newuser9): nothing differentiable reads it."""
    val = n.meta.get("val")
    return (isinstance(val, torch.Tensor) and not val.is_floating_point()
            and not val.is_complex() and bool(n.users)
            and all(u.op == "output" for u in n.users))


def narrowings(graph: torch.fx.Graph, run: torch.dtype) -> tuple[str, ...]:
    """The graph's casts of floats to a dtype less precise than the run's (``.to(torch.float32)``
    in a float64 run, as Hugging Face's LlamaRMSNorm does): that part of the forward rounds to
    the narrower dtype, which the run's bound does not allow, so a failure there is named
    "lower precision in user code" (``causes.catalogue``), as a torch_fn's ``.float()`` is."""
    out = []
    for n in graph.nodes:
        to = n.kwargs.get("dtype") if n.target is torch.ops.aten._to_copy.default else None
        if (isinstance(to, torch.dtype) and to.is_floating_point
                and torch.finfo(to).eps > torch.finfo(run).eps):
            place = where_in_source(n)
            out.append(f"to() gave {str(to).removeprefix('torch.')}"
                       f"{f' at {place}' if place else ''}")
    return tuple(dict.fromkeys(out))


def _reads_uncaptured(target: Any, args: tuple) -> bool:
    """An ATen op whose required tensor argument is None: a value the capture does not hold
    (batch norm's saved mean and rstd, which only the running statistics' update reads, as
    InstanceNorm's decomposition does: ``view`` and ``mean`` of them); its value is None too
    (``capture`` refuses a user output that ends up None)."""
    schema = getattr(target, "_schema", None)
    return schema is not None and any(
        v is None and isinstance(arg.type, torch._C.TensorType)
        for v, arg in zip(args, schema.arguments))


def _shape(n: torch.fx.Node) -> Sequence[int | None]:
    """The output shape export recorded; None for a size that depends on the data (x[mask]
    with a constant mask: the lowering knows it from the mask)."""
    val = n.meta.get("val")
    val = val[0] if isinstance(val, (tuple, list)) else val
    return tuple(_size(s) for s in val.shape) if isinstance(val, torch.Tensor) else ()


def _size(s: Any) -> int | None:
    try:
        return int(s)
    except Exception:  # an unbacked SymInt: torch raises its own guard error types
        return None


def _check_shape(n: torch.fx.Node, out: Any) -> None:
    first = out[0] if isinstance(out, tuple) else out
    want = _shape(n)
    if isinstance(first, Node) and (len(first.shape) != len(want) or any(
            w is not None and w != s for s, w in zip(first.shape, want))):
        raise SymgradError(f"capture: lowering {_op_name(n.target)} gave shape {first.shape}, "
                           f"torch has {tuple(_shape(n))} (a symgrad bug: please report it)")
