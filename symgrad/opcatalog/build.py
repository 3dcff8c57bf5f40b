"""A catalogue row as ordinary ``sg.Model``s and torch functions (cached per row).

First order: ``L = sum_i readout_i * op(args)_i`` with a random read-out vector (an input), so
every output entry's gradient is checked. Second order: ``H(L) v = grad (grad L . v)`` as the
model ``sum_j v_j dL/dp_j`` (``sympy.diff`` of the definition), whose gradient is the
Hessian-vector product; torch computes it by double backward.

>>> from symgrad.opcatalog.table import by_name
>>> from symgrad.opcatalog.build import first_order
>>> built = first_order(by_name("sigmoid"))
>>> [b.name for b in built.model.blocks]
['x', 'readout']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp
import torch
import torch.nn.functional as F

from ..domains import Integers, Normal
from ..entries import matrix
from ..model import Model
from .table import Arg, Op

READOUT = "readout"


@dataclass
class Built:
    """A row's model, its torch function (same block names) and its source."""

    model: Model
    torch_fn: Callable
    source: str  # the torch function's source (used for reproducers)
    out_size: int  # entries of the op's output


_CACHE: dict[tuple[str, str], Built] = {}


def _block(arg: Arg):
    if not arg.shape:
        return sp.Symbol(arg.name, real=True)
    if len(arg.shape) == 1:
        return matrix(arg.name, arg.shape[0])
    return matrix(arg.name, *arg.shape)


def _domain(arg: Arg):
    return Integers(0, 2) if arg.domain == "class3" else Normal()


def _view(arg: Arg, block):
    """What ``define`` receives: a symbol, a list of entries (vector) or a matrix."""
    if not arg.shape:
        return block
    return list(block) if len(arg.shape) == 1 else block


def definition(op: Op) -> tuple[dict, list[sp.Expr]]:
    """The row's blocks (name -> symbol/matrix) and its output entries as sympy expressions."""
    blocks = {a.name: _block(a) for a in op.args}
    out = op.define(**{a.name: _view(a, blocks[a.name]) for a in op.args})
    entries = list(out) if isinstance(out, (list, tuple, sp.MatrixBase)) else [out]
    return blocks, [sp.sympify(e) for e in entries]


def _fn(name: str, names: list[str], body: list[str]) -> tuple[Callable, str]:
    src = f"def {name}({', '.join(names)}):\n" + "".join(f"    {line}\n" for line in body)
    namespace = {"torch": torch, "F": F}
    exec(compile(src, f"<symgrad ops {name}>", "exec"), namespace)  # noqa: S102 - our source
    return namespace[name], src


def first_order(op: Op) -> Built:
    """``sum readout * op(args)`` as a Model, and the same through torch's operator."""
    key = (op.name, "first")
    if key in _CACHE:
        return _CACHE[key]
    blocks, entries = definition(op)
    r = sp.Symbol(READOUT, real=True) if len(entries) == 1 else matrix(READOUT, len(entries))
    rs = [r] if len(entries) == 1 else list(r)
    loss = sp.Add(*[a * b for a, b in zip(rs, entries)])
    params = {blocks[a.name]: _domain(a) for a in op.args if a.param}
    inputs = {blocks[a.name]: _domain(a) for a in op.args if not a.param}
    inputs[r] = Normal()
    model = Model(f"ops_{op.name}", loss, params=params, inputs=inputs,
                  description=f"{op.call}: sum of a random read-out times every output entry")
    names = [a.name for a in op.args] + [READOUT]
    fn, src = _fn(op.name, names, [f"out = {op.call}",
                                   f"return ({READOUT} * out.reshape({READOUT}.shape)).sum()"])
    built = Built(model, fn, src, len(entries))
    _CACHE[key] = built
    return built


def _runnable(e: sp.Expr) -> sp.Expr:
    """Heaviside from differentiating Max as Piecewise, DiracDelta as 0: torch cannot
    differentiate torch.heaviside, and symgrad's own torch program must run. Only exact kinks
    change, and the second order is excluded there (a kink of the first-order run). The signs
    from differentiating Abs stay signs: two-sided kinks of one argument (``symgrad.tensor.links``:
    a tie takes one consistent side) whose products the derivation writes linearly
    (``symgrad.tensor.ties``), so that at a tie where the function is smooth (logaddexp's
    x = y) the second derivative is the true one, not ``sign(0)**2 = 0``."""
    e = e.replace(lambda a: isinstance(a, sp.DiracDelta), lambda a: sp.S.Zero)
    return e.replace(lambda a: isinstance(a, sp.Heaviside),
                     lambda a: sp.Piecewise((1, a.args[0] > 0), (0, a.args[0] < 0),
                                            (sp.Rational(1, 2), True)))


def direction_name(arg: Arg) -> str:
    return f"v_{arg.name}"


def second_order(op: Op) -> Built | None:
    """The Hessian-vector model ``sum_j v_j dL/dp_j``; None where the Hessian is zero."""
    key = (op.name, "hvp")
    if key in _CACHE:
        return _CACHE[key]
    first = first_order(op)
    m = first.model
    leaves = {s.name: s for s in m.leaves}
    blocks, _ = definition(op)
    terms, dirs = [], {}
    for a in op.params:
        d = _block(Arg(direction_name(a), a.shape))
        dirs[a.name] = d
        ps = [blocks[a.name]] if not a.shape else list(blocks[a.name])
        vs = [d] if not a.shape else list(d)
        for p, v in zip(ps, vs):
            terms.append(v * sp.diff(m.loss, leaves[p.name]))
    loss = _runnable(sp.Add(*terms))
    if not (loss.free_symbols & {leaves[s.name] for a in op.params
                                 for s in ([blocks[a.name]] if not a.shape
                                           else list(blocks[a.name]))}):
        _CACHE[key] = None
        return None
    params = {blocks[a.name]: _domain(a) for a in op.args if a.param}
    inputs = {blocks[a.name]: _domain(a) for a in op.args if not a.param}
    readout = next(b for b in m.input_blocks if b.name == READOUT)
    r = (sp.Symbol(READOUT, real=True) if not readout.shape else matrix(READOUT, *readout.shape))
    inputs[r] = Normal()
    for d in dirs.values():
        inputs[d] = Normal()
    model = Model(f"ops_{op.name}_hvp", loss, params=params, inputs=inputs,
                  description=f"Hessian-vector product of {op.call}",
                  allow_unused=True)  # a linear parameter (addcmul's x): no Hessian row
    pnames = [a.name for a in op.params]
    names = [a.name for a in op.args] + [READOUT] + [direction_name(a) for a in op.params]
    call = ", ".join(f"{a.name}={a.name}" for a in op.args)
    body = [f"loss = _first({call}, {READOUT}={READOUT})",
            f"grads = torch.autograd.grad(loss, [{', '.join(pnames)}], create_graph=True)",
            f"hv = sum((g * v).sum() for g, v in zip(grads, [{', '.join(direction_name(a) for a in op.params)}]))",
            f"return hv + 0 * sum(p.sum() for p in [{', '.join(pnames)}])"]
    src = f"def {op.name}_hvp({', '.join(names)}):\n" + "".join(f"    {b}\n" for b in body)
    namespace = {"torch": torch, "F": F, "_first": first.torch_fn}
    exec(compile(src, f"<symgrad ops {op.name}_hvp>", "exec"), namespace)  # noqa: S102
    built = Built(model, namespace[f"{op.name}_hvp"], first.source + "\n" + src, first.out_size)
    _CACHE[key] = built
    return built
