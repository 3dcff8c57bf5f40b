"""Verification reports: Markdown, JSON, self-contained HTML (MathML, embedded plots).

``write_reports`` writes ``index.md``/``index.html`` and per model ``<name>.md``, ``.html``,
``.json`` and ``<name>.png`` as one complete set: everything is staged in a sibling folder and
swapped into place at the end, so an interrupted run leaves the previous set untouched. The JSON
is byte-identical for the same seed and versions (no timestamps: run times are in the HTML only).
"""

from __future__ import annotations

import base64
import html
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ..compare import EXPLANATIONS, FAILING, STATUS_NAMES
from ..present.htmlpage import page
from ..model import Model
from ..result import Failure, Result
from .atomic import write_set
from ..present import formulas as scalar_formulas
from ..present import tensor_formulas
from ..present.formulas import Formula
from .plots import ulp_histogram

SCHEMA_VERSION = 2
MAX_FINDINGS = 10  # findings shown per list on a page; the JSON keeps what the result holds


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

    from .. import __version__
    return {"symgrad": __version__, "sympy": sympy.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "mpmath": mpmath.__version__,
            "python-flint": flint.__version__,
            "python": platform.python_version(), "device": result.config.device,
            "dtype": result.config.dtype, "seed": result.config.seed,
            "samples": result.config.samples}


def _is_tensor(model) -> bool:
    from ..tensor.model import TensorModel
    return isinstance(model, TensorModel)


def model_formulas(model) -> list[Formula]:
    """The model one line per op: from the tensor program for a tensor model (a GPT), from
    the scalar program otherwise."""
    return (tensor_formulas if _is_tensor(model) else scalar_formulas).model_formulas(model)


def gradient_formulas(model) -> list[tuple[str, list[Formula]]]:
    return (tensor_formulas if _is_tensor(model) else scalar_formulas).gradient_formulas(model)


def _oracle(r: Result, model) -> dict:
    """How the exact values were obtained, for the JSON."""
    which = f"the first {len(r.oracle_samples)} of {r.config.samples}"
    if _is_tensor(model):
        return {"method": "double-double tensor program (error-free Ozaki products), certified "
                          "by python-flint arb ball arithmetic on sample 0",
                "certified": r.program_size.get("oracle_certified", ""),
                "samples_checked": len(r.oracle_samples), "which": which}
    return {"method": "python-flint arb ball arithmetic, precision doubled until each entry is "
                      "certified",
            "bits": r.oracle_bits, "samples_checked": len(r.oracle_samples), "which": which}


# ------------------------------------------------------------------ verdicts
BADGE_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}


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


def _deciding_sentence(r: Result) -> str:
    apart = [n for n in r.comparisons if not r.decides(n)]
    if not apart:
        return f"Decided by {', '.join(r.deciding)}."
    return (f"Decided by {', '.join(r.deciding)} (the code verified); symgrad's own programs "
            f"({', '.join(apart)}) are compared and shown apart: their findings do not decide "
            "the verdict.")


# ------------------------------------------------------------------ figures
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
                    "worst error / allowance": _fmt(s["worst_error_over_allowance"]),
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
               "worst error / allowance": _fmt(max((s["worst_error_over_allowance"]
                                                    for s in sums), default=0.0)),
               "correct digits (worst)": _fmt_digits(min((s["worst_correct_digits"]
                                                          for s in sums), default=0.0)),
               "samples checked": len(r.oracle_samples)}
        row.update(_counts_row(r.total_counts()))
        rows.append(row)
    return rows


def _fmt_digits(d: float) -> str:
    return f"{d:.1f}"


def _stats(r: Result) -> list[dict]:
    rows = []
    for label, cols in [("value", slice(0, 1))] + [(f"d/d{n}", slice(a, b))
                                                   for n, a, b in r.blocks]:
        row = {"output": label}
        for name in r.comparisons:
            row[f"{name} error/allowed"] = _num(r.worst_ratio(name, cols))
            row[f"{name} max ULPs"] = _num(r.worst_ulps(name, cols))
            row[f"{name} median ULPs"] = _num(r.median_ulps(name, cols))
        rows.append(row)
    return rows


