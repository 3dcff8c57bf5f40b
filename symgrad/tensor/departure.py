"""Where the forward first departs: intermediates of a run compared with the exact ones.

When a backend computes a different function, the question is *where* its forward leaves the
exact one. Given the intermediates a run produced (a user module's submodule outputs captured
by forward hooks, or the nodes of symgrad's own program run in the dtype), each matched to a
node of the tensor program, this module evaluates those nodes exactly (the double-double
oracle, ``symgrad.precise``) and their forward rounding-error bound E (``symgrad.tensor.bound``:
the running bound of every operation from the leaves up to that node), and compares each
through the one comparer (``symgrad.compare``), every entry judged as a value. The first
intermediate in execution order with an entry outside its bound is where the forward departs.

>>> import numpy as np, symgrad.tensor as st
>>> from symgrad.compare import Tolerance
>>> W, x = st.param("W", (2, 2)), st.input("x", (2,))
>>> y = st.einsum("ij,j->i", W, x)
>>> z = st.tanh(y)
>>> leaves = {"W": np.eye(2)[None], "x": np.array([[0.5, 2.0]])}
>>> wrong = [Capture("lin", "Linear", y, np.array([0.5, 2.0])),
...          Capture("act", "Tanh", z, np.tanh([0.5, 2.0]) * 1.01)]
>>> first_departure(wrong, leaves, dtype="float64", tol=Tolerance()).departure.site
'act'
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..compare import FAILING, STATUS_NAMES, Tolerance, allowance, compare
from ..errors import checked_keywords
from .bound import evaluate_bound
from .interpret import evaluate
from .program import Node, topological
from .tables import oracle_ops


@dataclass(frozen=True)
class Capture:
    """One intermediate of a run: where (the user's name), what produced it, the program node
    it is compared with, and the values the run produced (any shape of the node's size)."""

    site: str  # a submodule's name (trf_blocks.0.norm1) or a program node's label (h0.ln1)
    kind: str  # the submodule's class (LayerNorm) or the node's op
    node: Node
    got: np.ndarray


@dataclass(frozen=True)
class Departure:
    """The first intermediate outside its bound, at its worst entry."""

    site: str
    kind: str
    index: tuple[int, ...]  # in the captured tensor's own shape
    expected: float
    got: float
    ulps: float
    allowed_ulps: float
    status: str  # mismatch / non-finite / ...

    def message(self, cause: str = "") -> str:
        """One line: where, the cause when one was recognised (``cause``: e.g. "a float32
        constant in a float64 forward (...)"), the worst entry, expected vs got, error vs
        allowance (in ULPs while both are finite, else absolute)."""
        idx = ",".join(str(i) for i in self.index)
        why = f": {cause};" if cause else ""
        if np.isfinite(self.ulps) and np.isfinite(self.allowed_ulps) and self.allowed_ulps > 0:
            error = f"error {self.ulps:.3g} ULPs > allowance {self.allowed_ulps:.3g}"
        else:  # a ratio of non-finite ULPs says nothing: the absolute error, if any
            error = (f"error {abs(self.got - self.expected):.3g}"
                     if np.isfinite(self.got) and np.isfinite(self.expected)
                     else "not finite")
        return (f"the forward first departs at {self.site} ({self.kind}){why} output[{idx}]: "
                f"expected {self.expected!r}, got {self.got!r}, {error}")


@dataclass(frozen=True)
class Unreproducible:
    """The first intermediate whose two runs at the same sample differ beyond rounding: both
    runs cannot lie within the rounding bound of the one exact value (|a - b| > 2 allowance),
    so the forward itself is random there (dropout left on, sampling)."""

    site: str
    kind: str
    index: tuple[int, ...]
    first: float
    second: float

    def message(self) -> str:
        idx = ",".join(str(i) for i in self.index)
        return (f"dropout (or other randomness) is active in eval mode at {self.site} "
                f"({self.kind}): two eval-mode forwards of the same sample differ there "
                f"(output[{idx}]: {self.first!r} vs {self.second!r}, beyond twice its "
                "rounding allowance); switch it off in eval mode (nn.Dropout, or "
                "F.dropout(x, p, training=self.training))")


@dataclass(frozen=True)
class Search:
    """What a departure search compared and found (``departure`` None: all agree)."""

    departure: Departure | None
    checked: tuple[str, ...]  # sites compared, in execution order (up to the departure)
    skipped: tuple[str, ...] = ()  # captured sites not comparable, with the reason
    seconds: float = 0.0
    sample: int = 0
    cause: str = ""  # what made it depart, when recognised (a float32 constant, ...)
    random: Unreproducible | None = None  # the forward is not reproducible (dropout left on)

    @property
    def agrees(self) -> bool:
        return self.departure is None and bool(self.checked) and self.random is None

    def sentence(self) -> str:
        """The search in one line: the departure (with its cause), randomness, or agreement."""
        if self.random is not None:
            return self.random.message()
        if self.departure is not None:
            return self.departure.message(self.cause)
        if not self.checked:
            return "no intermediate could be compared" + (
                f" ({'; '.join(self.skipped)})" if self.skipped else "")
        return (f"the forward agrees with the exact one at all {len(self.checked)} compared "
                f"intermediates (through {self.checked[-1]})")


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
def first_departure(captures: Sequence[Capture], leaves: Mapping[str, np.ndarray], *,
                    dtype: str, tol: Tolerance, backend: str = "forward",
                    sample: int = 0) -> Search:
    """The first of ``captures`` (in execution order) with an entry outside its bound.

    Arguments:
        captures: the run's intermediates, in the order the run produced them.
        leaves: every block's value at the one sample the run used, (1, *shape) float64
            (already rounded to the dtype, as the run saw them; integer inputs as integers).
        dtype: the run's dtype (the ULP and the unit roundoff of the bound).
        tol: the comparer's tolerance (its safety factor applies to E).
        backend: a name for the comparer.
        sample: the sample's index, kept on the result.
    Returns:
        A ``Search``: ``.departure`` (None when every captured intermediate agrees),
        ``.checked``, ``.skipped``, ``.sentence()``.
    """
    t0 = time.perf_counter()
    usable, skipped = [], []
    for c in captures:
        got = np.asarray(c.got, dtype=np.float64)
        if got.size != c.node.size:
            skipped.append(f"{c.site}: {got.size} values for {c.node.size} "
                           f"({c.node.name or c.node.op} {c.node.shape})")
        else:
            usable.append((c, got))
    nodes = list({c.node.id: c.node for c, _ in usable}.values())
    if not nodes:
        return Search(None, (), tuple(skipped), time.perf_counter() - t0, sample)
    table = oracle_ops()
    exact = dict(zip((n.id for n in nodes), evaluate(nodes, table, leaves)))
    bound = dict(zip((n.id for n in nodes), evaluate_bound(nodes, leaves)))
    checked = []
    for c, got in usable:
        checked.append(c.site)
        hi, lo = table.to_float64(exact[c.node.id])
        column = (lambda a: np.broadcast_to(np.asarray(a, np.float64),
                                            (1,) + c.node.shape).reshape(-1, 1))
        comp = compare(column(hi), column(lo), got.reshape(-1, 1), column(bound[c.node.id]),
                       backend=backend, dtype=dtype, tol=tol)
        failing = np.isin(comp.status[:, 0], FAILING)
        if failing.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                bad = np.where(np.isfinite(comp.got[:, 0]),
                               comp.ulps[:, 0] / comp.allowed_ulps[:, 0], np.inf)
            k = int(np.flatnonzero(failing)[np.argmax(bad[failing])])
            where = np.unravel_index(k, np.shape(c.got)) if np.ndim(c.got) else ()
            d = Departure(c.site, c.kind, tuple(int(i) for i in where),
                          float(comp.expected[k, 0]), float(comp.got[k, 0]),
                          float(comp.ulps[k, 0]), float(comp.allowed_ulps[k, 0]),
                          STATUS_NAMES[int(comp.status[k, 0])])
            return Search(d, tuple(checked), tuple(skipped), time.perf_counter() - t0, sample)
    return Search(None, tuple(checked), tuple(skipped), time.perf_counter() - t0, sample)


def first_unreproducible(first: Sequence[Capture], second: Sequence[Capture],
                         leaves: Mapping[str, np.ndarray], *, dtype: str,
                         tol: Tolerance) -> Unreproducible | None:
    """The first site (execution order) whose outputs in two runs of the same sample differ by
    more than twice their rounding allowance (``compare.allowance`` of the node's forward bound
    E): both runs cannot be within rounding of the one exact value, so the run is random there.
    Bitwise differences within that (a GPU's reduction order) are not randomness.

    Arguments:
        first, second: the captures of two runs (same sites, same order).
        leaves, dtype, tol: as for ``first_departure``.
    Returns:
        An ``Unreproducible`` (site, kind, worst entry, both values), or None."""
    pairs = [(a, np.asarray(a.got, np.float64), np.asarray(b.got, np.float64))
             for a, b in zip(first, second) if a.site == b.site]
    differ = [(c, x, y) for c, x, y in pairs
              if x.shape == y.shape and not np.array_equal(x, y, equal_nan=True)]
    if not differ:
        return None
    nodes = list({c.node.id: c.node for c, x, _ in differ if x.size == c.node.size}.values())
    bound = dict(zip((n.id for n in nodes), evaluate_bound(nodes, leaves))) if nodes else {}
    for c, x, y in differ:
        if c.node.id in bound:
            allow = np.broadcast_to(allowance(bound[c.node.id], dtype, tol),
                                    (1,) + c.node.shape).reshape(x.shape)
        else:  # no bound for this capture: only a difference of more than rounding's scale
            allow = np.full(x.shape, 1e-3) * np.fmax(np.abs(x), np.abs(y))
        with np.errstate(invalid="ignore"):
            gap = np.abs(x - y) - 2 * allow
        gap = np.where(np.isnan(x) != np.isnan(y), np.inf, np.nan_to_num(gap, nan=-1.0))
        if (gap > 0).any():
            k = int(np.argmax(gap))
            where = np.unravel_index(k, x.shape) if x.ndim else ()
            return Unreproducible(c.site, c.kind, tuple(int(i) for i in where),
                                  float(x.reshape(-1)[k]), float(y.reshape(-1)[k]))
    return None


def own_program(outputs: Sequence[Node], table, leaves: Mapping[str, np.ndarray],
                *, labelled_only: bool = True) -> list[Capture]:
    """The intermediates of symgrad's own program run under ``table`` (numpy or torch in the
    run's dtype) at one sample: every labelled node (a GPT's ``h0.ln1``...), or with
    ``labelled_only=False`` (or no labels) every computed float node, in execution order."""
    order = [n for n in topological(outputs) if not n.is_leaf and not n.integer
             and n.op != "onehot"]
    labelled = [n for n in order if n.name]
    wanted = {n.id for n in (labelled if labelled_only and labelled else order)}
    seen: dict[int, object] = {}

    def on_node(node, value):
        if node.id in wanted:
            seen[node.id] = value
    evaluate(outputs, table, dict(leaves), on_node=on_node)
    found = []
    for n in order:
        if n.id in seen:
            v = seen[n.id]
            if hasattr(v, "detach"):
                v = v.detach().to("cpu").double().numpy()
            v = np.broadcast_to(np.asarray(v, dtype=np.float64), (1,) + n.shape)[0]
            found.append(Capture(n.name or f"{n.op} #{n.id}", n.op, n, v))
    return found
