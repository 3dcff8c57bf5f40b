"""The rounding-error bound of one ``map`` node (``symgrad.tensor.bound``'s map rules):
its body's running bound (``symgrad.rounding.error_source``), compiled once per body, in
the worst case (``b_map``) and the probabilistic scale (``s_map``).

>>> import numpy as np
>>> from symgrad.tensor.program import X
>>> fn = map_bound_fn(X[0] * X[1], 2)  # |x1| E0 + |x0| E1 + the product's own rounding
>>> float(fn(np.array(2.0), np.array(3.0), np.array(1.0), np.array(0.0)))
9.0
"""

from __future__ import annotations

import ast
import functools
import gc
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import numpy as np
import sympy as sp

from ..backends.numpy import target
from ..codegen import Printer, build
from ..parallel import each, serial
from ..precise.walk import blocks
from ..rounding import NEAR_TIE, error_source
from .derive import torch_body
from .fused import live as alive, map_pair
from .memorder import cut, in_order, memory_order, strides_of
from .program import X
from .quadrature import hypot

_CACHE: dict = {}
# the band near a Max/Min tie where computed arguments may cross (``rounding.NEAR_TIE``), set by
# ``symgrad.tensor.bound.evaluate_bound`` for one walk (its ``tie``: the compared dtypes' band)
TIE: ContextVar[float] = ContextVar("symgrad_tie_band", default=NEAR_TIE)


SHARED_UP_TO = 1 << 20  # entries of a map whose bound forms its repeated subterms once: each
#   shared term lives to the end of the call (GELU's VJP: 32 of them; at 1024 tokens, 3.1M
#   entries, the call's transient 241 -> 697 MB), so a larger map keeps the printed form


TINY = 1 << 12  # entries (all samples) of a map whose bound forms its repeated subterms once
#   only where its source is long (``SHARE_TINY_FROM``): on a few thousand entries forming
#   them again costs less than ``common_terms``' parse (fuzz 300: 483 bodies of 20 entries,
#   0.57 CPU s of parsing for 0.04 s of evaluation saved)
SHARE_TINY_FROM = 4096  # characters from which a tiny map's bound source is shared


def sharing(size: int) -> bool | None:
    """``map_bound_fn``'s ``shared`` for a map of ``size`` entries: None (by its source's
    length) up to ``TINY``, then True up to ``SHARED_UP_TO``.

    >>> sharing(20), sharing(1 << 16), sharing(1 << 21)
    (None, True, False)
    """
    return None if size <= TINY else size <= SHARED_UP_TO


def map_bound_fn(expr: sp.Expr, k: int, shared: bool | None = True) -> Callable:
    """``f(values..., errors...) -> E`` of one map expression, compiled once (``shared``: its
    repeated subterms formed once, ``common_terms``; None: only where its source is long,
    ``SHARE_TINY_FROM``; else each where it is printed: the same bits)."""
    key = (expr, k, shared)
    fn = _CACHE.get(key)
    return fn if fn is not None else _compiled(key)


@serial  # sympy's printing and the compile, one thread at a time (a block on a pool's thread)
def _compiled(key: tuple) -> Callable:
    expr, k, shared = key
    fn = _CACHE.get(key)
    if fn is None:
        names = {X[i]: f"a{i}" for i in range(k)}
        pr = Printer(target("float64"), names)
        err = {X[i]: f"e{i}" for i in range(k)}
        src = error_source(expr, pr, err)
        share = shared or (shared is None and len(src) >= SHARE_TINY_FROM)
        terms, src = common_terms(src) if share else ([], src)
        args = ", ".join([f"a{i}" for i in range(k)] + [f"e{i}" for i in range(k)])
        lines = [f"def mapbound({args}, tie={NEAR_TIE!r}):",
                 *(f"    {name} = {term}" for name, term in terms), f"    return {src}"]
        fn = build(lines, pr.t, pr, "mapbound")
        _CACHE[key] = fn
    return fn


_EAGER = (ast.BinOp, ast.UnaryOp, ast.Call, ast.Compare, ast.Subscript, ast.Attribute)


