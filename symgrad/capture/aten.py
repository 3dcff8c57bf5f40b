"""The one table of captured ATen ops: ``TABLE[op](a, shape) -> value``, its tensor-program
lowering. ``a`` holds the op's arguments by their schema names (defaults filled in), already
captured (``symgrad.capture.values``); ``shape`` is the shape torch.export recorded for the
output. The supported ops are the table's keys; ops whose arguments are all known (constants,
integer inputs) are not looked up: the walk runs them in torch.

Elementwise functions come from the op table (``symgrad.optable`` via ``symgrad.tensor``'s
``ELEMENTWISE``); no formula is written here that the op table holds.

>>> aten = torch.ops.aten
>>> aten.mm.default in TABLE, aten.cumsum.default in TABLE
(True, True)
"""

from __future__ import annotations

from typing import Any, Callable

import sympy as sp
import torch
from sympy.codegen.cfunctions import expm1

from ..errors import SymgradError
from ..functions import ROWS as FUNCTION_ROWS
from ..optable import SELU_ALPHA, SELU_SCALE
from ..tensor import ops as st_ops
from ..tensor.ops import ELEMENTWISE
from ..tensor.program import (X, Node, broadcast, einsum, max_, reshape,
                              stop_gradient, sum_, transpose)
from .activations import ACTIVATION_ROWS
from .composites import COMPOSITE_ROWS
from .conv import CONV_ROWS
from .index import INDEX_ROWS
from .layout import LAYOUT_ROWS
from .norms import NORM_ROWS
from .predicates import PREDICATE_ROWS
from .route import ROUTE_ROWS
from .scan import SCAN_ROWS
from .steps import STEP_ROWS
from .stops import stop_op
from .values import (Masked, Selection, add, elementwise, named as _named, node, number,
                     where)

aten = torch.ops.aten


