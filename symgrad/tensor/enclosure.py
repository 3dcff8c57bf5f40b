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
from ..compare.kinks import INTERACTION_BITS, Sides
from ..errors import SymgradError
from ..precise.arb import ARB_OPS
from .interpret import evaluate
from .sided import Sided
from .model import TensorModel
from .views import flat_balls

CURVED_SEED = 2  # the fractional sides ``curved`` evaluates (same model, same point)
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


def curved(row, options: list, combos: list, V: np.ndarray) -> Sides | None:
    """None where the hull of every combination of sides ``V`` holds every subgradient: the
    gradient is multilinear in the selectors (first order: one local derivative of a kink per
    path), checked at order 2 at one point between the sides against the multilinear
    interpolation of ``V`` on the entries whose sides differ. At order 2 a kink's local
    derivative meets itself (relu's H(z) H(z) in the Hessian-vector product): code with
    H(0) = 1/2, symgrad's own among them, gives (1/2, 1/4) of the sides, off their hull: then
    the row is relaxed - outside the enclosure of every selector in [0, 1] a mismatch, between
    it and the hull inconclusive.

    Arguments:
        row: the sample's passes (``symgrad.tensor.sides._Row``: ``model``, ``runs``, ...).
        options, combos: each kink's options, and every combination of them (V's rows).
        V: (len(combos), K) the sides' exact rows.
    Returns:
        A relaxed ``Sides`` with the proven enclosure and the reason, or None.
    """
    if getattr(row.model, "order", 1) != 2 or len(combos) < 2:
        return None
    rng = np.random.default_rng(CURVED_SEED)
    weights = [dict(zip(o, w / w.sum())) for o in options
               for w in [rng.integers(1, 1 << 20, size=len(o)).astype(np.float64)]]
    got = row.runs([dict(enumerate(weights))])[0]
    pred = sum(np.prod([w[c] for w, c in zip(weights, combo)]) * v for combo, v in zip(combos, V))
    tol = 2.0**-INTERACTION_BITS * np.max(np.abs(V[np.isfinite(V)]), initial=0.0)
    with np.errstate(invalid="ignore"):  # only where the sides differ: where they agree the
        kink = np.ptp(V, axis=0) > tol  # function is smooth (logaddexp at x = y), one value
        if np.all(np.abs(got - pred)[kink] <= tol):
            return None
    low, high = enclosure(row.model, row.s, row.keys, row.base, row.one)
    return Sides("relaxed", [[0]], low, high,
                 f"at order 2 the one-sided derivatives of the {len(options)} reached "
                 f"kink{'s' if len(options) > 1 else ''} enter as products (H(z) H(z)): "
                 "code that takes a value between the sides (H(0) = 1/2) is off their hull; "
                 "got lies in the proven enclosure of every subgradient but not in the hull "
                 "of the sides")