def common_terms(src: str) -> tuple[list[tuple[str, str]], str]:
    """``src`` (one generated expression) with each subexpression it computes more than once
    formed once: (name, source) of the shared terms in evaluation order, and the expression
    reading them. The running bound prints a subterm wherever a rule reads it (GELU's
    derivative: its tanh(...) 12 times, x ** 3 14 times); each shared term is the same
    operations on the same operands, so every value keeps its bits. Only eager, pure forms are
    shared (arithmetic, comparisons and calls of the generated code: numpy's functions, abs,
    where); a conditional or boolean form is never entered.

    >>> common_terms("abs(numpy.tanh(a0 * c1)) + numpy.tanh(a0 * c1) * e0")
    ([('s0', 'numpy.tanh(a0 * c1)')], 'abs(s0) + s0 * e0')
    """
    with _no_cycle_collection():
        return _common_terms(src)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused, then restored as it was: parsing a large bound
    (the op catalogue's softmax HVP maps: 0.7 MB of source, ~250K AST nodes, no cycles among
    them) allocates enough objects to start a full collection over the whole heap many times
    over (sympy's caches included): ``common_terms`` took 26 of the catalogue's fast subset's
    72 CPU s, ~6 with the collector paused."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_ABSENT = object()


@functools.lru_cache(maxsize=None)  # one entry per AST node class (a few dozen)
def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f for f in cls._fields if f != "ctx")


def _common_terms(src: str) -> tuple[list[tuple[str, str]], str]:
    tree = ast.parse(src, mode="eval")
    keys: dict[int, tuple] = {}  # id(node) -> (node, its structure's number): formed once
    numbers: dict[tuple, int] = {}  # a structure, its parts by number -> its number

    def key(node) -> int:
        """One number per structure (equal subtrees, equal numbers): the structure's tuple
        holds its parts' numbers, so a lookup hashes a few ints, not the whole subtree (the
        nested tuples were hashed and compared whole at each lookup)."""
        got = keys.get(id(node))
        if got is None:
            shape = [type(node).__name__]  # ast.iter_fields' fields, ctx aside, unrolled
            for f in _fields(type(node)):
                v = getattr(node, f, _ABSENT)
                if v is _ABSENT:
                    continue
                shape.append(key(v) if isinstance(v, ast.AST) else
                             tuple([key(x) if isinstance(x, ast.AST) else x for x in v])
                             if isinstance(v, list) else v)
            got = keys[id(node)] = (node, numbers.setdefault(tuple(shape), len(numbers)))
        return got[1]
    counts: Counter = Counter()

    def count(node) -> None:
        if isinstance(node, _EAGER):
            k = key(node)
            counts[k] += 1
            if counts[k] > 1:
                return  # its parts are counted once, with it (they are formed with it)
            for child in ast.iter_child_nodes(node):
                count(child)
    count(tree.body)
    names: dict[int, str] = {}
    shared: list[tuple[str, str]] = []

    class Share(ast.NodeTransformer):
        def visit(self, node):
            if not isinstance(node, _EAGER) or isinstance(node, ast.Attribute):
                return node  # a name, constant or attribute (numpy.tanh) is read as it is
            k = key(node)
            if k in names:
                return ast.Name(names[k], ast.Load())
            node = self.generic_visit(node)  # the shared terms inside it first
            if counts[k] > 1:
                names[k] = f"s{len(shared)}"
                shared.append((names[k], ast.unparse(node)))
                return ast.Name(names[k], ast.Load())
            return node
    body = Share().visit(tree.body)
    return shared, ast.unparse(body)


MAP_BLOCK = 1 << 22  # entries of a large map's bound formed at once (``by_blocks``): 32 MiB a
#   temporary; above GPT-2's 64-token logits (3.2M), whose E keeps its bits (a block's
#   strided views may take other numpy loops: 1-ulp differences in E, measured)


def by_blocks(rule: Callable, arrays: list, value) -> np.ndarray:
    """``rule(*arrays)`` (elementwise, NaN as inf) in one output of ``value``'s shape; a large
    map's in C-order blocks of ``MAP_BLOCK`` entries, each argument's block a view: the same
    arithmetic per entry, without the generated code's whole-size temporaries (a GPT's maps
    over its 1024 x 50257 logits: ~0.4 GB each)."""
    shape = np.shape(value)
    if int(np.prod(shape)) <= MAP_BLOCK:
        return _finite_or_inf(np.asarray(rule(*arrays), dtype=np.float64), value)
    out = np.empty(shape)

    def block(idx) -> None:  # the blocks on ``symgrad.parallel``'s threads: the same blocks
        part = [a if np.ndim(a) == 0 else np.broadcast_to(a, shape)[idx] for a in arrays]
        out[idx] = _finite_or_inf(np.asarray(rule(*part), dtype=np.float64), out[idx])
    each(block, blocks(shape, MAP_BLOCK))
    return out


def b_map(node, vals, errs, value, count):
    """The worst case E of a map: its body's running bound at the arguments' values and E
    (NaN, where the bound is undefined: inf)."""
    k = len(vals)
    fn = map_bound_fn(node.attrs["expr"], k, sharing(np.size(value)))
    with np.errstate(all="ignore"):
        return by_blocks(lambda *a: fn(*a, tie=TIE.get()) + torch_form(node, a[:k]),
                         [*vals, *errs], value)


