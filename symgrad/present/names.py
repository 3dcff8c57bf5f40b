"""How a program name splits for display: a user's ``x1`` into base ``x`` and subscript ``1``
(sympy's x_1); a layer's weights, which symgrad itself numbers (the zoo's ``W1``: a model's
``layer_names``, printed inside ``with layer_names(...)``), into base ``W`` and the layer
superscript ``(1)``; an entry's index ``_{0,3}`` after them (``W1_{0,3}``: W^(1)_{0,3}, a user's
``x1_{0}``: x_{1;0}); the k-th step of one label (``tanh#6``) with the ordinal superscript
``(6th)``; a layer rule's function of named arrays (``lse(W2_out)``). ``notation`` prints them.

>>> split_name("x1"), split_name("tanh#6"), applied_name("pick(Z, y)")
(('x', '', '1'), ('tanh', '(6th)', ''), ('pick', ['Z', 'y']))
>>> with layer_names({"W1"}):
...     split_name("W1_{0,3}"), split_name("w1_{0,3}")
(('W', '(1)', '0,3'), ('w', '', '1;0,3'))
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable, Iterator

_NAME = re.compile(r"^(?P<base>[A-Za-z]+?)(?P<num>\d*)"
                   r"(?:_\{(?P<idx>[\d,]+)\}|_(?P<sub>[A-Za-z]))?$")
# any other name: words joined by "_" (one upright name: cross_entropy, W1_out, however it is
# indexed), an optional index ``_{i,j}``, an optional counter ``_n``
_LONG = re.compile(r"^(?P<stem>.*?)(?:_\{(?P<idx>[\d,]+)\})?(?:_(?P<count>\d+))?$")
GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda", "mu", "sigma", "tau",
         "phi", "psi", "omega", "rho", "eta", "kappa", "nu", "xi", "pi", "chi", "zeta")
GREEK_LETTERS = {"sigma": "σ", "delta": "δ", "alpha": "α", "beta": "β", "gamma": "γ", "mu": "μ",
                 "epsilon": "ε", "theta": "θ", "lambda": "λ"}  # as MathML prints them


_LAYERED: set[str] = set()  # names whose number is a layer's, while ``layer_names`` holds them


@contextlib.contextmanager
def updated(container, items) -> Iterator[None]:
    """``container`` (a dict or a set) with ``items`` added for the ``with`` block, then as it
    was (``layer_names``, ``notation.names_from``)."""
    saved = container.copy()
    container.update(items)
    try:
        yield
    finally:
        container.clear()
        container.update(saved)


def layer_names(names: Iterable[str]) -> contextlib.AbstractContextManager[None]:
    """``with layer_names(model.layer_names): latex(...)`` prints those names' trailing number
    as the layer superscript (the zoo's ``W1`` as W^(1)); every other name's as a subscript.

    Arguments:
        names: block or step-label names without an entry index (``W1``, ``h0_W1``), as the
            model that numbers them lists them (``Model.layer_names``).

    >>> with layer_names(["W1"]):
    ...     split_name("W1")
    ('W', '(1)', '')
    >>> split_name("W1")
    ('W', '', '1')
    """
    return updated(_LAYERED, set(names))


def stem_of(name: str) -> str:
    """The name without its entry index and step ordinal: ``W1_{0,3}#2`` -> ``W1``."""
    return re.sub(r"_\{[\d,]+\}$", "", name.partition("#")[0])


def split_name(name: str) -> tuple[str, str, str]:
    """``x1`` -> (``x``, ``""``, ``1``); inside ``layer_names({"W1"})``, ``W1_{0,3}`` -> (``W``,
    ``(1)``, ``0,3``); a user's ``w1_{0,3}`` -> (``w``, ``""``, ``1;0,3``) (the number, then the
    index); ``dense_44`` -> (``dense``, ``""``, ``44``). Never a double subscript. A trailing
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
    layered = stem_of(name) in _LAYERED
    m = _NAME.match(name)
    if m and (not m.group("sub") or len(m.group("base")) == 1 or m.group("base") in GREEK):
        # a letter's subscript letter (x_t, sigma_i) only: a word's (cross_e) stays in the word
        return (m.group("base"),) + _number(m.group("num"), m.group("idx") or m.group("sub")
                                            or "", layered)
    m = _LONG.match(name)
    stem, idx, count = m.group("stem"), m.group("idx") or "", m.group("count") or ""
    num = re.search(r"\d+$", stem)
    sub = ",".join(x for x in (idx, count) if x)
    if num and num.start() > 0 and stem[num.start() - 1] != "_":
        return (stem[:num.start()],) + _number(num.group(), sub, layered)
    return stem or name, "", sub


def _number(num: str, sub: str, layered: bool) -> tuple[str, str]:
    """(superscript, subscript) of a name's trailing number and its index: a layer's number
    as the superscript ``(1)``, a user's as the subscript before the index (``1;0,3``)."""
    if not num:
        return "", sub
    if layered:
        return f"({num})", sub
    return "", f"{num};{sub}" if sub else num


def is_word(name: str) -> bool:
    """Whether a name prints as an upright word (``sigmoid``, ``W1_out``), not a letter."""
    base = split_name(name)[0]
    return len(base) > 1 and base not in GREEK


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
