"""Max-reduction ties that change nothing: every tied entry a constant of the program there.

A CNN's max-pool reads a ReLU's output; where a window's entries are all at the ReLU's 0 side
(its input below 0, beyond rounding) they tie at exactly 0, and each is reached as a kink with
up to nine options. No option changes a gradient entry: the sides differ only in which tied
entry the window's adjoint reaches, and each tied entry has derivative 0. Left in, such ties
counted against ``symgrad.tensor.sides.MAX_KEYS`` (154 of the 1,361 kinks a train-mode
width-64 ResNet-18 reaches in one sample, 160 of 336 in eval mode), so every entry was
inconclusive for kinks that cannot move one.

``constant_ties`` drops a max reduction's reached key (``symgrad.tensor.kinks.Key``) when
every option is, through reshapes, transposes and 0/1 einsums (``links.sources_of``: an exact
copy, or a constant 0 of padding), an entry of a map site whose every atom is on one side at
its base (a one-hot selector) and is no reached kink of the sample (so on every combination of
the other kinks' sides too), and whose body with each atom replaced by that side's piece is a
constant ``c`` - the same ``c`` for every option: 0 (a one-hot side's 0 and padding are
computed exactly 0), or one body at the same sides (the same computation).

Proof that every side of such a key gives the same row (value and every gradient entry), on
every combination of the other keys' sides: the sided program (``symgrad.tensor.sided``)
differs between two sides of the key only in the selector ``S`` over the tied operand entries
(one-hot at the chosen option). (i) The value: the reduction is ``sum(x * S)``, each tied ``x``
computes the same expression on every side (its own selectors are fixed at base), so with
``x = c`` everywhere it is ``c`` on each side; if an ``x`` is not finite (``0 * inf`` in a
bare mix ``S0 * 0 + S1 * z``), ``x * 0`` is NaN and the value NaN on every side alike.
(ii) The gradient: the adjoint ``a`` of the reduction's entry reaches tied entry ``o`` as
``a * S_o``, and then the map's derivative there, which is exactly 0 (a one-hot side is
replaced by its piece before differentiation, ``sided._rewrite``; a bare mix's is its 0
selector): for finite ``a`` every tied entry passes on a zero (its sign aside), for a
non-finite ``a`` every tied entry passes on NaN (``inf * 0``, ``NaN * w``) - the same on every
side. Nothing else reads the selector. This is a statement about the program being verified,
so it holds at order 2 as well: an HVP program's own ties are tested on that program (its
``Heaviside`` sites' pieces), never by the first derivative's.

>>> import sympy as sp, symgrad.tensor as st
>>> from symgrad.tensor.kinks import Key, sided
>>> from symgrad.tensor.model import TensorModel
>>> from symgrad.tensor.program import max_
>>> z = st.param("z", (3,))
>>> s = sided(TensorModel("pool", max_(st.map_(sp.Max(0, st.X[0]), z), axes=(0,))))
>>> relu, pool = s.sites[0], s.sites[1]
>>> base = {relu.atoms[0].selectors[0]: np.array([[1.0, 1, 0]]),  # z0, z1 < 0: relu at 0
...         relu.atoms[0].selectors[1]: np.array([[0.0, 0, 1]]), pool.selector: None}
>>> tie = Key(1, -1, 0, (0, 1))  # relu(z0) = relu(z1) = 0 tie
>>> constant_ties(s, [tie], base, {})
[]
>>> constant_ties(s, [tie, Key(0, 0, 1, (0, 1))], base, {}) == [tie, Key(0, 0, 1, (0, 1))]
True
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .links import sources_of


def constant_ties(s, keys: list, base: dict, cache: dict) -> list:
    """``keys`` without the max reductions' ties whose options are all one constant of the
    program (the module's docstring: the proof that such a tie moves no entry of the row).

    Arguments:
        s: the sided program (``symgrad.tensor.kinks.Sided``).
        keys: one sample's reached kinks (after ``links.distinct``).
        base: that sample's selectors at the base side (``Keys.base[row]``).
        cache: site -> (the map site its operand copies, the copies' ids), filled here.
    Returns:
        The keys that may move an entry, in their order.
    """
    sites = {id(site.node): i for i, site in enumerate(s.sites) if site.selector is None}
    moving = {(k.site, k.entry) for k in keys if k.atom >= 0 and not k.links}
    moving |= {(i, e) for k in keys for i, _, e, _ in k.links}
    pieces: dict = {}  # (site, pieces) -> the body's constant there, or None
    out = []
    for k in keys:
        site = s.sites[k.site]
        if k.atom >= 0 or k.links or site.selector is None:
            out.append(k)
            continue
        if k.site not in cache:
            found = sources_of(site.node.args[0])
            cache[k.site] = None if found is None or id(found[0]) not in sites else (
                sites[id(found[0])], found[1].reshape(-1))
        if cache[k.site] is None:
            out.append(k)
            continue
        root, src = cache[k.site]
        got = {_constant(s, root, int(src[site.index[k.entry, o]]), base, moving, pieces)
               for o in k.options}
        values = {c for c, _ in got}
        if None in values or len(values) != 1 or (len(got) > 1 and values != {0}):
            out.append(k)  # one constant: 0 (computed exactly) or one body at the same sides
    return out


def _constant(s, i: int, e: int, base: dict, moving: set, pieces: dict) -> tuple:
    """(the constant entry ``e`` of map site ``i`` is at its base sides, those sides): e -1 is
    padding, 0; (None, None) where it is not one (a reached kink, a fractional or NaN
    selector, a body that still reads an operand)."""
    if e < 0:
        return sp.Integer(0), None
    if (i, e) in moving:
        return None, None
    site, chosen = s.sites[i], []
    for atom in site.atoms:
        hot = [float(np.asarray(base[n]).reshape(-1)[e]) for n in atom.selectors]
        if sorted(hot) != [0.0] * (len(hot) - 1) + [1.0]:
            return None, None
        chosen.append(hot.index(1.0))
    key = (i, tuple(chosen))
    if key not in pieces:
        pieces[key] = _body_at(site, chosen)
    return pieces[key], key


def _body_at(site, chosen: list) -> sp.Expr | None:
    """The site's body with each atom replaced by its chosen piece (nested atoms too), if that
    is a number; else None."""
    body = site.node.attrs["expr"]
    swap = {a.expr: a.pieces[c] for a, c in zip(site.atoms, chosen)}
    for _ in range(len(swap) + 1):  # an atom inside another's piece: replaced on a later round
        body = body.xreplace(swap)
    return body if body.is_number and body.is_finite else None
