"""A proven enclosure of every subgradient of one sample whose reached kinks interact.

One pass of the sided gradient program (``symgrad.tensor.kinks.sided``) in ball arithmetic
(``symgrad.precise.arb``) with each reached selector the ball [0, 1]: every gradient entry over
all selectors between the sides at once (looser than the simplex of subgradients it stands
for). ``symgrad.tensor.sides`` makes it the outer bound of a relaxed row: a backend's gradient
outside it is a mismatch, inside but outside the evaluated sides' hull inconclusive.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from flint import arb

from ..backends.arb import Imprecise
from ..errors import SymgradError
from ..precise.arb import ARB_OPS
from .interpret import evaluate
from .sided import Sided
from .model import TensorModel
from .views import flat_balls

ENCLOSE_UP_TO = 20_000  # parameters: up to here a relaxed sample's subgradients get balls
ENCLOSURE_BITS = 128


def enclosure(model: TensorModel, s: Sided, keys: list, base: Mapping, one: Mapping
              ) -> tuple[np.ndarray, np.ndarray]:
    """Every gradient entry over all selectors between the sides at once: one pass of the
    sided program in ball arithmetic with each reached selector the ball [0, 1].

    Arguments:
        model: the tensor model; s: its sided program (``symgrad.tensor.kinks.sided``).
        keys: the sample's reached kinks (``Key``s of ``symgrad.tensor.kinks.reached``).
        base: selector node -> its array (1, ...) at the sample's actual sides.
        one: the sample's blocks (block name -> (1, ...)).
    Returns:
        (low, high), each (1 + parameters,): the value and every gradient entry lie between
        them for every choice of sides; (-inf, inf) where the balls cannot be computed, and
        everywhere for a model over ``ENCLOSE_UP_TO`` parameters.

    >>> import numpy as np, sympy as sp, symgrad as sg, symgrad.tensor as st
    >>> from symgrad.precise import DD_OPS
    >>> from symgrad.tensor.kinks import reached, sided
    >>> w = st.param("w", (1,))
    >>> m = st.TensorModel("relu", st.sum_(st.map_(sp.Max(0, st.X[0]), w)))
    >>> at = {"w": np.zeros((1, 1))}
    >>> keys = reached(m, at, DD_OPS, ("float64",), sg.Tolerance())
    >>> low, high = enclosure(m, sided(m), keys.rows[0], keys.base[0], at)
    >>> bool(low[1] <= 0.0 and 1.0 <= high[1])  # d relu / dw at 0: anything in [0, 1]
    True
    """
    width = 1 + model.n_parameters
    low, high = np.full(width, -np.inf), np.full(width, np.inf)
    if model.n_parameters > ENCLOSE_UP_TO:
        return low, high
    ops = ARB_OPS.at(ENCLOSURE_BITS)
    sel = {node: ops.asarray(arr) for node, arr in base.items()}
    whole = arb(0.5, 0.5)
    for i, j, e, opts, links in keys:
        site = s.sites[i]
        if links:  # each member over both its pieces (wider than the key's two sides)
            for li, lj, le, picks in links:
                for k, node in enumerate(s.sites[li].atoms[lj].selectors):
                    sel[node].reshape(-1)[le] = whole if k in picks else arb(0)
        elif j < 0:
            flat = sel[site.selector].reshape(-1)
            flat[site.index[e]] = arb(0)
            for o in opts:
                flat[site.index[e, o]] = whole
        else:
            for k, node in enumerate(site.atoms[j].selectors):
                sel[node].reshape(-1)[e] = whole if k in opts else arb(0)
    leaves = dict(one)
    leaves.update({node.name: arr for node, arr in sel.items()})
    try:
        balls = flat_balls(model, evaluate(s.gradient.outputs, ops, leaves))
    except (ArithmeticError, ValueError, SymgradError, Imprecise):
        return low, high
    hi, lo = ops.to_float64(balls)
    rad = ops.radius(balls)
    with np.errstate(invalid="ignore", over="ignore"):
        mid = hi + lo
        ok = np.isfinite(mid) & np.isfinite(rad)
        low = np.where(ok, np.nextafter(mid - rad, -np.inf), -np.inf)
        high = np.where(ok, np.nextafter(mid + rad, np.inf), np.inf)
    return low, high
