"""A block's entry symbols: ``sg.matrix``'s ``name_{i,j}`` symbols, and their names as messages
write them (``W[i,j]``, ``entry_name``): the one place that format is written and read.

>>> matrix("W1", 2, 3)[1, 2], entry_name(matrix("W1", 2, 3)[1, 2])
(W1_{1,2}, 'W1[1,2]')
"""

from __future__ import annotations

import keyword
import re

import numpy as np
import sympy as sp

from .errors import SymgradError, checked_keywords

# an ``sg.matrix`` entry symbol's name: its block's name and its index (``W1_{0,3}``)
ENTRY = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*?)_\{(?P<idx>\d+(?:,\d+)*)\}$")


@checked_keywords  # a misspelled keyword: one line naming it and the one meant
def matrix(name: str, rows: int, cols: int | None = None) -> sp.ImmutableMatrix:
    """A matrix (or, with ``cols`` omitted, a column vector) of symbols named ``name_{i,j}``.

    Arguments:
        name: a Python identifier; a ``torch_fn`` receives this block under this name.
        rows, cols: the shape; a vector has shape ``(rows,)`` for ``torch_fn``.
    Returns:
        An immutable sympy Matrix (usable with ``@``, ``.T``, ``.reshape``; hashable as a key).

    >>> matrix("W1", 2, 3)[1, 2]
    W1_{1,2}
    """
    if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
        raise SymgradError(f"matrix name {name!r} must be a Python identifier (e.g. 'W1')")
    for what, n in (("rows", rows), ("cols", cols)):
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
            raise SymgradError(f"matrix({name!r}): {what} must be a positive integer, got {n!r}")
    if cols is None:
        return sp.ImmutableMatrix(rows, 1, [sp.Symbol(f"{name}_{{{i}}}", real=True)
                                            for i in range(rows)])
    return sp.ImmutableMatrix(rows, cols, [sp.Symbol(f"{name}_{{{i},{j}}}", real=True)
                                           for i in range(rows) for j in range(cols)])


def entry_name(symbol: sp.Symbol) -> str:
    """A symbol's name as messages write a block entry (``W_{0,3}`` -> ``W[0,3]``, as
    ``Block.entry_names``); any other name as it is.

    >>> entry_name(matrix("W1", 2, 3)[1, 2]), entry_name(sp.Symbol("w"))
    ('W1[1,2]', 'w')
    """
    m = ENTRY.match(symbol.name)
    return f"{m.group('base')}[{m.group('idx')}]" if m else symbol.name
