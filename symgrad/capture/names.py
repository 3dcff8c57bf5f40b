"""A captured run's names in the user's own: a module parameter's dotted name (``conv1.weight``,
not the block name ``conv1_weight``), entries indexed as ``[0, 3]`` (applied to a Result by
``symgrad.capture.gradcheck.by_own_names``, a floor up).

>>> renamer({"conv1_weight": "conv1.weight"})("d/dconv1_weight[0,3] and conv1_weight")
'd/dconv1.weight[0, 3] and conv1.weight'
"""

from __future__ import annotations

import re
from typing import Callable

from .export import PREFIX, Slot


def own_labels(slots: list[Slot]) -> dict[str, str]:
    """Block name -> the user's name: a module's dotted parameter or buffer name, an
    argument's own name, a dropout keep-mask's (``drop.keep``)."""
    return {s.name: s.label or (str(s.key)[len(PREFIX):] if s.source == "state" else s.name)
            for s in slots if s.source != "tied"}  # a tied weight: the first name (emb.weight,
    #   was emb_weight: the tied slot shares its block's name and overwrote it; newuser10)


def renamer(labels: dict[str, str]) -> Callable[[str], str]:
    """``text -> text`` with every block name (a whole word, or after ``d/d`` / ``Hv:``, with
    its entry index if any) in the user's name, the index as ``[i, j]`` (one pattern, built
    once: a Result's outputs are renamed with it)."""
    if not labels:
        return lambda text: text
    names = sorted(labels, key=len, reverse=True)
    pattern = re.compile(r"(?:(?<=d/d)|(?<=Hv:)|(?<![\w.]))(" + "|".join(map(re.escape, names))
                         + r")(?:\[([\d, ]+)\])?(?!\w)")

    def sub(m: re.Match) -> str:
        idx = f"[{', '.join(x.strip() for x in m.group(2).split(','))}]" if m.group(2) else ""
        return labels[m.group(1)] + idx
    return lambda text: pattern.sub(sub, text)