def _num(v: float):
    return v if np.isfinite(v) else str(v)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if not np.isfinite(v):
        return "non-finite" if v > 0 else str(v)
    return "0" if v == 0 else f"{v:.3g}"


# ------------------------------------------------------------------ findings
def _finding_lists(r: Result) -> list[tuple[str, list[Failure], int]]:
    """(title, shown findings worst first, how many entries the list stands for)."""
    n = r.finding_counts()
    out = []
    if n["failures"]:
        out.append(("failures", r.findings("failures"), n["failures"]))
    if n["warnings"]:
        out.append(("precision-loss warnings", r.findings("warnings"), n["warnings"]))
    undecided = [f for f in r.undecided if r.decides(f.backend)]
    if undecided:  # what makes the run inconclusive, each with why
        total = sum(int(r.counts(b)["inconclusive"] + r.counts(b)["suspect"])
                    for b in r.deciding)
        out.append(("inconclusive entries", undecided, total))
    return out


def _reproduce(r: Result) -> str:
    c = r.config
    return (f"sample i is `draw(model, sg.VerifyConfig(samples={c.samples}, seed={c.seed}, "
            f"dtype={c.dtype!r})).values[block][i]` (`from symgrad.verify import draw`); the "
            "full point of every sample named here is in the JSON under `points`")


def _finding_row(r: Result, f: Failure) -> dict:
    m = r.measure(f)
    who = (f.backend if r.decides(f.backend)
           else f"{f.backend} (symgrad's own program, not deciding)")
    return {"backend": who, "kind": f.kind, "output": f.output, "sample": f.sample,
            "expected": repr(f.expected), "got": repr(f.got),
            "error / allowance": _fmt(m["error_over_allowance"]), "ULPs": _fmt(m["ulps"]),
            "cause": f.cause or (f.note if f.kind == "inconclusive" else "-")}


def _findings_md(r: Result) -> list[str]:
    out = ["## Findings", ""]
    lists = _finding_lists(r)
    if not lists:
        return out + ["None: every backend is within the bound on every checked sample.", ""]
    kinds = sorted({f.kind for _, fs, _ in lists for f in fs})
    out += [f"- **{k}**: {EXPLANATIONS[k]}" for k in kinds] + [""]
    for title, shown, total in lists:
        k = min(len(shown), MAX_FINDINGS)
        out += [f"### {title.capitalize()}: showing {k} of {total}, worst first", "",
                tabulate([_finding_row(r, f) for f in shown[:MAX_FINDINGS]], headers="keys",
                         tablefmt="github", disable_numparse=True), ""]
    return out + [f"To reproduce: {_reproduce(r)}.", ""]


def _findings_html(r: Result) -> str:
    lists = _finding_lists(r)
    if not lists:
        return "<p>None: every backend is within the bound on every checked sample.</p>"
    out = []
    for title, shown, total in lists:
        k = min(len(shown), MAX_FINDINGS)
        out.append(f"<h3>{html.escape(title.capitalize())}: showing {k} of {total}, worst "
                   "first</h3>")
        out.append(tabulate([_finding_row(r, f) for f in shown[:MAX_FINDINGS]],
                            headers="keys", tablefmt="html", disable_numparse=True))
    return "".join(out) + f"<p>To reproduce: {html.escape(_reproduce(r))}.</p>"


def _points(entry: Entry) -> dict:
    """The full point (every block) of each sample a finding names, by sample index."""
    from ..verify import draw
    r = entry.result
    named = sorted({f.sample for f in r.failures + r.precision_losses + r.worst + r.kinks
                    + r.undecided})
    if not named:
        return {}
    try:
        values = draw(entry.model, r.config).values
    except Exception:  # noqa: BLE001 - a result verified on explicit points has no draw
        return {}
    return {str(i): {b: np.asarray(v[i]).tolist() for b, v in values.items()} for i in named}


