"""The exact gradient of a tensor program by reverse accumulation; the result is again a program.

One vector-Jacobian rule per op (``VJP``): elementwise maps take their local derivatives from
``sympy.diff`` of the map's expression (exact constants; computed by ``localdiff.diff``, the
same expression without sympy's per-node zero tests), contractions are adjoint contractions
with their subscripts rearranged, reductions / layout ops broadcast or permute the cotangent back,
take and scatter_add are each other's adjoint. No Jacobian is ever materialised.

>>> import symgrad.tensor as st
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> L = st.sum_(st.tanh(st.einsum("ij,j->i", W, x)))
>>> g = gradient(L, [W])
>>> g[0].shape
(2, 3)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import sympy as sp

from ..errors import SymgradError
from .localdiff import diff
from .program import (X, Node, add_all, broadcast, const, einsum, map_, reshape, scatter_add,
                      sum_, take, topological, transpose)
from .rename import rename
from .ties import linear_ties
from .torch_vjp import torch_vjp


def merge_powers(expr: sp.Expr) -> sp.Expr:
    """``y*x**y/x`` (sympy's d/dx x**y) as ``y*x**(y - 1)``: in every Mul, powers of one base
    with a symbolic exponent and an integer one are merged, so no program forms 0/0 where the
    derivative exists (x = 0, y = 2: 0 * 2 / 0; |w|**p / |w| at w = 0)."""
    def merge(m: sp.Expr) -> sp.Expr:
        groups: dict = {}
        for f in m.args:
            b, e = f.as_base_exp()
            groups.setdefault(b, []).append((f, e))
        changed, factors = False, []
        for b, fs in groups.items():
            symbolic = [e for _, e in fs if not e.is_number]
            integers = [e for _, e in fs if e.is_Integer]
            if (b.is_number or not symbolic or not integers
                    or len(symbolic) + len(integers) != len(fs)):
                factors += [f for f, _ in fs]
                continue
            factors.append(sp.Pow(b, sp.Add(*symbolic, *integers)))
            changed = True
        return sp.Mul(*factors) if changed else m
    if not expr.has(sp.Pow):
        return expr
    return expr.replace(lambda e: e.is_Mul, merge)


def _unbroadcast(g: Node, shape: tuple[int, ...]) -> Node:
    """Sum ``g`` over the axes an operand of ``shape`` was broadcast along (size 1)."""
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape)) if a == 1 and b != 1)
    if not axes:
        return g
    return reshape(sum_(g, axes), shape)


LOCAL_ENTRIES = 4096  # the most derived bodies kept (oldest dropped first)
_LOCAL: dict = {}  # (map body, argument i, arity) -> (g * d body, operands d reads) or None


def _local(expr: sp.Expr, i: int, k: int) -> tuple[sp.Expr, tuple[int, ...]] | None:
    """The VJP body ``X[0] * d(expr)/dX[i]`` over (g, the operands it reads), and which
    operands those are; None where the derivative is 0. Derived once per distinct body
    (the key is the sympy body itself, exact): the many steps of a scalar model that share a
    body share it. At most ``LOCAL_ENTRIES`` are kept; a dropped one is derived again, the
    same (a pure function of the key)."""
    key = (expr, i, k)
    if key in _LOCAL:
        return _LOCAL[key]
    d = merge_powers(diff(expr, X[i]))  # no 0/0 where the derivative exists (x**y)
    d = linear_ties(d)  # sign(a)**2 as 1: a tie is the mean of its sides (order 2 at x = y)
    if d == 0:
        found = None
    else:
        free = d.free_symbols  # once: a walk of the whole body (HVP bodies: thousands of ops)
        used = tuple(j for j in range(k) if X[j] in free)
        shift = {X[j]: X[m + 1] for m, j in enumerate(used)}
        found = (X[0] * rename(d, shift), used)
    if len(_LOCAL) >= LOCAL_ENTRIES:
        del _LOCAL[next(iter(_LOCAL))]
    _LOCAL[key] = found
    return found


@functools.lru_cache(maxsize=LOCAL_ENTRIES)
def _torch_local(expr: sp.Expr, i: int, k: int, used: tuple[int, ...]) -> sp.Expr | None:
    """``torch_vjp.torch_vjp`` of a body, once per distinct body (as ``_local``): torch's VJP
    body or None."""
    return torch_vjp(expr, i, used, finish=lambda d: linear_ties(merge_powers(d)))


@dataclass(frozen=True)
class _Deferred:
    """A VJP map's ``attrs["torch_vjp"]`` not yet worked out: ``_torch_local``'s arguments."""

    key: tuple


def torch_body(node: Node) -> sp.Expr | None:
    """A VJP map's body as torch computes it (``attrs["torch_vjp"]``: ``tensor/torch_vjp``),
    None where its body holds no op of the table. Worked out on first read and kept: only the
    bound and the enclosure read it, and a sided program's gradient (``tensor/sided``) is
    bounded only where a sample reaches a kink, so most of its maps are never searched."""
    body = node.attrs.get("torch_vjp")
    if isinstance(body, _Deferred):
        body = node.attrs["torch_vjp"] = _torch_local(*body.key)
    return body


def _vjp_map(node: Node, g: Node, need: Sequence[bool] | None = None) -> list:
    """``need[i]`` False: operand i's cotangent is not wanted (an input, a kink selector: no
    path to a parameter), so its body is not differentiated at all (None, as for a constant)."""
    expr = node.attrs["expr"]
    out = []
    for i, a in enumerate(node.args):
        wanted = differentiable(a) and (need is None or need[i])
        found = _local(expr, i, len(node.args)) if wanted else None
        if found is None:
            out.append(None)
            continue
        local, used = found  # g * d as a map of (g, the operands d reads)
        vjp = map_(local, g, *[node.args[j] for j in used])
        # an op-table op in the body: the VJP as torch computes it, with the op's own backward
        # formula (tensor/torch_vjp), for the bound (tensor/mapbound.torch_form) and the
        # enclosure (rigorous/torch_forms); searched for when first read (``torch_body``)
        vjp.attrs["torch_vjp"] = _Deferred((expr, i, len(node.args), used))
        out.append(_unbroadcast(vjp, a.shape))
    return out


def _vjp_einsum(node: Node, g: Node) -> list:
    ins, out = node.attrs["spec"].split("->")
    subs = ins.split(",")
    grads = []
    for i, a in enumerate(node.args):
        if not differentiable(a):
            grads.append(None)
            continue
        others = [(s, o) for j, (s, o) in enumerate(zip(subs, node.args)) if j != i]
        have = set(out).union(*[set(s) for s, _ in others])
        target = "".join(c for c in subs[i] if c in have)
        spec = ",".join([out] + [s for s, _ in others]) + "->" + target
        d = einsum(spec, g, *[o for _, o in others])
        if target != subs[i]:  # letters only operand i had (a sum over them): broadcast back
            kept = tuple(n if c in have else 1 for c, n in zip(subs[i], a.shape))
            d = broadcast(reshape(d, kept), a.shape)
        grads.append(d)
    return grads


def _vjp_sum(node: Node, g: Node) -> list:
    x = node.args[0]
    kept = tuple(1 if i in node.attrs["axes"] else n for i, n in enumerate(x.shape))
    return [broadcast(reshape(g, kept), x.shape)]


def _vjp_max(node: Node, g: Node) -> list:
    """The cotangent to the maximal entries, a tie shared evenly (as torch.amax): the exact
    derivative off ties; at a tie (or one within rounding) the oracle's kink sides decide
    (``symgrad.tensor.kinks``)."""
    x = node.args[0]
    kept = tuple(1 if i in node.attrs["axes"] else n for i, n in enumerate(x.shape))
    top = map_(sp.Heaviside(X[0] - X[1], 1), x, reshape(node, kept))
    count = reshape(sum_(top, node.attrs["axes"]), kept)
    return [map_(X[0] * X[1] / X[2], reshape(g, kept), top, count)]


def _vjp_reshape(node: Node, g: Node) -> list:
    return [reshape(g, node.args[0].shape)]


def _vjp_transpose(node: Node, g: Node) -> list:
    perm = node.attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
    return [transpose(g, inverse)]


def _vjp_broadcast(node: Node, g: Node) -> list:
    return [_unbroadcast(g, node.args[0].shape)]


def _vjp_take(node: Node, g: Node) -> list:
    table, ids = node.args
    return [scatter_add(g, ids, table.shape[0]), None]


def _vjp_scatter_add(node: Node, g: Node) -> list:
    return [take(g, node.args[1]), None]


def _none(node: Node, g: Node) -> list:
    return [None] * len(node.args)


VJP: dict[str, Callable[[Node, Node], list]] = {
    "map": _vjp_map, "einsum": _vjp_einsum, "sum": _vjp_sum, "max": _vjp_max,
    "stop": _none, "onehot": _none, "reshape": _vjp_reshape, "transpose": _vjp_transpose,
    "broadcast": _vjp_broadcast, "take": _vjp_take, "scatter_add": _vjp_scatter_add,
}


def differentiable(node: Node) -> bool:
    return not node.integer and node.op not in ("const", "onehot", "stop")


@dataclass(frozen=True)
class Gradient:
    """A loss, its gradient nodes (one per parameter) and the whole program's nodes."""

    loss: Node
    params: tuple[Node, ...]
    grads: tuple[Node, ...]

    @property
    def outputs(self) -> list[Node]:
        return [self.loss, *self.grads]

    @property
    def nodes(self) -> list[Node]:
        return topological(self.outputs)


