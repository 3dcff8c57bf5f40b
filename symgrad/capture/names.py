"""A captured run's rows and messages in the user's own names: a module parameter's dotted name
(``conv1.weight``, not the block name ``conv1_weight``), entries indexed as ``[0, 3]``, and the
confirmation's notes worded for points that are the example and points around it.

>>> rename_text("d/dconv1_weight[0,3] and conv1_weight", {"conv1_weight": "conv1.weight"})
'd/dconv1.weight[0, 3] and conv1.weight'
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..confirm import GIVEN_SAMPLES
from ..result import Failure, Result
from .export import PREFIX, Slot

AROUND_EXAMPLE = ("no fresh samples are drawn on this path (the points are the example "
                  "inputs and points around them)")


def own_labels(slots: list[Slot]) -> dict[str, str]:
    """Block name -> the user's name: a module's dotted parameter or buffer name, an
    argument's own name."""
    return {s.name: (str(s.key)[len(PREFIX):] if s.source == "state" else s.name)
            for s in slots}


def rename_text(text: str, labels: dict[str, str]) -> str:
    """Every block name in ``text`` (as a whole word, with its entry index if any) in the
    user's name, the index as ``[i, j]``; the given-samples reason in the capture's words."""
    text = text.replace(GIVEN_SAMPLES, AROUND_EXAMPLE)
    if not labels:
        return text
    names = sorted(labels, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, names))
                         + r")(?:\[([\d, ]+)\])?(?!\w)")

    def sub(m: re.Match) -> str:
        idx = f"[{', '.join(x.strip() for x in m.group(2).split(','))}]" if m.group(2) else ""
        return labels[m.group(1)] + idx
    return pattern.sub(sub, text)


def rename_output(output: str, labels: dict[str, str]) -> str:
    """An output name (``d/dconv1_weight[0,3]``, ``Hv:x[2]``) in the user's names."""
    for prefix in ("d/d", "Hv:"):
        if output.startswith(prefix):
            return prefix + rename_text(output[len(prefix):], labels)
    return output


def by_own_names(result: Result, labels: dict[str, str], *, findings: bool = True) -> Result:
    """``result`` with its rows, findings (outputs and point keys) and notes in the user's
    names (``findings=False``: the notes only, where the rows are renamed elsewhere)."""
    if findings:
        def fix(f: Failure) -> Failure:
            return replace(f, output=rename_output(f.output, labels),
                           point={labels.get(k, k): v for k, v in f.point.items()})
        result.outputs = [rename_output(o, labels) for o in result.outputs]
        result.blocks = [(labels.get(n, n), a, b) for n, a, b in result.blocks]
        for kind in ("failures", "precision_losses", "kinks", "worst", "undecided"):
            setattr(result, kind, [fix(f) for f in getattr(result, kind)])
    result.comparisons = {
        n: replace(c, unconfirmed=tuple(rename_text(t, labels) for t in c.unconfirmed),
                   evidence=tuple(rename_text(t, labels) for t in c.evidence))
        for n, c in result.comparisons.items()}
    return result
