"""What ``symgrad.causes`` reads about a tensor program's failure, taken from the program.

The catalogue of torch behaviours (``symgrad.causes.CATALOGUE``: nn.BCELoss's clamps, the
softplus threshold, saturated logits, integer inputs promoted to float32) is recognised from a
``causes.Context``. Its ``ops`` come from the tensor program at the failing sample: its
textbook program (``TensorModel.textbook_program``, which ``symgrad.tensor.front`` builds from
the scalar steps' display forms; the program itself when it has none) is evaluated by the
oracle (double-double, ``symgrad.precise``), and each map node is read as the step it is:

    body a sigmoid of its operand (1/(1 + e^-x), or the op table's forms)  -> "sigmoid":
        (exact value, [exact operand])
    body a softplus of its operand in the op table's stable forms            -> "softplus":
        (exact value, [exact operand])
    any other body: each softplus written by hand (log(1 + e^t), log1p(e^t)) -> "softplus":
        (None, [t]); each sigmoid written by hand (1/(1 + e^-t))             -> "logit": (None, [t])

(exact values as mpmath numbers of hi + lo; t evaluated in double-double); and each eps clamp
of a norm, max(sqrt(...), c), active at the sample on the failing entry's path -> "norm_clamp":
(None, [norm, c]) (``clamp_values``, float64). A node of many entries contributes its
``MAX_ENTRIES`` most saturated ones (largest |argument|); above ``OPS_UP_TO`` parameters no
intermediate is read (the catalogue then names nothing). The program's
branches and guard constants are read from its map bodies, and a user's torch_fn is probed for
integer promotions and lower-precision conversions (``backends.torch.dtype_changes``; a captured
module's are in its graph), for ``causes.classify_failure``.

>>> import sympy as sp, symgrad as sg
>>> from symgrad.tensor.front import to_program
>>> w, x = sp.symbols("w x")
>>> tm = to_program(sg.Model("sp", sp.log(1 + sp.exp(w * x)), params=[w], inputs=[x]))
>>> ops = op_values(tm, {"w": np.array([30.0]), "x": np.array([1.0])})
>>> [float(args[0]) for _, args in ops["softplus"]]
[30.0]
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable

import mpmath
import numpy as np
import sympy as sp

from .. import causes
from ..backends import torch as torch_backend
from ..optable import OPS, X0
from .interpret import evaluate
from .model import TensorModel
from .program import X, Node, topological
from .tables import NumpyOps, oracle_ops

MAX_ENTRIES = 4096  # entries read per node (the most saturated): a causes check, not a scan
OPS_UP_TO = 200_000  # parameters: up to here the failing sample is evaluated for the catalogue
#                      (one oracle sample per failing sample; as tensor.verify's departure search)
_SIGMOID = {e.xreplace({X0: X[0]})  # a map body that is the op of its one operand
            for e in (OPS["sigmoid"].textbook, OPS["sigmoid"].formula, OPS["sigmoid"].computed)}
_SOFTPLUS = {e.xreplace({X0: X[0]}) for e in (OPS["softplus"].formula, OPS["softplus"].computed)}
_WANTED = {b for e in causes.CATALOGUE for b in e.backends}  # backends the catalogue names


def has_branch(model: TensorModel) -> bool:
    """Does a map body of the program branch (Piecewise, Max, Min: a where-trap is possible)?"""
    return any(n.attrs["expr"].has(sp.Piecewise, sp.Max, sp.Min) for n in _maps(model))


def guard_constant(model: TensorModel, dtype: str) -> str | None:
    """A non-zero constant of the program's map bodies that rounds to 0 in ``dtype``, as text."""
    return causes.guard_in((n.attrs["expr"] for n in _maps(model)), dtype)


def _maps(model: TensorModel) -> list[Node]:
    return [n for n in topological([model.loss]) if n.op == "map"]