def torch_form(node, vals):
    """What torch's own backward of an op-table op rounds beyond this VJP map's body (0 for
    any other map): the running bound of the VJP as torch computes it (``attrs["torch_vjp"]``,
    ``tensor/torch_vjp``: the op differentiated by its ``optable.Elementwise.torch_backward``,
    sigmoid's s (1 - s) from the rounded output s, which cancels where s saturates, so a
    user's correct torch.sigmoid loses digits symgrad's own derivative keeps), at the map's
    operands. Added to the map's own rounding: the allowance then holds for either way of
    computing the local derivative."""
    body = torch_body(node)
    if body is None:
        return 0.0
    k = len(vals)
    with np.errstate(all="ignore"):
        return map_bound_fn(body, k, sharing(max(map(np.size, vals), default=1)))(
            *vals, *([0.0] * k), tie=TIE.get())


STACK_UP_TO = 1 << 16  # entries of a map's stacked bound call (below: one call, not 1 + m)


def s_map(node, vals, sig, value, count, n0):
    """A map's arguments' errors in quadrature, weighted by |df/dx_i|, plus its own roundings:
    sqrt(sum_i (|df/dx_i| sigma_i)^2) + own. The first-order bound is linear in the argument
    errors, so each term is the map's bound with only sigma_i given, less the bound with none.
    A small map evaluates the bound with none and each sigma_i in one call, the variants
    stacked on a new leading axis (the same elementwise arithmetic, one pass of the generated
    code instead of 1 + m: per-call overhead is most of a small program's bound)."""
    k = len(vals)
    fn = map_bound_fn(node.attrs["expr"], k, sharing(np.size(value)))
    live = [i for i, s in enumerate(sig) if alive(s)]
    with np.errstate(all="ignore"):
        if live and (len(live) + 1) * np.size(value) <= STACK_UP_TO:
            out = _stacked(fn, vals, sig, live)
            own, parts = out[0], (out[q] - out[0] for q in range(1, len(live) + 1))
            return _finite_or_inf(_quadrature(own, parts) + torch_form(node, vals), value)

        def rule(*a):  # a: the values, then each live sigma
            v, s = a[:k], dict(zip(live, a[k:]))
            own = np.asarray(fn(*v, *([0.0] * k), tie=TIE.get()), dtype=np.float64)
            parts = (np.asarray(fn(*v, *[s[i] if j == i else 0.0 for j in range(k)],
                                   tie=TIE.get()),
                                dtype=np.float64) - own for i in live)
            return _quadrature(own, parts) + torch_form(node, v)
        return by_blocks(rule, [*vals, *[sig[i] for i in live]], value)


def _stacked(fn: Callable, vals, sig, live: list, worst=None, tie: float | None = None,
             zeros: bool = False) -> np.ndarray:
    """``fn`` at variants of the argument errors stacked on a new leading axis, in one call:
    the worst-case errors ``worst`` (when given), then no error, then each sigma_i alone for i
    in ``live`` (``zeros``: a worst-case error that is one 0 broadcast passed as 0.0)."""
    lead = 0 if worst is None else 1
    n = lead + 1 + len(live)
    errs = []
    for j, s in enumerate(sig):
        e = None if worst is None or zeros and _is_zero(worst[j]) else np.asarray(
            worst[j], dtype=np.float64)
        s = np.asarray(s, dtype=np.float64) if j in live else None
        if e is None and s is None:
            errs.append(0.0)
            continue
        x = np.zeros((n,) + np.broadcast_shapes(*(a.shape for a in (e, s) if a is not None)))
        if e is not None:
            x[0] = e
        if s is not None:
            x[lead + 1 + live.index(j)] = s
        errs.append(x)
    out = np.asarray(fn(*[np.asarray(v)[None] for v in vals], *errs,
                        tie=TIE.get() if tie is None else tie),
                     dtype=np.float64)
    return np.broadcast_to(out, (n,) + out.shape[1:]) if out.ndim else np.broadcast_to(out, (n,))


def _is_zero(e) -> bool:
    """Whether ``e`` is 0 or one 0 broadcast (a leaf's E): the variant passes the scalar 0.0,
    the same arithmetic without a stacked array of zeros."""
    return np.ndim(e) == 0 and e == 0 or (isinstance(e, np.ndarray) and e.size > 0 and not any(
        e.strides) and e.flat[0] == 0)


def _quadrature(own, parts):
    """sqrt(sum of the parts squared) + own (the parts summed in order; re-formed scaled
    where the squares would underflow: ``quadrature.hypot``)."""
    return hypot(parts) + own


