"""An expression's free symbols, kept per expression: sympy walks the whole tree on every read
of ``free_symbols``, and the pipeline reads it for the same bodies again and again (a derived
program's VJP bodies, ``tensor.program.map_``; every pass of the oracle's walks over the sides
of the kinks, ``precise.walk.evaluate``). Sympy expressions are immutable and compare by
structure, so an equal expression has the same free symbols; ``functools.lru_cache`` keeps the
``CAP`` most recently read (thread-safe).

>>> import sympy as sp
>>> x, y = sp.symbols("x y")
>>> sorted(map(str, free_symbols(x * y + 1)))
['x', 'y']
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

CAP = 1 << 16  # expressions (the walk reads every subexpression of every map body it evaluates)


@lru_cache(maxsize=CAP)
def free_symbols(e: sp.Basic) -> frozenset:
    """``e.free_symbols``, computed once per distinct expression."""
    return frozenset(e.free_symbols)