def _sites(model: TensorModel) -> tuple[TensorModel, list[tuple[Node, str, list, Node | None,
                                                                  Node | None]]]:
    """The program read (the textbook one, if any) and its sites: (map node, "sigmoid" /
    "softplus" for a whole-body op else "", the (key, t) of each softplus / sigmoid written by
    hand in its body, its BCE / log-sigmoid node or None (``_bce_node``), that loss's target
    node or None (``_target``)), cached on ``model``."""
    if "cause_sites" not in model._cache:
        program = model.textbook_program or model
        maps = _maps(program)
        found = []
        for n in maps:
            body = n.attrs["expr"]
            whole = ("sigmoid" if body in _SIGMOID else "softplus" if body in _SOFTPLUS
                     else "")
            terms = [] if whole else (
                [("softplus", t) for t in causes.softplus_arguments(body)]
                + [("logit", t) for t in causes.sigmoid_arguments(body)])
            if whole or terms:
                bce = _bce_node(n, whole, terms, maps)
                found.append((n, whole, terms, bce, _target(n, terms, bce)))
        model._cache["cause_sites"] = (program, found)
    return model._cache["cause_sites"]


def _bce_node(node: Node, whole: str, terms: list, maps: list[Node]) -> Node | None:
    """The node whose entries are the BCE / log-sigmoid losses of a site, if the site is one
    (the catalogue's "saturated logit" explains a cancellation there): a softplus (log(1 + e^t)
    = -log sigmoid(-t)) itself; a sigmoid written by hand in a body that takes a log, that
    body; a whole sigmoid, the map reading it that takes a log (BCE of a probability). A bare
    sigmoid (swish's x sigmoid(x), a gate) is none: it cancels nothing."""
    if whole == "softplus" or any(k == "softplus" for k, _ in terms):
        return node
    if terms:
        return node if node.attrs["expr"].has(sp.log) else None
    return next((m for m in maps if node in m.args and m.attrs["expr"].has(sp.log)), None)


def _target(node: Node, terms: list, bce: Node | None) -> Node | None:
    """The target y of a BCE site's loss, if the program says which operand it is: the one
    operand of the BCE node besides the sigmoid it reads (``ops.bce(ops.sigmoid(z), y)``), or
    of a body with the softplus / sigmoid written by hand the one operand no logit reads
    (``y log(1 + e^-z) + (1 - y) log(1 + e^z)``). None where there is no such single operand
    (a softplus alone: the same loss is BCE(t, 0) and BCE(-t, 1), so its target is unknown)."""
    if bce is None:
        return None
    if bce is not node:
        others = [a for a in bce.args if a is not node]
    else:
        used = set().union(*(t.free_symbols for _, t in terms)) if terms else None
        others = [] if used is None else [a for i, a in enumerate(node.args)
                                          if X[i] not in used]
    return others[0] if len(others) == 1 else None


ENTRY = re.compile(r"^d/d(?P<name>.+?)(?:\[(?P<index>[0-9,]+)\])?$")


def _path(model: TensorModel, leaves: dict[str, np.ndarray], output: str,
          memo: dict | None = None) -> dict | None:
    """Which entries of each site the failing gradient entry ``output`` ("d/dW[1,0]") flows
    through: site node id -> a flat boolean mask over the site's entries (an operand entry that
    moves when that one parameter entry moves, in a float64 evaluation). None: every entry
    (the loss value, a Hessian output, an integer or unknown block). ``memo``: kept for one
    sample (its unmoved evaluation is made once)."""
    program, sites = _sites(model)
    match = ENTRY.match(output)
    blocks = {b.name: b for b in program.blocks}
    if match is None or match["name"] not in blocks or blocks[match["name"]].domain.integer:
        return None
    block = blocks[match["name"]]
    flat = (int(np.ravel_multi_index([int(i) for i in match["index"].split(",")], block.shape))
            if match["index"] else 0)
    base = {k: np.array(v, dtype=np.float64) if k in blocks and not blocks[k].domain.integer
            else np.asarray(v) for k, v in leaves.items()}
    moved = dict(base, **{block.name: base[block.name].copy()})
    entry = moved[block.name].reshape(-1)
    entry[flat] += 2.0 ** -10 * max(abs(float(entry[flat])), 1.0)
    memo = {} if memo is None else memo
    if "float64" not in memo:
        memo["float64"] = _operands(program, sites, base)
    before, after = memo["float64"], _operands(program, sites, moved)
    masks = {}
    for n, *_ in sites:
        mask = np.zeros((1,) + n.shape, dtype=bool)
        for a in n.args:
            x, y = (np.broadcast_to(v, (1,) + n.shape) for v in (before[a.id], after[a.id]))
            mask |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
        masks[n.id] = mask.ravel()
    return masks


