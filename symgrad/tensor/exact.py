"""The exact loss and gradient of a tensor program at one point, certified to ``dps`` digits
(what ``sg.exact_at`` returns on the program pipeline).

The gradient program (``TensorModel.gradient.outputs``) runs in ``arb`` balls
(``symgrad.precise.ARB_OPS``) from the point's exact values; the precision doubles (from
~3.33 bits per digit, up to 4096 bits) until every ball's radius is at most 2^-(3.33 dps + 4)
of its midpoint (or below 2^-1200 absolutely, a value that is 0), so every returned digit is
certified, not assumed. An exact kink takes the table's convention (``Heaviside(0)``'s value),
as the scalar oracle does; at a linked kink (a smooth function written with kink functions:
logaddexp's x = y) ``sg.exact_at`` passes the oracle's sided program instead (``sides=``,
``symgrad.tensor.tie_sides``), where products of conventions are no side's value. Balls that never narrow (a branch or domain boundary at the point,
where the derivative does not exist) are a one-line error naming the entry.

>>> import symgrad.tensor as st
>>> from symgrad.tensor.model import TensorModel
>>> w = st.param("w", (2,))
>>> m = TensorModel("sq", st.sum_(st.tanh(w)))
>>> g = exact_point(m, {"w": [0.5, "0.25"]}, dps=30)
>>> str(g["d/dw[1]"])[:12]   # 1 - tanh(0.25)^2
'0.9400148488'
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import mpmath
import numpy as np
import sympy as sp
from flint import arb, ctx

from ..errors import SymgradError
from ..points import one_point
from ..precise.arb import ARB_OPS
from .interpret import evaluate
from .model import TensorModel
from .program import topological
from .views import flat_balls

MAX_BITS = 4096  # as the scalar oracle's at_point
_ZERO = 1200  # a radius below 2^-1200 is tight whatever the value (an exact 0)


def _ball(x, bits: int) -> arb:
    """A number as given by the user as a ball: exact for binary numbers (floats, ints,
    mpmath numbers), correctly enclosed at ``bits`` for a decimal string."""
    if isinstance(x, str):
        with ctx.workprec(bits):
            return arb(x)
    v = mpmath.mpf(x)
    sign, man, exp, _ = v._mpf_
    if not man:
        return arb(0)
    return arb(int(-man if sign else man)) * arb(2) ** int(exp)


def ball_leaves(model: TensorModel, values: Mapping, ball: Callable) -> dict:
    """Every block of ``values`` (block name -> array) as the interpreter's leaves: an integer
    input as int64, any other entry by entry as the arb ball ``ball(x)`` (an object array)."""
    out = {}
    for b in model.blocks:
        v = np.asarray(values[b.name])
        if b.domain.integer:
            out[b.name] = v.astype(np.float64).astype(np.int64)
            continue
        out[b.name] = np.empty(v.shape, dtype=object)
        for idx, x in np.ndenumerate(v):
            out[b.name][idx] = ball(x)
    return out


def _leaves(model: TensorModel, values: Mapping[str, np.ndarray], bits: int) -> dict:
    """The point's blocks as the interpreter's leaves (1, *shape): integer inputs int64, the
    rest balls at ``bits``."""
    return ball_leaves(model, {b.name: np.asarray(values[b.name])[None] for b in model.blocks},
                       lambda x: _ball(x, bits))


def _loose(balls: np.ndarray, bits: int, rel_bits: int) -> int | None:
    """The first ball not tight to ``rel_bits`` of its value (or to 2^-1200), or None."""
    with ctx.workprec(bits):
        rel, zero = arb(2) ** -rel_bits, arb(2) ** -_ZERO
        for k, o in enumerate(balls):
            if not o.is_finite() or not (o.rad() <= zero or o.rad() <= abs(o.mid()) * rel):
                return k
    return None


def _to_mpf(o: arb) -> mpmath.mpf:
    man, exp = o.mid().man_exp()
    return mpmath.mpf((int(man), int(exp)))


def exact_point(model: TensorModel, point: dict, *, dps: int = 50, what: str = "exact_at",
                names: Sequence[str] | None = None,
                sides: tuple[list, dict] | None = None) -> dict[str, mpmath.mpf]:
    """The exact loss and gradient of ``model`` at ``point``, certified to ``dps`` digits.

    Arguments:
        model: the tensor program.
        point: block name (or leaf / symbol) -> value (a number, decimal string or nested
            list), checked by ``symgrad.points.one_point``.
        dps: significant digits certified.
        what: how errors name the call.
        names: the gradient entries' names (default: the program's ``TensorBlock.entry``
            names; a plain model passes its own).
        sides: at a linked kink, the sided gradient program and its selectors' values
            (``symgrad.tensor.tie_sides``: the oracle's consistent side); None: the plain one.
    Returns:
        ``{"value": L, "d/d<entry>": dL/d<entry>, ...}`` as mpmath numbers at ``dps`` digits.
    Raises:
        SymgradError: a bad point (one line), or balls still too wide (or undefined) at 4096
            bits: a kink, branch or domain boundary at the point.
    """
    entries = list(model.entries) if names is None else list(names)
    labels = ["value"] + [f"d/d{e}" for e in entries]
    outputs, extra = sides if sides is not None else (model.gradient.outputs, {})
    got = _certified(model, outputs, point, dps, what,
                     lambda outs: flat_balls(model, outs), labels, extra)
    return dict(zip(labels, got))


def exact_steps(model: TensorModel, point: dict, *, dps: int = 50,
                what: str = "at") -> dict[sp.Symbol, mpmath.mpf]:
    """The exact value of every block entry and every step of a plain model's program (the
    steps ``symgrad.tensor.front.to_program`` tags with a ``FrontStep``) at one point,
    certified to ``dps`` digits as ``exact_point`` certifies the gradient.

    Arguments:
        model: a program built by ``to_program`` (its ``textbook_program`` for the textbook
            forms); a program with no tagged steps gives its blocks' entries only.
        point: block name (or symbol) -> value, checked by ``symgrad.points.one_point``.
        dps: significant digits certified.
        what: how errors name the call.
    Returns:
        The step's or entry's sympy symbol -> its value (mpmath, ``dps`` digits).

    >>> import sympy as sp, symgrad as sg
    >>> from symgrad.tensor.front import to_program
    >>> x, w = sp.symbols("x w")
    >>> m = sg.Model("sq", sg.ops.step((w * x) ** 2, label="s"), params=[w],
    ...              inputs={x: sg.Uniform(-1, 1)})
    >>> v = exact_steps(to_program(m), {"w": 3, "x": "0.5"}, dps=20)
    >>> {str(k): str(e) for k, e in v.items()}
    {'s': '2.25', 'w': '3.0', 'x': '0.5'}
    """
    steps = sorted((n for n in topological([model.loss]) if "step" in n.attrs),
                   key=lambda n: n.id)  # the model's own step order (ids count up)
    symbols = [n.attrs["step"].symbol for n in steps]
    labels = [str(s) for s in symbols]

    def flat(outs: list) -> np.ndarray:  # one sample of each shape-() step
        return np.array([np.asarray(o, dtype=object).reshape(-1)[0] for o in outs],
                        dtype=object)

    got = _certified(model, steps, point, dps, what, flat, labels) if steps else []
    out = dict(zip(symbols, got))
    values = one_point(model, point, what)
    with mpmath.workdps(dps):
        for b in model.blocks:
            syms = b.node.attrs.get("symbols", ())
            for s, x in zip(syms, np.asarray(values[b.name], dtype=object).reshape(-1)):
                out[s] = +mpmath.mpf(x)
    return out


def _certified(model: TensorModel, outputs: Sequence, point: dict, dps: int, what: str,
               flatten: Callable[[list], np.ndarray], labels: Sequence[str],
               extra: dict | None = None) -> list:
    """``outputs`` of ``model`` at ``point`` in arb balls, the precision doubled until every
    ball is tight to ``dps`` digits; their midpoints as mpmath numbers (``labels[k]`` names
    flat ball k in the error of a ball that never narrows). ``extra``: more leaves (name ->
    array of binary numbers, exact balls), a sided program's selectors."""
    if not isinstance(dps, int) or dps < 1:
        raise SymgradError(f"{what}: dps must be a positive integer, got {dps!r}")
    values = one_point(model, point, what)
    rel_bits = math.ceil(dps * 3.33) + 4
    bits = max(128, rel_bits + 12)
    while True:
        try:
            leaves = _leaves(model, values, bits)
            for name, v in (extra or {}).items():
                leaves[name] = np.vectorize(lambda x: _ball(float(x), bits), otypes=[object])(v)
            balls = flatten(evaluate(list(outputs), ARB_OPS.at(bits), leaves))
        except (ValueError, ZeroDivisionError, OverflowError) as e:  # a ball op that refused
            balls, bad, why = None, 0, f"the program raised {type(e).__name__}: {e}"
        else:
            bad = _loose(balls, bits, rel_bits)
            if bad is None:
                break
            why = f"ball {balls[bad].str(5, radius=True)}"
        if bits >= MAX_BITS:
            raise SymgradError(
                f"{what}: {labels[bad]} of {model.name} could not be certified to {dps} digits "
                f"within {MAX_BITS} bits ({why}): the point sits on a kink, branch or domain "
                f"boundary where it is not defined; move the point")
        bits = min(2 * bits, MAX_BITS)
    with mpmath.workdps(dps):
        return [+_to_mpf(o) for o in balls]
