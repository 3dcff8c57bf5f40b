"""Spot certification of the double-double oracle at sizes ball arithmetic cannot run whole.

GPT-2 at full size (163M parameters) is far beyond an end-to-end ARB re-evaluation (an object
array of balls per parameter block). What can be certified at that size is every *step*: during
the oracle's own pass, a few random entries of every non-exact node are re-evaluated with ARB
balls from the node's double-double inputs (exact values: hi + lo), by the same interpreter rule
applied to the inputs sliced down to that one entry. The rigorous error of the DD entry against
its ball, over the scale of the terms that made it (``|A||B|`` of a contraction, ``sum |x|`` of a
sum, ``|f| + sum |df/dx_i| |x_i|`` of a map), is that step's certified local error. Layout,
selection (take, max, stop) and leaves are exact in DD and need no check.

Why that is enough for the verdict: a backend's allowance is ``safety * u * E`` where E is the
first-order propagation of *its own* local rounding errors (``u`` times the same term scales)
through the same program (``symgrad.tensor.bound``). Local oracle errors of at most ``rho``
times the term scales therefore move the oracle by at most about ``rho / u * u * E = rho * E``
to first order: with ``rho <= 1e-26`` that is below 1e-10 of a float64 ULP-level allowance.
This is a sampled, first-order argument, weaker than the end-to-end certificate models up to
``CERTIFY_UP_TO`` parameters get; reports say which one a result has.

>>> import numpy as np, symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> from symgrad.tensor.views import oracle_view
>>> from symgrad.precise import DD_OPS
>>> W, x = st.param("W", (3, 4)), st.input("x", (4,))
>>> m = TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
>>> spot = SpotCheck(SpotConfig(entries_per_node=2))
>>> _ = oracle_view(m, m.draw(1, np.random.default_rng(0), "float64"), DD_OPS, spot=spot)
>>> spot.ok, spot.entries > 0
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SymgradError
from ..precise import ARB_OPS
from ..precise.certify import CertifyConfig, certify
from .mapbound import map_bound_fn as _map_bound_fn
from .interpret import RULES
from .program import Node

EXACT_OPS = frozenset({"param", "input", "const", "max", "stop", "reshape", "transpose",
                       "broadcast", "take", "onehot"})  # DD computes these without rounding


@dataclass(frozen=True)
class SpotConfig:
    entries_per_node: int = 3  # random entries re-evaluated per non-exact node (sample 0)
    rho: float = 1e-26  # claimed local error of a DD step, relative to its terms' scale
    seed: int = 0  # which entries: a fixed generator, so the same run checks the same entries
    prec: int = 128  # ARB bits: inputs are exact balls, so radii are ~2**-128 of the terms


@dataclass
class SpotCheck:
    """Collects the spot certification of one oracle pass (``oracle_view(..., spot=...)``)."""

    config: SpotConfig = field(default_factory=SpotConfig)
    entries: int = 0  # entries re-evaluated
    nodes: int = 0  # nodes that had entries re-evaluated
    worst_rho: float = 0.0  # the largest certified local error / terms' scale
    by_op: dict = field(default_factory=dict)  # op -> largest certified local error / scale
    failures: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.config.seed)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        ops = ", ".join(f"{op} {r:.1e}" for op, r in sorted(self.by_op.items()))
        head = (f"spot-certified {self.entries} entries of {self.nodes} program steps with ARB "
                f"balls from the steps' own double-double inputs; largest local error "
                f"{self.worst_rho:.2g} of the terms' scale (claim {self.config.rho:.0e}; {ops})")
        return head if self.ok else head + "; FAILED: " + "; ".join(self.failures[:3])

    # -- the walk ----------------------------------------------------------------------------
    def visit(self, node: Node, args: list, value) -> None:
        """Called by the interpreter after each node of the oracle's pass (one sample)."""
        if node.op in EXACT_OPS or node.op not in _SLICERS:
            return
        shape = value.hi.shape
        size = int(np.prod(shape))
        if size == 0:
            return
        picks = self._rng.choice(size, size=min(size, self.config.entries_per_node),
                                 replace=False)
        self.nodes += 1
        for flat in picks:
            idx = np.unravel_index(int(flat), shape)
            self._entry(node, args, value, tuple(int(i) for i in idx))

    def _entry(self, node: Node, args: list, value, idx: tuple) -> None:
        h, l = float(value.hi[idx]), float(value.lo[idx])
        sliced, scale, evaluate = _SLICERS[node.op](node, args, idx)
        if not np.isfinite(h) or not np.isfinite(scale):
            return  # non-finite steps are the verdict's business (NONFINITE / DOMAIN)
        ops = ARB_OPS.at(self.config.prec)
        ball = evaluate(ops, [ARB_OPS.from_dd(a.hi, a.lo) for a in sliced])
        self.entries += 1
        where = f"{node.op} {node.name or node.attrs.get('spec') or ''} {list(idx)}".strip()
        balls = np.empty(1, dtype=object)
        balls[0] = ball
        # the rigorous |DD - ball| of precise.certify; the claim is judged below, per scale
        e = float(certify(np.array([h]), np.array([l]), balls,
                          config=CertifyConfig(rel=0.0, abs=0.0)).error_bound[0])
        if not np.isfinite(e):
            self.failures.append(f"{where}: DD {h!r} but ball {ball.str(10, radius=True)}")
            return
        scale = max(scale, abs(h))
        rho = e / scale if scale > 0 else (0.0 if e == 0 else np.inf)
        self.by_op[node.op] = max(self.by_op.get(node.op, 0.0), rho)
        if rho > self.worst_rho:
            self.worst_rho = rho
        if rho > self.config.rho:
            self.failures.append(f"{where}: DD {h!r} + {l!r}, certified error {e:.3g} = "
                                 f"{rho:.3g} of the terms' scale {scale:.3g} > claim "
                                 f"{self.config.rho:.0e}")