def _finite_or_inf(x, value) -> np.ndarray:
    """``x`` broadcast to ``value``'s shape, NaN (the bound undefined) as inf."""
    x = np.broadcast_to(x, np.shape(value))
    return np.where(np.isnan(x), np.inf, x)


PAIR_BLOCK = 1 << 20  # stacked entries (variants x entries) of one block of a map's E and
#   sigma formed together (``both``): 8 MiB a stacked temporary, each value-only subterm formed
#   once per block for every variant (GELU's VJP at 1024 tokens: 3.1M entries, 4 variants)


def both(node, vals, errs, sig, value) -> tuple[np.ndarray, np.ndarray] | None:
    """E and sigma of a map from its compiled bound called once per block: the worst case's
    errors are one more stacked variant beside s_map's (none, each sigma_i alone), so every
    subterm of the values alone (GELU's tanh, softmax's exp) is formed once for all of them,
    and each repeated subterm once per block (``common_terms``: a block is at most
    ``PAIR_BLOCK`` stacked entries, so they stay small). None where ``b_map`` and ``s_map``
    must run apart to keep every bit (``_in_blocks``).

    E and sigma keep the bits and the memory order of the rules apart: a later sum reads them
    in memory order, so a C-ordered E where the rules gave a Fortran-ordered one (an einsum's
    transposed output read by ``x0 + x1``) moves its last bits. A small map (``STACK_UP_TO``)
    is one stacked call as before; a larger one goes in blocks only where every operand is in
    C order (its E, sigma then C-ordered either way)."""
    live = [i for i, s in enumerate(sig) if alive(s)]
    m = len(live)
    if (m + 2) * np.size(value) > STACK_UP_TO:
        return _in_blocks(node, vals, errs, sig, value, live)
    fn = map_bound_fn(node.attrs["expr"], len(vals), sharing(np.size(value)))
    with np.errstate(all="ignore"):
        out = _stacked(fn, vals, sig, live, worst=errs)
        total = _quadrature(out[1], (out[q] - out[1] for q in range(2, m + 2)))
        extra = torch_form(node, vals)
    return _finite_or_inf(out[0] + extra, value), _finite_or_inf(total + extra, value)


def _in_blocks(node, vals, errs, sig, value, live: list
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """``both`` of a larger map, in blocks of its shape in memory order, or None. Every
    operand must run its axes in one order (``memorder.memory_order``: C order, or an einsum's
    transposed output's), which numpy gives what it computes from them, so E and sigma are
    laid out in it too; a value must not repeat entries (a broadcast view: a block of it could
    meet another numpy loop than the whole). Up to ``MAP_BLOCK`` entries (where ``b_map``
    makes one whole call) an argument is cut, never broadcast (its size-1 axes kept whole):
    each function meets the operands of the whole call; past it (where ``b_map`` cuts
    broadcast arguments) only maps whose arguments all have the map's shape go in blocks."""
    shape = np.shape(value)
    m, size, nd = len(live), int(np.prod(shape)), len(shape)
    used = [*vals, *(e for e in errs if not _is_zero(e)), *(sig[i] for i in live)]
    order = memory_order(used, shape)
    if order is None or any(0 in strides_of(a) for a in vals) or size > MAP_BLOCK and any(
            np.ndim(a) and np.shape(a) != shape for a in used):
        return None
    vals, errs, sig = ([in_order(a, order, nd) for a in arrays] for arrays in (vals, errs, sig))
    inner = tuple(shape[i] for i in order)  # the map's shape in memory order
    fn = map_bound_fn(node.attrs["expr"], len(vals))
    E, S = np.empty(inner), np.empty(inner)
    tie = TIE.get()

    def block(idx) -> None:  # on ``symgrad.parallel``'s threads: the same blocks, any count
        v, e, s = ([cut(a, idx, inner) for a in arrays] for arrays in (vals, errs, sig))
        out = _stacked(fn, v, s, live, worst=e, tie=tie, zeros=True)
        extra = torch_form(node, v)
        if map_pair(out, m, extra, E[idx], S[idx]):  # one pass, NaN as inf (``fused``)
            return
        np.add(out[0], extra, out=E[idx])
        total = _quadrature(out[1], (out[q] - out[1] for q in range(2, m + 2)))
        np.add(total, extra, out=S[idx])
        unfused.append(idx)
    unfused: list = []
    with np.errstate(all="ignore"):
        each(block, blocks(inner, max(1, PAIR_BLOCK // (m + 2))))
    for x in (E, S) if unfused else ():  # NaN (the bound undefined) as inf
        np.copyto(x, np.inf, where=np.isnan(x))
    if order == tuple(range(nd)):
        return E, S
    back = tuple(int(i) for i in np.argsort(order))
    return E.transpose(back), S.transpose(back)

