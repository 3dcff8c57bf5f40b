"""What a report says about a verified model, as rows and sentences: its verdict (word, badge,
tally), the per-backend and per-model tables, the error statistics per parameter, the verdict
rule in words. Shared by the model pages and the index."""

from __future__ import annotations

import html
import platform
from dataclasses import dataclass

import numpy as np

from ..version import __version__
from ..compare import FAILING, STATUS_NAMES
from ..model import Model
from ..result import Result


BADGE_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}


@dataclass
class Entry:
    """A verified model, what the report needs of it."""

    model: Model
    result: Result
    seconds: float


def environment(result: Result) -> dict:
    import flint
    import mpmath
    import sympy
    import torch

    return {"symgrad": __version__, "sympy": sympy.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "mpmath": mpmath.__version__,
            "python-flint": flint.__version__,
            "python": platform.python_version(), "device": result.config.device,
            "dtype": result.config.dtype, "seed": result.config.seed,
            "samples": result.config.samples}


def verdict_word(verdict: str) -> str:
    """PASS / FAIL / INCONCLUSIVE: how a verdict is written in the reports."""
    return verdict.upper()


def badge(verdict: str) -> str:
    """An HTML badge for a verdict: green pass, red fail, amber inconclusive."""
    return (f'<span class="verdict verdict-{html.escape(verdict)}" style="background:'
            f'{BADGE_COLOURS[verdict]};color:#fff;padding:1px 6px;border-radius:3px;'
            f'font-weight:bold">{verdict_word(verdict)}</span>')


def tally(entries: list["Entry"]) -> str:
    """"N of M models passed, K inconclusive, F failed"."""
    v = [e.result.verdict for e in entries]
    text = (f"{v.count('pass')} of {len(v)} models passed, {v.count('inconclusive')} "
            f"inconclusive, {v.count('fail')} failed.")
    if "inconclusive" in v:  # what the word means, once, in plain words
        text += (" Inconclusive: nothing was proven wrong, but some entries could not be proven "
                 "right either (the dtype cannot resolve them there, e.g. an exact value smaller "
                 "than its rounding allowance); each model's page names them and why.")
    return text


def deciding_sentence(r: Result) -> str:
    apart = [n for n in r.comparisons if not r.decides(n)]
    if not apart:
        return f"Decided by {', '.join(r.deciding)}."
    return (f"Decided by {', '.join(r.deciding)} (the code verified); symgrad's own programs "
            f"({', '.join(apart)}) are compared and shown apart: their findings do not decide "
            "the verdict.")


def _counts_row(counts: dict[str, int]) -> dict[str, int]:
    failing = {STATUS_NAMES[k] for k in FAILING}
    row = {name: n for name, n in counts.items() if name not in failing}
    row["failures"] = sum(n for name, n in counts.items() if name in failing)
    return row


def backend_rows(entry: Entry, *, with_model: bool) -> list[dict]:
    """One row per backend: verdict, how close to failing, digits, entries per status."""
    r, rows = entry.result, []
    for name in r.comparisons:
        s = r.summary(name)
        row = {"model": entry.model.name} if with_model else {}
        res = s["resolution"]["entry"]
        row.update({"backend": name, "dtype": s["dtype"], "verdict": verdict_word(s["verdict"]),
                    "decides": "yes" if s["decides"] else "no (symgrad's own program)",
                    "resolution (entry test)": "-" if res is None else f"{res:.2g}",
                    "worst error / allowance": fmt(s["worst_error_over_allowance"]),
                    "correct digits (worst)": f"{s['worst_correct_digits']:.1f} of "
                                              f"{s['dtype_digits']:.1f}"})
        row.update(_counts_row(s["counts"]))
        rows.append(row)
    return rows


def model_rows(entries: list[Entry]) -> list[dict]:
    """One row per model: the verdict and the closest any backend came to failing."""
    rows = []
    for e in entries:
        r = e.result
        sums = [r.summary(n) for n in r.comparisons]
        row = {"model": e.model.name, "verdict": verdict_word(r.verdict),
               "worst error / allowance": fmt(max((s["worst_error_over_allowance"]
                                                    for s in sums), default=0.0)),
               "correct digits (worst)": "{:.1f}".format(min(
                   (s["worst_correct_digits"] for s in sums), default=0.0)),
               "samples checked": len(r.oracle_samples)}
        row.update(_counts_row(r.total_counts()))
        rows.append(row)
    return rows


def stats_rows(r: Result) -> list[dict]:
    rows = []
    for label, cols in r.output_groups():
        row = {"output": label}
        for name in r.comparisons:
            row[f"{name} error/allowed"] = _num(r.worst_ratio(name, cols))
            row[f"{name} max ULPs"] = _num(r.worst_ulps(name, cols))
            row[f"{name} median ULPs"] = _num(r.median_ulps(name, cols))
        rows.append(row)
    return rows


def _num(v: float):
    return v if np.isfinite(v) else str(v)


def fmt(v) -> str:
    if isinstance(v, str):
        return v
    if not np.isfinite(v):
        return "non-finite" if v > 0 else str(v)
    return "0" if v == 0 else f"{v:.3g}"


def resolution_text(r: Result) -> str:
    """Resolution per backend, in words (the entry test's; ``Result.resolution``)."""
    return "Resolution: " + "; ".join(f"{n}: {r.resolution(n)['text']}" for n in r.comparisons) \
        + "."


def verdict_rule(entries: list[Entry]) -> str:
    if not entries:
        return ""
    return ("A model passes when every checked entry of its deciding backends (the user's code "
            "when there is some, else symgrad's own programs) satisfies " +
            entries[0].result.config.tolerance.rule() + "; it fails on any failing entry, and "
            "is inconclusive when none fails but an entry is inconclusive or suspect (never "
            "counted as a pass). The worst error / allowance says "
            "how close it came to failing (1 is the limit); correct digits are those of the "
            "worst relative error (at an exact zero, relative to the scale of the terms).")
