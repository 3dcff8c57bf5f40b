"""How a program name splits for display: ``W1_{0,3}`` into base ``W``, superscript ``(1)`` and
subscript ``0,3``; the k-th step of one label (``tanh#6``) with the ordinal superscript ``(6th)``;
a layer rule's function of named arrays (``lse(W2_out)``). ``notation`` prints them.

>>> split_name("tanh#6"), split_name("W1_{0,3}"), applied_name("pick(Z, y)")
(('tanh', '(6th)', ''), ('W', '(1)', '0,3'), ('pick', ['Z', 'y']))
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^(?P<base>[A-Za-z]+?)(?P<num>\d*)"
                   r"(?:_\{(?P<idx>[\d,]+)\}|_(?P<sub>[A-Za-z]))?$")
# any other name: words joined by "_" (one upright name: cross_entropy, W1_out, however it is
# indexed), an optional index ``_{i,j}``, an optional counter ``_n``
_LONG = re.compile(r"^(?P<stem>.*?)(?:_\{(?P<idx>[\d,]+)\})?(?:_(?P<count>\d+))?$")
GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda", "mu", "sigma", "tau",
         "phi", "psi", "omega", "rho", "eta", "kappa", "nu", "xi", "pi", "chi", "zeta")


def split_name(name: str) -> tuple[str, str, str]:
    """``W1_{0,3}`` -> (``W``, ``(1)``, ``0,3``); ``attn_keep1_{2,2}`` -> (``attn_keep``, ``(1)``,
    ``2,2``); ``dense_44`` -> (``dense``, ``""``, ``44``). Never a double subscript. A trailing
    ``#k`` (the k-th step with the same label) becomes the superscript ``(kth)``, an ordinal in
    parentheses (``tanh#6`` -> ``tanh^(6th)``), which no reader takes for a power (``[k]``
    was read as one: tanh^[6]); beside a number it joins it (``z1#2`` -> ``(1, 2nd)``)."""
    name, _, again = name.partition("#")
    base, sup, sub = _split(name)
    if again:
        sup = f"({sup[1:-1]}, {ordinal(int(again))})" if sup else f"({ordinal(int(again))})"
    return base, sup, sub


def ordinal(k: int) -> str:
    """``2`` -> ``2nd``, ``11`` -> ``11th``, ``23`` -> ``23rd``."""
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")


def tex_sup(sup: str) -> str:
    r"""A superscript in LaTeX: an ordinal's suffix upright (``(6th)`` -> ``(6\mathrm{th})``)."""
    return ORDINAL.sub(r"\1\\mathrm{\2}", sup)


def _split(name: str) -> tuple[str, str, str]:
    m = _NAME.match(name)
    if m and (not m.group("sub") or len(m.group("base")) == 1 or m.group("base") in GREEK):
        # a letter's subscript letter (x_t, sigma_i) only: a word's (cross_e) stays in the word
        sup = f"({m.group('num')})" if m.group("num") else ""
        return m.group("base"), sup, m.group("idx") or m.group("sub") or ""
    m = _LONG.match(name)
    stem, idx, count = m.group("stem"), m.group("idx") or "", m.group("count") or ""
    num = re.search(r"\d+$", stem)
    sup = ""
    if num and num.start() > 0 and stem[num.start() - 1] != "_":
        sup, stem = f"({num.group()})", stem[:num.start()]
    sub = ",".join(x for x in (idx, count) if x)
    return stem or name, sup, sub


def tex_base(base: str) -> str:
    """A symbol's base in LaTeX: a letter as is, a Greek name as the letter, words upright."""
    if len(base) == 1:
        return base
    if base in GREEK:
        return "\\" + base
    return r"\mathrm{" + base.replace("_", r"\_") + "}"


_APPLIED = re.compile(r"^(?P<func>θ|[A-Za-z]+)\((?P<args>[^()]+)\)$")


def applied_name(name: str) -> tuple[str, list[str]] | None:
    """``lse(W2_out)`` -> (``lse``, [``W2_out``]), ``pick(Z, y)`` -> (``pick``, [``Z``, ``y``]):
    a layer rule's function of named arrays; None for any other name."""
    m = _APPLIED.match(name)
    return (m.group("func"), [a.strip() for a in m.group("args").split(",")]) if m else None
