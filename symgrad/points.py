"""One reading of a point given by the user (``at=`` of verify, explain and exact_at): keys are
block names or the blocks' own objects (sympy symbols, tensor leaves), every one checked."""

from __future__ import annotations

from .errors import SymgradError


def by_name(model, given: dict, what: str, *, complete: bool = False) -> dict:
    """Keys of ``at=`` / a point as block names: strings, or the blocks' sympy symbols.

    Arguments:
        model: the model whose ``blocks`` the keys name.
        given: the user's dict, block name or symbol -> values.
        what: how the error names the argument (``"at"``, ``"exact_at"``).
        complete: every block must have a value.
    Returns:
        A new dict, block name -> values.
    Raises:
        SymgradError: ``given`` is no dict, a key is neither a name nor a symbol, or names no
            block, or (``complete``) a block has none (the message lists the blocks).

    >>> import sympy as sp
    >>> from symgrad import zoo
    >>> sorted(by_name(zoo.get("neuron"), {sp.Symbol("w"): 1, "x": 2, "b": 0, "y": 1}, "at"))
    ['b', 'w', 'x', 'y']
    """
    if not isinstance(given, dict):
        raise SymgradError(f"{what} must be a dict of block name (or symbol) -> values, got "
                           f"{type(given).__name__}")
    out = {}
    for k, v in given.items():
        name = getattr(k, "name", None) if not isinstance(k, str) else k
        if not isinstance(name, str):
            raise SymgradError(f"{what}: key {k!r} is neither a block name nor a symbol; "
                               f"blocks: {', '.join(b.name for b in model.blocks)}")
        out[name] = v
    known = {b.name for b in model.blocks}
    unknown, missing = sorted(set(out) - known), sorted(known - set(out))
    if unknown:  # a typo names itself, and the block it probably meant
        raise SymgradError(f"{what}: unknown name(s) {unknown}"
                           + (f"; missing {missing}" if missing else "")
                           + f"; the blocks are {', '.join(b.name for b in model.blocks)}")
    if complete and missing:
        raise SymgradError(f"{what}: no value for {missing[0]!r}; give every parameter and "
                           f"input: {', '.join(b.name for b in model.blocks)}")
    return out