# ------------------------------------------------------------------ pages
def model_json(entry: Entry) -> dict:
    r = entry.result
    return {"schema_version": SCHEMA_VERSION, "environment": environment(r),
            "description": entry.model.description,
            "steps": [f.as_dict() for f in model_formulas(entry.model)],
            "result": r.as_dict(),
            "summary": {n: r.summary(n) for n in r.comparisons},
            "stats": _stats(r),
            "worst_samples": [f.as_dict() for f in r.worst],
            "findings": {title: {"total": total,
                                 "shown": [dict(f.as_dict(), **r.measure(f)) for f in shown]}
                         for title, shown, total in _finding_lists(r)},
            "points": _points(entry),
            "reproduce": _reproduce(r),
            "tolerance": r.config.tolerance.as_dict(),
            "oracle": _oracle(r, entry.model)}


def _formulas_md(formulas: list[Formula]) -> list[str]:
    out = []
    for f in formulas:
        if f.note:
            out += [f.note, ""]
        if f.latex:
            out += [f"$${f.latex}$$", ""]
    return out


def _formulas_html(formulas: list[Formula]) -> str:
    out = []
    for f in formulas:
        if f.note:
            out.append(f"<p>{html.escape(f.note)}</p>")
        if f.mathml:
            out.append(f"<p>{f.mathml}</p>")
    return "".join(out)


def _summary_sentence(entry: Entry) -> str:
    r = entry.result
    how = (f"certified ball arithmetic, up to {r.oracle_bits.get('max', 0)} bits"
           if not _is_tensor(entry.model) else
           "double-double tensor program, certified by ball arithmetic on "
           + r.program_size.get("oracle_certified", "sample 0"))
    return (f"{len(r.oracle_samples)} of {r.config.samples} samples checked against the exact "
            f"derivative ({how}); {r.config.dtype} on {r.config.device}, seed {r.config.seed}.")


def model_markdown(entry: Entry, png_name: str) -> str:
    r, m = entry.result, entry.model
    grad = gradient_formulas(m)
    out = [f"# {m.name}: {verdict_word(r.verdict)}", "", m.description, "",
           _summary_sentence(entry), "", _deciding_sentence(r), "", "## Summary per backend", "",
           tabulate(backend_rows(entry, with_model=False), headers="keys", tablefmt="github"),
           "", _resolution_text(r), "", "## Model", ""]
    out += _formulas_md(model_formulas(m))
    out += ["## Gradient", ""]
    for title, formulas in grad:
        out += [f"### {title}", ""] + _formulas_md(formulas)
    out += ["## Error per parameter", "",
            "error/allowed: the worst error as a fraction of its allowance (over 1 fails); "
            "ULPs of the backend's dtype (at an exact zero: ULPs of the scale of the terms "
            "that produced it).", "",
            tabulate([{k: _fmt(v) for k, v in row.items()} for row in _stats(r)],
                     headers="keys", tablefmt="github"), "",
            f"![error histogram]({png_name})", ""]
    out += _findings_md(r)
    out += ["## Verdict rule", "", r.config.tolerance.rule(), ""]
    return "\n".join(out)


def model_html(entry: Entry, png: bytes) -> str:
    r, m = entry.result, entry.model
    stats = tabulate([{k: _fmt(v) for k, v in row.items()} for row in _stats(r)],
                     headers="keys", tablefmt="html")
    grad = "".join(f"<h3>{html.escape(t)}</h3>{_formulas_html(fs)}"
                   for t, fs in gradient_formulas(m))
    img = base64.b64encode(png).decode("ascii")
    body = f"""
<p>{html.escape(m.description)}</p>
<p><b>Verdict:</b> {badge(r.verdict)} — {html.escape(_summary_sentence(entry))}
Verified in {entry.seconds:.2f} s.</p>
<p>{html.escape(_deciding_sentence(r))}</p>
<h2>Summary per backend</h2>
{tabulate(backend_rows(entry, with_model=False), headers="keys", tablefmt="html")}
<p>{html.escape(_resolution_text(r))}</p>
<h2>Model</h2>{_formulas_html(model_formulas(m))}
<h2>Gradient</h2>{grad}
<h2>Error per parameter</h2>
<p>error/allowed: the worst error as a fraction of its allowance (over 1 fails); ULPs of the
backend's dtype (at an exact zero: ULPs of the scale of the terms that produced it).</p>{stats}
<p><img alt="error histogram" src="data:image/png;base64,{img}"></p>
<h2>Findings</h2>{_findings_html(r)}
<h2>Verdict rule</h2><p>{html.escape(r.config.tolerance.rule())}</p>
"""
    return page(f"symgrad: {m.name}", body)