def _dims(dim, ndim: int) -> tuple[int, ...]:
    """A dim argument (None, [], int or list) as sorted axes; empty means all."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return tuple(range(ndim))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return tuple(sorted(d % ndim for d in dims)) if ndim else ()


# ------------------------------------------------------------------------------ lowerings
def _binary(expr: sp.Expr) -> Callable:
    return _named(f"map {expr}", lambda a, shape: elementwise(expr, a["self"], a["other"]))


def _add(sign: int) -> Callable:
    def lower(a, shape):
        if sign > 0:  # an additive -inf mask makes a Masked value (values.add)
            return add(a["self"], a["other"], a["alpha"])
        return elementwise(X[0] - number(a["alpha"]) * X[1], a["self"], a["other"])
    return _named(f"map x0 {'+' if sign > 0 else '-'} alpha*x1", lower)


def _rsub(a, shape) -> Node:
    """map x1 - alpha*x0"""
    return elementwise(X[1] - number(a["alpha"]) * X[0], a["self"], a["other"])


def _unary(expr: sp.Expr) -> Callable:
    return _named(f"map {expr}", lambda a, shape: elementwise(expr, a["self"]))


def _pow_scalar(a, shape) -> Node:
    """map x0**k (k the scalar exponent, exact)"""
    return elementwise(X[0] ** number(a["exponent"]), a["self"])


def _pow_tensor(a, shape) -> Node:
    """map x0**x1"""
    return elementwise(X[0] ** X[1], a["self"], a["exponent"])


def _scalar_pow(a, shape) -> Node:
    """map c**x0 (c the scalar base, exact)"""
    return elementwise(number(a["self"]) ** X[0], a["exponent"])


def _table_op(name: str) -> Callable:
    """An op of the op table (symgrad.optable), by its public name."""
    return _named(f"op table: {name}",
                  lambda a, shape: ELEMENTWISE[name](node(a["self"], name)))


def _like(fill: Any) -> Callable:
    def lower(a, shape) -> torch.Tensor:
        value = a.get("fill_value", fill)
        return torch.full(shape, value, dtype=a.get("dtype") or torch.float64)
    return _named(f"a known array of {fill if fill is not None else 'fill_value'} (no "
                  "derivative)", lower)


def _gelu(a, shape) -> Node:
    """op table: gelu (approximate="none" or "tanh")"""
    return ELEMENTWISE["gelu"](node(a["self"], "gelu"), a.get("approximate") or "none")


_SELU = (float(SELU_ALPHA), float(SELU_SCALE), 1.0)  # F.selu's aten.elu(alpha, scale) in float64


def _elu(a, shape) -> Node:
    """op table: elu (alpha = 1) or selu (its constants); else map scale*Piecewise(...)
    (x0 if x0 > 0, else alpha expm1(input_scale x0)). F.celu never reaches here: torch.export
    decomposes it to expm1, gt and where."""
    params = tuple(float(a.get(k, 1.0)) for k in ("alpha", "scale", "input_scale"))
    if params == (1.0, 1.0, 1.0):
        return ELEMENTWISE["elu"](node(a["self"], "elu"))
    if params == _SELU:  # the entry's 32-digit constants: within 0.2 ULP of torch's floats
        return ELEMENTWISE["selu"](node(a["self"], "selu"))
    alpha, scale, input_scale = (number(a.get(k, 1.0)) for k in ("alpha", "scale", "input_scale"))
    expr = sp.Piecewise((scale * X[0], X[0] > 0),
                        (scale * alpha * expm1(input_scale * X[0]), True))
    return elementwise(expr, a["self"])


def _hardtanh(a, shape) -> Node:
    """map Min(Max(x0, min_val), max_val) (a kink at each bound; nn.Hardtanh, nn.ReLU6)"""
    low, high = (number(a.get(k, d)) for k, d in (("min_val", -1.0), ("max_val", 1.0)))
    return elementwise(sp.Min(sp.Max(X[0], low), high), a["self"])


def _clamp(a, shape) -> Node:
    """map Min(Max(x0, min), max) (a kink at each bound; a tensor bound is an operand)"""
    expr, operands = X[0], [a["self"]]
    for key, f in (("min", sp.Max), ("max", sp.Min)):
        bound = a.get(key)
        if bound is None:
            continue
        if isinstance(bound, torch.Tensor) and bound.dim() == 0 or not isinstance(
                bound, (torch.Tensor, Node)):
            expr = f(expr, number(bound))
        else:  # clamp.Tensor with a tensor bound
            expr = f(expr, X[len(operands)])
            operands.append(bound)
    return elementwise(expr, *operands)


def _div(a, shape) -> Node:
    """map x0/x1 (rounding_mode=None)"""
    if a.get("rounding_mode") is not None:
        raise SymgradError(f"capture: div with rounding_mode={a['rounding_mode']!r} has no "
                           "derivative; it is supported only on constants")
    other = a["other"]
    if not isinstance(other, Node) and not torch.as_tensor(other).any():  # (newuser13)
        raise SymgradError(ZERO_DIVISOR)
    return elementwise(X[0] / X[1], a["self"], other)


ZERO_DIVISOR = (  # a cross-entropy with every target ignore_index read "constant zoo is not a
    #               real number" from deep in the bound (newuser13)
    "capture: a division by an exact 0: the divisor is 0 at the example and held there (it "
    "depends only on targets, masks or shapes), so the loss is inf or NaN at every point "
    "checked and has no gradient; e.g. a mean over no entries: every target equal to "
    "ignore_index, or a mask with no True; give an example with at least one, or guard the "
    "count (.clamp(min=1))")


def _mm(spec: str) -> Callable:
    return _named(f"einsum {spec}", lambda a, shape: einsum(spec, node(a["self"], "matmul"),
                                                            node(a["mat2"], "matmul")))


def _addmm(a, shape) -> Node:
    """einsum ij,jk->ik, then map beta*x0 + alpha*x1"""
    prod = einsum("ij,jk->ik", node(a["mat1"], "addmm"), node(a["mat2"], "addmm"))
    return elementwise(number(a["beta"]) * X[0] + number(a["alpha"]) * X[1], a["self"], prod)


def _permute(a, shape) -> Node:
    """transpose"""
    x = node(a["self"], "permute")
    return transpose(x, [d % x.ndim for d in a["dims"]])


def _transpose(a, shape) -> Node:
    """transpose (two axes swapped)"""
    x = node(a["self"], "transpose")
    if x.ndim < 2:
        return x
    perm = list(range(x.ndim))
    i, j = a.get("dim0", 0) % x.ndim, a.get("dim1", 1) % x.ndim
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(x, perm)


def _reshape(a, shape) -> Node:
    """reshape (to the shape export recorded)"""
    return reshape(node(a["self"], "reshape"), shape)


def _identity(a, shape) -> Any:
    """the operand itself"""
    return a["self"]


def _expand(a, shape) -> Node | Selection:
    """reshape, then broadcast (sort's / topk's indices to their own shape: themselves)"""
    if isinstance(a["self"], Selection) and a["self"].shape == tuple(shape):
        return a["self"]  # (take_along_dim expands its indices to the broadcast shape)
    x = node(a["self"], "expand")
    return broadcast(reshape(x, (1,) * (len(shape) - x.ndim) + x.shape), shape)


def _reduce(kind: str) -> Callable:
    def lower(a, shape) -> Node:
        x = node(a["self"], kind)
        axes = _dims(a.get("dim"), x.ndim)
        keep = bool(a.get("keepdim", False))
        if kind == "sum":
            return sum_(x, axes, keepdims=keep)
        if kind == "mean":
            return st_ops.mean(x, axes, keepdims=keep)
        return max_(x, axes, keepdims=keep)
    return _named(f"{kind} over the dims (keepdim)" if kind != "max"
                  else "max reduction (ties are kinks)", lower)


def _var(a, shape) -> Node:
    """mean, then sum of squared deviations / (n - correction)"""
    x = node(a["self"], "var")
    axes = _dims(a.get("dim"), x.ndim)
    n = 1
    for d in axes:
        n *= x.shape[d]
    correction = 1 if a.get("correction") is None else a["correction"]
    sq = elementwise((X[0] - X[1]) ** 2, x, st_ops.mean(x, axes, keepdims=True))
    ss = sum_(sq, axes, keepdims=bool(a.get("keepdim")))
    return elementwise(X[0] / (n - number(correction)), ss)


def _max_dim(a, shape) -> tuple:
    """max reduction (the values; the indices are not captured)"""
    x = node(a["self"], "max")
    return max_(x, a["dim"], keepdims=bool(a.get("keepdim"))), None  # indices: not captured


def _softmax(log: bool) -> Callable:
    def lower(a, shape) -> Node:
        x, dim = a["self"], a["dim"]
        if isinstance(x, Masked):
            if log:
                raise SymgradError("capture: log_softmax of a -inf fill is not supported")
            return st_ops.softmax(x.node, dim, mask=x.keep)
        return (st_ops.log_softmax if log else st_ops.softmax)(node(x, "softmax"), dim)
    return _named(f"symgrad.tensor.{'log_softmax' if log else 'softmax'} (stopped max shift"
                  + (")" if log else "; a -inf fill is a mask)"), lower)


def _layer_norm(a, shape) -> tuple:
    """mean, biased variance, map (x - mu)/sqrt(var + eps), weight, bias"""
    x = node(a["input"], "layer_norm")
    k = len(a["normalized_shape"])
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = st_ops.mean(x, axes, keepdims=True)
    xc = x - mu
    var = st_ops.mean(elementwise(X[0] ** 2, xc), axes, keepdims=True)
    y = elementwise(X[0] / sp.sqrt(X[1] + number(a["eps"])), xc, var)
    if a.get("weight") is not None:
        y = elementwise(X[0] * X[1], y, a["weight"])
    if a.get("bias") is not None:
        y = elementwise(X[0] + X[1], y, a["bias"])
    return y, None, None  # the saved mean / rstd: not captured


def _where(a, shape) -> Any:
    """Piecewise on a comparison; exact 0/1 blend on a known mask; a -inf fill: a mask"""
    return where(a["condition"], a["self"], a["other"])


def _to_copy(a, shape) -> Any:
    """the operand itself (a float dtype change: the run has one dtype)"""
    dtype = a.get("dtype")
    if dtype is not None and not dtype.is_floating_point:
        raise SymgradError(f"capture: a float value converted to {dtype} has no derivative")
    return a["self"]


def _copy(a, shape) -> Any:
    """src broadcast to self's shape (x[i] = v: self's values there overwritten)"""
    src = a["src"]  # (newuser10: b[0] = 0 was refused)
    if isinstance(src, torch.Tensor):  # a known value (b[0] = 0): a known float array
        return torch.broadcast_to(src, shape).to(torch.float64).clone()
    return _expand({"self": src}, shape)


def _assert(a, shape) -> None:
    """no value (a dtype/device assertion torch.export keeps from a .to())"""
    return None


def _stop(a, shape) -> Node:
    """stop_gradient (a user's, its value used: .detach(), .data, no_grad; ``stops``)"""
    return stop_gradient(node(a["self"] if "self" in a else a["x"], "detach"), user=True)


def _function_rows() -> dict[Any, Callable]:
    """aten.<f>.default for each one-argument sympy function of ``symgrad.functions`` (sin,
    expm1, log1p, erf, ...): map f(x0); the rows below (the op table's) take precedence."""
    out = {}
    for r in FUNCTION_ROWS:
        if isinstance(r.key, type) and r.bound != "step" and r.key not in (sp.Max, sp.Min):
            op = getattr(getattr(aten, r.name.lower(), None), "default", None)
            if op is not None:
                out[op] = _unary(r.key(X[0]))
    return out


TABLE: dict[Any, Callable] = {
    **_function_rows(),
    aten.add.Tensor: _add(1), aten.add.Scalar: _add(1),
    aten.sub.Tensor: _add(-1), aten.sub.Scalar: _add(-1),
    aten.rsub.Scalar: _rsub,
    aten.mul.Tensor: _binary(X[0] * X[1]), aten.mul.Scalar: _binary(X[0] * X[1]),
    aten.div.Tensor: _div, aten.div.Scalar: _div, aten.div.Tensor_mode: _div,
    aten.maximum.default: _binary(sp.Max(X[0], X[1])),
    aten.minimum.default: _binary(sp.Min(X[0], X[1])),
    aten.pow.Tensor_Scalar: _pow_scalar, aten.pow.Tensor_Tensor: _pow_tensor,
    aten.pow.Scalar: _scalar_pow,
    aten.neg.default: _unary(-X[0]),
    aten.sqrt.default: _unary(sp.sqrt(X[0])), aten.rsqrt.default: _unary(1 / sp.sqrt(X[0])),
    aten.reciprocal.default: _unary(1 / X[0]),
    aten.exp.default: _table_op("exp"), aten.log.default: _table_op("log"),
    aten.tanh.default: _table_op("tanh"), aten.sigmoid.default: _table_op("sigmoid"),
    aten.relu.default: _table_op("relu"), aten.silu.default: _table_op("silu"),
    aten.mish.default: _table_op("mish"), aten.gelu.default: _gelu,
    aten.elu.default: _elu,
    aten.hardtanh.default: _hardtanh,
    aten.clamp.default: _clamp, aten.clamp_min.default: _clamp, aten.clamp_max.default: _clamp,
    aten.clamp.Tensor: _clamp,
    aten.where.self: _where,
    aten.full_like.default: _like(None), aten.zeros_like.default: _like(0),
    aten.ones_like.default: _like(1),
    aten.mm.default: _mm("ij,jk->ik"), aten.bmm.default: _mm("bij,bjk->bik"),
    aten.addmm.default: _addmm,
    aten.permute.default: _permute, aten.t.default: _transpose,
    aten.transpose.int: _transpose,
    aten.view.default: _reshape, aten._unsafe_view.default: _reshape,
    aten.reshape.default: _reshape, aten.unsqueeze.default: _reshape,
    aten.squeeze.default: _reshape, aten.squeeze.dim: _reshape, aten.squeeze.dims: _reshape,
    aten.expand.default: _expand,
    aten.clone.default: _identity, aten.alias.default: _identity,
    aten._to_copy.default: _to_copy, aten.detach.default: _stop, aten.copy.default: _copy,
    stop_op._opoverload: _stop,
    aten._assert_tensor_metadata.default: _assert,
    aten.sum.dim_IntList: _reduce("sum"), aten.sum.default: _reduce("sum"),
    aten.mean.dim: _reduce("mean"), aten.mean.default: _reduce("mean"),
    aten.amax.default: _reduce("max"), aten.max.default: _reduce("max"),
    aten.max.dim: _max_dim, aten.var.correction: _var,
    aten._softmax.default: _softmax(False), aten._log_softmax.default: _softmax(True),
    aten.native_layer_norm.default: _layer_norm,
    **INDEX_ROWS,  # embedding, gather, slice, cat... (symgrad.capture.index)
    **LAYOUT_ROWS,  # repeat, constant pad, upsample, embedding bag (symgrad.capture.layout)
    **COMPOSITE_ROWS,  # softplus, logsigmoid, BCE-with-logits (symgrad.capture.composites)
    **CONV_ROWS,  # convolution, batch norm, pooling (symgrad.capture.conv)
    **ROUTE_ROWS,  # topk, scatter of its picks (symgrad.capture.route)
    **NORM_ROWS,  # vector norms, group norm, pdist, cdist (symgrad.capture.norms)
    **PREDICATE_ROWS,  # comparisons, ==, isnan, logical_not (symgrad.capture.predicates)
    **SCAN_ROWS,  # sign, cumsum, sort (symgrad.capture.scan)
    **ACTIVATION_ROWS,  # leaky relu, eval RReLU (symgrad.capture.activations)
    **STEP_ROWS,  # floor, ceil, trunc, round (symgrad.capture.steps)
}


def describe(op: Any) -> str:
    """One line on how ``op`` is lowered (the report of supported ops)."""
    fn = TABLE[op]
    return getattr(fn, "what", None) or (fn.__doc__ or fn.__name__).strip().splitlines()[0]


def lowering(op: Any) -> Callable | None:
    """The lowering of ``op`` (an ATen OpOverload), or None when it is not supported."""
    return TABLE.get(op)