def _norm_clamps(model: TensorModel) -> list[tuple[Node, float]]:
    """The eps clamps of a norm: map nodes max(x, c) (a constant c > 0) whose operand is a
    square root (a 2-norm: F.cosine_similarity's and F.normalize's max(|x|, eps)), with c;
    cached on ``model``."""
    if "norm_clamps" in model._cache:
        return model._cache["norm_clamps"]
    found = []
    for n in _maps(model):
        body = n.attrs["expr"]
        if not (isinstance(body, sp.Max) and len(body.args) == 2 and X[0] in body.args):
            continue
        c = next(a for a in body.args if a != X[0])
        operand = n.args[0]
        if (c.is_Number and c > 0 and operand.op == "map" and any(
                p.exp == sp.Rational(1, 2) for p in operand.attrs["expr"].atoms(sp.Pow))):
            found.append((n, float(c)))
    model._cache["norm_clamps"] = found
    return found


def clamp_values(model: TensorModel, leaves: dict[str, np.ndarray], output: str
                 ) -> list[tuple[None, list[float]]]:
    """(None, [norm, eps]) of each norm's eps clamp (``_norm_clamps``) that is active at the
    sample (norm below eps, in float64) on the failing entry's path (the norm moves when that
    parameter entry moves; every entry for the loss value)."""
    clamps = _norm_clamps(model)
    if not clamps:
        return []
    base = {k: np.array(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f"
            else np.asarray(v) for k, v in leaves.items()}
    before = _operands(model, clamps, base)
    match = ENTRY.match(output)
    afters = []
    if match is not None and match["name"] in base:
        flat = (int(np.ravel_multi_index([int(i) for i in match["index"].split(",")],
                                         base[match["name"]].shape[1:]))
                if match["index"] else 0)
        # moved by 2^-10 of itself, and by 2^-10 absolute: an entry far below its row's
        # norm (1.7e-216 in a row of norm 3.7e-26) moves no float64 norm by the first
        for floor in (1e-300, 1.0):
            moved = dict(base, **{match["name"]: base[match["name"]].copy()})
            entry = moved[match["name"]].reshape(-1)
            entry[flat] += 2.0 ** -10 * max(abs(float(entry[flat])), floor)
            afters.append(_operands(model, clamps, moved))
    found = []
    for n, c in clamps:
        x = np.ravel(before[n.args[0].id])
        on = x < c * (1 - 1e-9)
        if afters:  # a norm that does not read the entry is bit-identical under any move
            on &= np.logical_or.reduce([np.ravel(a[n.args[0].id]) != x for a in afters])
        found += [(None, [float(v), c]) for v in x[on]]
    return found


def _operands(program: TensorModel, sites: list, leaves: dict) -> dict[int, np.ndarray]:
    """The float64 value of every operand of the sites."""
    wanted = {a.id for n, *_ in sites for a in n.args}
    seen: dict[int, np.ndarray] = {}

    def keep(node: Node, value) -> None:
        if node.id in wanted:
            seen[node.id] = np.asarray(value, dtype=np.float64)
    with np.errstate(all="ignore"):
        evaluate([program.loss], NumpyOps("float64"), leaves, on_node=keep)
    return seen


def op_values(model: TensorModel, leaves: dict[str, np.ndarray], *,
              path: dict | None = None, memo: dict | None = None) -> dict[str, list]:
    """The exact sigmoid / softplus / logit intermediates at one sample.

    Arguments:
        model: the tensor model (its ``textbook_program`` is read when it has one).
        leaves: every block's value at the sample, (1, *shape), as the backends saw it.
        path: site node id -> the entries a failing gradient entry flows through (``_path``);
            None: every entry.
        memo: a dict kept for one sample (its oracle evaluation is made once).
    Returns:
        ``{op: [(value or None, [argument]), ...]}`` (module docstring), plus "bce": the
        logits of the BCE / log-sigmoid sites (``_bce_node``) with their targets, (None, [z,
        y]) (y: the target's value at that entry, ``_target``; NaN where the program does not
        say which operand it is) - for a gradient entry (``path``) only where that loss is
        below e^-4 (a confident prediction: there sigmoid(z) - y may cancel; elsewhere the
        adjoint is ~1); {} when the program has no sigmoid or softplus.
    """
    program, sites = _sites(model)
    if not sites:
        return {}
    table = oracle_ops()
    memo = {} if memo is None else memo
    if "oracle" not in memo:
        targets = {y.id for *_, y in sites if y is not None}
        wanted = ({a.id for n, *_ in sites for a in n.args} | {n.id for n, *_ in sites}
                  | {b.id for _, _, _, b, _ in sites if b is not None} | targets)
        kept: dict[int, object] = {}
        ys: dict[int, np.ndarray] = {}  # the targets' float64 values (integers too)
        table_leaves = {b.name: np.asarray(leaves[b.name]) for b in program.blocks}

        def keep(node: Node, value) -> None:
            if node.id in targets:
                ys[node.id] = np.asarray(value if node.integer else table.to_float64(value)[0],
                                         np.float64)
            if node.id in wanted and not node.integer:
                kept[node.id] = value
        evaluate([program.loss], table, table_leaves, on_node=keep)
        memo["oracle"], memo["targets"] = kept, ys
    seen = memo["oracle"]
    found: dict[str, list] = {}
    for n, whole, terms, bce, target in sites:
        mask = None if path is None else path.get(n.id)
        small = None if bce is None else _confident(table, seen.get(bce.id), n.shape, mask, path)
        y = None if target is None else memo["targets"].get(target.id)
        if whole:
            value, arg = seen[n.id], seen[n.args[0].id]
            pairs = _pairs(table, value, arg, n.shape, mask)
            found.setdefault(whole, []).extend(pairs)
            if bce is not None and whole == "sigmoid":  # a probability a log reads (BCELoss)
                found.setdefault("bce_sigmoid", []).extend(pairs)
            if bce is not None:
                found.setdefault("bce", []).extend(_with_target(table, arg, y, n.shape, small))
            continue
        args = {X[i]: seen[a.id] for i, a in enumerate(n.args) if a.id in seen}
        for key, t in terms:
            if not t.free_symbols <= set(args):
                continue
            zs = (table.map(t, {s: args[s] for s in t.free_symbols}) if t.free_symbols
                  else table.constant(float(t)))
            found.setdefault(key, []).extend((None, [a]) for a in _entries(table, zs, n.shape,
                                                                             mask))
            if bce is not None:
                found.setdefault("bce", []).extend(_with_target(table, zs, y, n.shape, small))
    return found


def _with_target(table, zs, y, shape: tuple, mask) -> list[tuple]:
    """(None, [z, y]) per entry of a BCE site's logits ``zs`` (those in ``mask``), the most
    saturated first (as ``_entries``); y the target's value at the same entry (``y``: the
    target node's float64 value; None: unknown, NaN)."""
    zh, zl = (np.broadcast_to(a, (1,) + shape).ravel() for a in table.to_float64(zs))
    ys = np.full(zh.shape, np.nan) if y is None else np.broadcast_to(y, (1,) + shape).ravel()
    pick = np.argsort(-np.where(_keep(mask, zh), np.abs(zh), -1), kind="stable")[:MAX_ENTRIES]
    pick = pick[_keep(mask, zh)[pick]]
    return [(None, [_exact(zh[k], zl[k]), float(ys[k])]) for k in pick if np.isfinite(zh[k])]


def _confident(table, loss, shape: tuple, mask, path) -> np.ndarray | None:
    """``mask`` narrowed, for a gradient entry (``path`` given), to the entries whose BCE loss
    is below e^-4 (where its adjoint sigmoid(z) - y cancels); ``mask`` as is for the value, or
    where the loss node's entries do not line up with the site's."""
    if path is None or loss is None:
        return mask
    try:
        hi = np.broadcast_to(table.to_float64(loss)[0], (1,) + shape).ravel()
    except ValueError:
        return mask
    return (hi < np.exp(-4.0)) & (True if mask is None else np.asarray(mask, dtype=bool))


def _exact(hi: float, lo: float) -> mpmath.mpf:
    with mpmath.workprec(120):
        return mpmath.mpf(float(hi)) + mpmath.mpf(float(lo))


def _entries(table, value, shape: tuple, mask) -> list[mpmath.mpf]:
    """The exact entries of a double-double array (of a node of ``shape``, those in ``mask``
    if given), the ``MAX_ENTRIES`` largest in size."""
    hi, lo = (np.broadcast_to(a, (1,) + shape).ravel() for a in table.to_float64(value))
    pick = np.argsort(-np.where(_keep(mask, hi), np.abs(hi), -1), kind="stable")[:MAX_ENTRIES]
    pick = pick[_keep(mask, hi)[pick]]
    return [_exact(hi[k], lo[k]) for k in pick if np.isfinite(hi[k])]


def _keep(mask, flat: np.ndarray) -> np.ndarray:
    return np.ones(flat.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)


def _pairs(table, value, arg, shape, mask=None) -> list[tuple]:
    """(value, [argument]) per entry of an elementwise node (those in ``mask`` if given), the
    most saturated first."""
    vh, vl = (np.broadcast_to(a, (1,) + shape).ravel() for a in table.to_float64(value))
    ah, al = (np.broadcast_to(a, (1,) + shape).ravel() for a in table.to_float64(arg))
    pick = np.argsort(-np.where(_keep(mask, ah), np.abs(ah), -1), kind="stable")[:MAX_ENTRIES]
    pick = pick[_keep(mask, ah)[pick]]
    return [(_exact(vh[k], vl[k]), [_exact(ah[k], al[k])]) for k in pick
            if np.isfinite(vh[k]) and np.isfinite(ah[k])]


def classify(model: TensorModel, failure, ctx: causes.Context, leaves: dict[str, np.ndarray],
             *, torch_fn: Callable | None = None, device: str = "cpu", memo: dict | None = None
             ) -> causes.Cause:
    """The root cause of a tensor model's failure: ``ctx`` (what the pipeline knows: dtype,
    the value's status, a departure) completed with the exact intermediates the catalogue reads,
    a torch_fn's dtype changes (promotions, lower-precision conversions; a captured module's:
    ``model.lowered``) and the order (``model.order``: 2 for ``symgrad.hvp``'s model, which
    first-order torch behaviours do not explain), then ``causes.classify_failure``.

    Arguments:
        model: the tensor model.
        failure: the ``symgrad.result.Failure``.
        ctx: the context without ``ops`` / ``promotions``.
        leaves: every block's value at the failing sample, (1, *shape) (integers as int64).
        torch_fn: the user's torch function (probed for its dtype changes), if any.
        device: the torch device of the run.
        memo: a dict kept across the failures of one run (one evaluation per sample).
    Returns:
        The ``causes.Cause``.
    """
    memo = {} if memo is None else memo
    ctx = replace(ctx, order=getattr(model, "order", 1))  # 2: symgrad.hvp's derived model
    if (failure.kind not in ("domain", "overflow", "kink") and model.n_parameters <= OPS_UP_TO
            and causes.as_user_code(failure.backend) in _WANTED):
        key = ("ops", failure.sample, failure.output)
        if key not in memo:
            one = memo.setdefault(("sample", failure.sample), {})
            path = (None if failure.output == "value"
                    else _path(model, leaves, failure.output, one))
            memo[key] = op_values(model, leaves, path=path, memo=one)
            clamped = clamp_values(model, leaves, failure.output)
            if clamped:  # the norms' eps clamps active on the entry's path
                memo[key] = {**memo[key], "norm_clamp": clamped}
        ctx = replace(ctx, ops=memo[key])
    if failure.backend == "torch_fn" and torch_fn is not None:
        if ("promotions", failure.sample) not in memo:
            point = {k: np.asarray(v)[0] for k, v in leaves.items()}
            memo[("promotions", failure.sample)] = torch_backend.dtype_changes(
                torch_fn, model.blocks, point, device=device, dtype=ctx.dtype)
        promoted, lowered = memo[("promotions", failure.sample)]
        ctx = replace(ctx, promotions=promoted, lowered=lowered)
    elif causes.as_user_code(failure.backend) == "torch_fn":  # a module: its graph's casts
        ctx = replace(ctx, lowered=getattr(model, "lowered", ()))
    if "branch" not in memo:
        memo["branch"] = has_branch(model)
    guard = guard_constant(model, ctx.dtype) if failure.kind == "non-finite" else None
    return causes.classify_failure(failure, ctx, has_branch=memo["branch"], guard_zero=guard)