def _resolution_text(r: Result) -> str:
    """Resolution per backend, in words (the entry test's; ``Result.resolution``)."""
    return "Resolution: " + "; ".join(f"{n}: {r.resolution(n)['text']}" for n in r.comparisons) \
        + "."


def _verdict_rule(entries: list[Entry]) -> str:
    if not entries:
        return ""
    return ("A model passes when every checked entry of its deciding backends (the user's code "
            "when there is some, else symgrad's own programs) satisfies " +
            entries[0].result.config.tolerance.rule() + "; it fails on any failing entry, and "
            "is inconclusive when none fails but an entry is inconclusive or suspect (never "
            "counted as a pass). The worst error / allowance says "
            "how close it came to failing (1 is the limit); correct digits are those of the "
            "worst relative error (at an exact zero, relative to the scale of the terms).")


def index_markdown(entries: list[Entry]) -> str:
    env = environment(entries[0].result) if entries else {}
    per_backend = [row for e in entries for row in backend_rows(e, with_model=True)]
    return "\n".join([
        "# symgrad verification reports", "",
        tally(entries), "",
        "## Verdict per model", "",
        tabulate(model_rows(entries), headers="keys", tablefmt="github"), "",
        "## Per backend", "", tabulate(per_backend, headers="keys", tablefmt="github"), "",
        "Per model: " + ", ".join(f"[{e.model.name}]({e.model.name}.md)" for e in entries), "",
        "## Verdict rule", "", _verdict_rule(entries), "",
        "## Environment", "",
        tabulate(sorted(env.items()), headers=["setting", "value"], tablefmt="github"), ""])


def index_html(entries: list[Entry]) -> str:
    env = environment(entries[0].result) if entries else {}
    rows = [dict(row, model=f'<a href="{e.model.name}.html">{e.model.name}</a>',
                 verdict=badge(e.result.verdict), seconds=f"{e.seconds:.2f}")
            for row, e in zip(model_rows(entries), entries)]
    per_backend = [row for e in entries for row in backend_rows(e, with_model=True)]
    body = (f"<p>{html.escape(tally(entries))}</p>"
            "<h2>Verdict per model</h2>"
            + tabulate(rows, headers="keys", tablefmt="unsafehtml")
            + "<h2>Per backend</h2>" + tabulate(per_backend, headers="keys", tablefmt="html")
            + f"<h2>Verdict rule</h2><p>{html.escape(_verdict_rule(entries))}</p>"
            + "<h2>Environment</h2>"
            + tabulate(sorted(env.items()), headers=["setting", "value"], tablefmt="html"))
    return page("symgrad verification reports", body)


def render_files(entries: list[Entry]) -> dict[str, bytes | str]:
    """Every file of the report set, name -> content (nothing written)."""
    files: dict[str, bytes | str] = {}
    for e in entries:
        name = e.model.name
        png = ulp_histogram(e.result)
        files[f"{name}.png"] = png
        files[f"{name}.json"] = json.dumps(model_json(e), indent=2, sort_keys=True) + "\n"
        files[f"{name}.md"] = model_markdown(e, f"{name}.png")
        files[f"{name}.html"] = model_html(e, png)
    files["index.md"] = index_markdown(entries)
    files["index.html"] = index_html(entries)
    return files


def write_reports(entries: list[Entry], out: Path) -> list[Path]:
    """Write the complete report set to ``out`` (staged beside it, then swapped in).

    Arguments:
        entries: the verified models.
        out: the output folder; files of an earlier run not in this set are kept.
    Returns:
        The paths written.
    """
    return write_set(Path(out), render_files(entries))
