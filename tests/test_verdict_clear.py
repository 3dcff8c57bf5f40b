"""verdict.all_clear: the one max pass that settles a status array of ok and precision-loss
entries gives the verdict and each block row's verdict that the per-code ``isin`` / equality
passes gave, on random status arrays over every code (each code alone, planted in a sea of
ok entries, and mixed), int8 as the compare writes them and other integer widths."""

from __future__ import annotations

import numpy as np
import pytest

from symgrad import verdict as vmod
from symgrad.compare import FAILING, INCONCLUSIVE, KINK, LOSS, SUSPECT
from symgrad.compare.entries import OK, STATUS_NAMES
from symgrad.result_text import ResultText

CODES = sorted(STATUS_NAMES)


def _slow_verdict(statuses) -> str:  # the rule as written before the max pass
    statuses = list(statuses)
    if any(np.isin(st, FAILING).any() for st in statuses):
        return vmod.FAIL
    if any(np.isin(st, vmod.UNRESOLVED).any() for st in statuses):
        return vmod.UNDECIDED
    return vmod.PASS


def _cases():
    rng = np.random.default_rng(0)
    out = [np.zeros((1, 0), np.int8), np.zeros((2, 5), np.int8)]
    for code in CODES:  # each code planted once among ok entries, and alone
        a = np.zeros((1, 50), np.int8)
        a[0, int(rng.integers(50))] = code
        out += [a, np.full((1, 3), code, np.int8)]
    for _ in range(40):  # mixed: two to four codes
        pick = rng.choice(CODES, size=int(rng.integers(2, 5)), replace=False)
        out.append(rng.choice(pick, size=(2, 30)).astype(np.int8))
    return out


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8])
def test_verdict_of_is_the_isin_rule(dtype):
    cases = [c.astype(dtype) for c in _cases()]
    for st in cases:
        assert vmod.verdict_of([st]) == _slow_verdict([st]), st
        assert vmod.all_clear(st) == bool(np.isin(st, (OK, LOSS)).all())  # ok, losses only
    for a, b in zip(cases, cases[1:]):
        assert vmod.verdict_of([a, b]) == _slow_verdict([a, b])


class _Comp:
    def __init__(self, status):
        self.status = status


def _slow_row(comparisons, cols, names) -> str:  # ResultText._row_verdict before the max pass
    verdict, unresolved, suspect = "ok", 0, 0
    for name in names:
        st = comparisons[name].status[:, cols]
        unresolved = max(unresolved, int((st == INCONCLUSIVE).sum()))
        suspect = max(suspect, int((st == SUSPECT).sum()))
        if np.isin(st, FAILING).any():
            verdict = "FAIL"
        elif verdict == "ok" and (st == LOSS).any():
            verdict = "ok (precision loss)"
        elif verdict == "ok" and (st == KINK).any():
            verdict = "ok (kink)"
    return verdict, unresolved, suspect


def test_row_verdict_is_the_per_code_rule():
    cases = _cases()
    seen = set()
    pairs = [(a, np.zeros_like(a)) for a in cases] + [(a, np.full_like(a, LOSS)) for a in cases]
    pairs += [(a, b) for a, b in zip(cases, cases[1:]) if a.shape == b.shape]
    for a, b in pairs:
        text = ResultText.__new__(ResultText)
        text.comparisons = {"x": _Comp(a), "y": _Comp(b)}
        for names in (["x"], ["y"], ["x", "y"], ["y", "x"]):
            cols = slice(0, a.shape[1])
            got = ResultText._row_verdict(text, cols, names)
            want, unresolved, suspect = _slow_row(text.comparisons, cols, names)
            if want != "FAIL" and (unresolved or suspect):
                assert got.startswith("inconclusive (")
            else:
                assert got == want
            seen.add(got.split(" (")[0] if got.startswith("inconclusive") else got)
    assert {"ok", "ok (precision loss)", "ok (kink)", "FAIL", "inconclusive"} <= seen