@dataclass
class AdjointSteps:
    """The reverse pass of one loss, node by node.

    ``total``: node id -> its adjoint δ (dL/d node, same shape); ``parts``: (node id, operand
    index) -> that operand's contribution from this node's VJP rule; ``uses``: node id -> the
    number of contributions its δ adds up; ``live``: ids of nodes on a path from a parameter."""

    loss: Node
    total: dict[int, Node] = field(default_factory=dict)
    parts: dict[tuple[int, int], Node] = field(default_factory=dict)
    uses: dict[int, int] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)


def adjoint_steps(loss: Node, params: Sequence[Node]) -> AdjointSteps:
    """The reverse accumulation of ``loss``, every adjoint kept: the parameters' totals are
    ``gradient``, the rest is what ``explain`` reads (``symgrad.tensor.steps``).

    Arguments:
        loss: a scalar node.
        params: the parameter leaves.
    Returns:
        An ``AdjointSteps`` (the parameters' totals are the gradient).
    """
    if loss.shape != ():
        raise SymgradError(f"the loss must be a scalar (shape ()), got shape {loss.shape}; "
                           "reduce it with st.sum_ or st.mean")
    order = topological([loss])
    wanted = {p.id for p in params}
    out = AdjointSteps(loss)
    for n in order:  # nodes on a path from a parameter to the loss
        if n.id in wanted or (differentiable(n) and any(a.id in out.live for a in n.args)):
            out.live.add(n.id)
    pending: dict[int, list[Node]] = {loss.id: [const(1.0, "seed")]}
    for node in reversed(order):
        got = pending.pop(node.id, None)
        if not got:
            continue
        g = add_all(got)
        out.total[node.id], out.uses[node.id] = g, len(got)
        if node.is_leaf:
            continue
        rule = VJP[node.op]
        if rule is _vjp_map:  # a map body is differentiated only by the operands that matter
            grads = _vjp_map(node, g, [a.id in out.live for a in node.args])
        else:  # any other rule (or one put in VJP's place, as a test's planted wrong rule)
            grads = rule(node, g)
        for i, (a, ga) in enumerate(zip(node.args, grads)):
            if ga is not None and a.id in out.live:
                out.parts[(node.id, i)] = ga
                pending.setdefault(a.id, []).append(ga)
    return out


def gradient(loss: Node, params: Sequence[Node]) -> list[Node]:
    """d loss / d param for each of ``params``, as tensor program nodes.

    Arguments:
        loss: a scalar node (shape ``()``).
        params: leaf nodes to differentiate with respect to.
    Returns:
        One node per parameter with that parameter's shape (a zero map where the loss does not
        depend on it).
    """
    total = adjoint_steps(loss, params).total
    return [total[p.id] if p.id in total else map_(X[0] * 0, p) for p in params]
