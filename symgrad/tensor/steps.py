"""Every step of a tensor program and of its gradient, kept for reading: the adjoint δ of each
node and each vector-Jacobian contribution to it, from the same VJP rules as the derived
gradient (``symgrad.tensor.derive.VJP``), and their exact values at one point (what ``explain``
shows; ``Model.gradient`` keeps only the parameters' adjoints).

>>> import symgrad.tensor as st
>>> W, x = st.param("W", (2, 3)), st.input("x", (3,))
>>> y = st.einsum("ij,j->i", W, x)
>>> adj = adjoint_steps(st.sum_(st.tanh(y)), [W])
>>> adj.total[W.id].shape, (y.id, 0) in adj.parts
((2, 3), True)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import mpmath
import numpy as np

from ..errors import SymgradError
from ..points import check_integers
from .derive import AdjointSteps, adjoint_steps  # noqa: F401 - explain reads them here
from .interpret import evaluate
from .program import Node
from .tables import TorchOps


def leaf_values(blocks, point: Mapping[str, object], what: str) -> dict[str, np.ndarray]:
    """One sample (leading axis 1) of every block from a complete point, shapes checked.

    Arguments:
        blocks: the model's ``TensorBlock``s.
        point: block name -> a number or nested list.
        what: how an error names the point (``"explain: at"``).
    Returns:
        Block name -> array (1, *shape): integers for integer inputs, else float64.
    """
    out = {}
    for b in blocks:
        v = np.asarray(point[b.name], dtype=np.float64)
        if v.shape != b.shape:
            raise SymgradError(f"{what}: {b.name!r} has shape {b.shape}, got {v.shape}")
        check_integers(b, v, what)
        if b.domain.integer:
            v = v.astype(np.int64)
        out[b.name] = v[None]
    return out


def values_at(nodes: Sequence[Node], table, leaves: Mapping[str, np.ndarray],
              dps: int = 30) -> dict[int, np.ndarray]:
    """Exact values of ``nodes`` at one point, as object arrays of mpmath numbers.

    Arguments:
        nodes: the nodes to evaluate (forward and adjoint nodes alike).
        table: an array-ops table (the oracle's double-double, or ``MpmathOps``).
        leaves: block name -> array (1, *shape) (``leaf_values``).
        dps: digits of the mpmath numbers returned (the double-double table holds ~32).
    Returns:
        Node id -> array of the node's shape (one sample), entries ``mpmath.mpf``.
    """
    got = evaluate(list(nodes), table, leaves)
    out = {}
    with mpmath.workdps(dps):
        for n, v in zip(nodes, got):
            hi, lo = table.to_float64(v)
            hi = np.broadcast_to(hi, (1,) + n.shape)[0]
            lo = np.broadcast_to(lo, (1,) + n.shape)[0]
            arr = np.empty(n.shape, dtype=object)
            for i in np.ndindex(*n.shape):
                arr[i] = mpmath.mpf(float(hi[i])) + mpmath.mpf(float(lo[i]))
            out[n.id] = arr
    return out


def torch_gradient(model, leaves: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torch autograd's gradient of the model's own program at one point (float64, CPU).

    Arguments:
        model: a ``TensorModel``.
        leaves: block name -> array (1, *shape) (``leaf_values``).
    Returns:
        Parameter block name -> gradient array of the block's shape.
    """
    table = TorchOps("float64")
    given = {k: (np.asarray(v) if np.asarray(v).dtype.kind == "i" else table.asarray(v))
             for k, v in leaves.items()}
    for b in model.param_blocks:
        given[b.name].requires_grad_(True)
    (loss,) = evaluate([model.loss], table, given)
    loss.sum().backward()
    return {b.name: given[b.name].grad.detach().numpy()[0] for b in model.param_blocks}