def _abs_hi(a) -> np.ndarray:
    return np.abs(np.asarray(a.hi, dtype=np.float64))


def _first(x) -> object:
    return np.asarray(x, dtype=object).reshape(-1)[0]


def _slice_einsum(node: Node, args: list, idx: tuple):
    """Operands cut to the one output entry (size-1 axes kept); contraction axes whole."""
    spec = node.attrs["spec"]
    ins, out = spec.split("->")
    fixed = dict(zip(out, idx[1:]))
    sliced = []
    for sub, a in zip(ins.split(","), args):
        sel = [slice(0, 1)]  # the batch axis: the oracle runs one sample
        for k, c in enumerate(sub):
            whole = c not in fixed
            sel.append(slice(None) if whole else slice(0, 1) if a.hi.shape[1 + k] == 1
                       else slice(fixed[c], fixed[c] + 1))
        sliced.append(a[tuple(sel)])
    z = next(c for c in "ZYXWVUTS" if c not in spec)
    batched = ",".join(z + t for t in ins.split(",")) + "->" + z + out
    scale = float(np.einsum(batched, *[_abs_hi(a) for a in sliced]).reshape(-1)[0])

    def ball(ops, balls):
        return _first(RULES["einsum"](node, ops, balls, None))
    return sliced, scale, ball


def _slice_map(node: Node, args: list, idx: tuple):
    """Each operand's entry under broadcasting; scale |f| + sum |df/dx_i| |x_i| + f's own ops."""
    sliced = [a[tuple(slice(0, 1) if n == 1 else slice(i, i + 1)
                      for n, i in zip(a.hi.shape, idx))] for a in args]
    vals = [np.asarray(a.hi, dtype=np.float64) for a in sliced]
    with np.errstate(all="ignore"):
        E = _map_bound_fn(node.attrs["expr"], len(vals))(*vals, *[np.abs(v) for v in vals])

    def ball(ops, balls):
        return _first(RULES["map"](node, ops, balls, None))
    return sliced, float(np.asarray(E, dtype=np.float64).reshape(-1)[0]), ball


def _slice_sum(node: Node, args: list, idx: tuple):
    """The reduced axes whole, the kept ones at the entry (``sum`` drops reduced axes)."""
    a = args[0]
    axes = {ax + 1 for ax in node.attrs["axes"]}
    kept = iter(idx[1:])
    sel = [slice(0, 1)]
    for k in range(1, a.hi.ndim):
        i = None if k in axes else next(kept)
        sel.append(slice(None) if i is None else slice(i, i + 1))
    sliced = a[tuple(sel)]

    def ball(ops, balls):
        return _first(RULES["sum"](node, ops, balls, None))
    return [sliced], float(_abs_hi(sliced).sum()), ball


def _slice_scatter_add(node: Node, args: list, idx: tuple):
    """Entry (row r, column c): the sum of the rows whose id is r, at column c."""
    rows, ids = args
    ids = np.asarray(ids)[:1]
    rest = idx[2:]
    sel = (slice(0, 1),) + (slice(None),) * (ids.ndim - 1) + tuple(slice(i, i + 1) for i in rest)
    hit = ids == idx[1]  # (1, T...)
    sliced = rows[sel]
    picked = sliced[hit]  # DD of the rows that land on row r (1-d, possibly empty)

    def ball(ops, balls):
        return ops.sum(balls[0]) if balls[0].size else ops.constant(0)
    return [picked], float(_abs_hi(picked).sum()), lambda ops, balls: _first(ball(ops, balls))


_SLICERS = {"einsum": _slice_einsum, "map": _slice_map, "sum": _slice_sum,
            "scatter_add": _slice_scatter_add}


def check(spot: SpotCheck, model_name: str) -> None:
    """Raise when the spot certification found a DD step outside its claim."""
    if not spot.ok:
        raise SymgradError(f"model {model_name!r}: the oracle's double-double steps are not "
                           f"certified by ball arithmetic: {spot.summary()}")
