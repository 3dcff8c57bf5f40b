"""An expression's free symbols, kept per expression: sympy walks the whole tree on every read
of ``free_symbols``, and the pipeline reads it for the same bodies again and again (a derived
program's VJP bodies, ``tensor.program.map_``; every pass of the oracle's walks over the sides
of the kinks, ``precise.walk.evaluate``). Sympy expressions are immutable and compare by
structure, so an equal expression has the same free symbols; the table holds at most ``CAP``
expressions (cleared when full) and a lost race between threads only computes one twice.

>>> import sympy as sp
>>> x, y = sp.symbols("x y")
>>> sorted(map(str, free_symbols(x * y + 1)))
['x', 'y']
"""

from __future__ import annotations

import sympy as sp

CAP = 1 << 12
_FREE: dict = {}


def free_symbols(e: sp.Basic) -> frozenset:
    """``e.free_symbols``, computed once per distinct expression."""
    got = _FREE.get(e)
    if got is None:
        got = frozenset(e.free_symbols)
        if len(_FREE) >= CAP:
            _FREE.clear()
        _FREE[e] = got
    return got
