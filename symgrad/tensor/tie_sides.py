"""The sides ``exact_at`` takes at a linked kink: the oracle's own choice (one consistent side).

A smooth function written with kink functions (``max(x, y) + log1p(e^-|x - y|)``, softplus's
stable form after ``symgrad.stable`` splits it into steps) has linked atoms
(``symgrad.tensor.links``): at their tie each atom's own convention (``sign(0) = 0``,
``Heaviside(0) = 1/2``) is the mean of its sides, and where two of them multiply across map
nodes (a sign computed in one step and squared through the chain rule in another) the product
of means is no side's value: the Hessian-vector product of the catalogue's logaddexp model at
x = y came out twice the true one. The verification's oracle evaluates the sided program there
with every linked atom on one side (``kinks.reached``: the key's sign, 0 counted negative),
which is the function's derivative where the sides agree. ``exact_at`` takes the same sides,
from the same code, at a point given in binary numbers; at every other point (no linked kink
reached, a decimal string that is not a double) it evaluates the plain gradient program as
before.

>>> import sympy as sp, symgrad as sg
>>> from symgrad.tensor.front import to_program
>>> x, y = sp.symbols("x y")
>>> m = to_program(sg.Model("lae", sp.Max(x, y) + sp.log(1 + sp.exp(-sp.Abs(x - y))),
...                         params=[x, y]))
>>> tie_sides(m, {"x": 0.5, "y": 0.5}, "exact_at") is not None
True
>>> tie_sides(m, {"x": 0.5, "y": -1.0}, "exact_at") is None   # no kink reached
True
"""

from __future__ import annotations

import mpmath
import numpy as np

from ..compare import Tolerance
from ..points import one_point
from ..precise import DD_OPS
from .kinks import has_sites, oracle_program, reached
from .model import TensorModel


def _binary(values: dict) -> dict[str, np.ndarray] | None:
    """The point as float64 arrays, or None if any value is not exactly a double."""
    out = {}
    for name, v in values.items():
        flat = np.asarray(v, dtype=object).reshape(-1)
        floats = np.empty(flat.shape, np.float64)
        for k, x in enumerate(flat):
            try:
                f = float(x)
            except (TypeError, ValueError):
                return None
            if isinstance(x, str):
                with mpmath.workdps(60):
                    if mpmath.mpf(x) != mpmath.mpf(f):
                        return None
            floats[k] = f
        out[name] = floats.reshape(np.shape(v))[None]
    return out


def tie_sides(model: TensorModel, point: dict, what: str) -> tuple[list, dict] | None:
    """The sided gradient program and its selectors at ``point`` where it reaches a linked
    kink (as the verification's oracle evaluates it); None where the plain program is used.

    Arguments:
        model: the tensor program.
        point: block name -> value, as ``exact_at`` takes it.
        what: how errors name the call.
    Returns:
        ``(outputs, selectors)``: the sided gradient outputs and each selector input's values
        (name -> array ``(1, *shape)``, exact binary numbers), or None.
    """
    if not has_sites(model):
        return None
    values = _binary(one_point(model, point, what))
    if values is None:
        return None
    keys = reached(model, values, DD_OPS, ("float64",), Tolerance())
    if not any(k.links for k in keys.rows[0]):
        return None
    return oracle_program(model, keys)
