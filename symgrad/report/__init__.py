"""Verification reports: Markdown, JSON, self-contained HTML (MathML, embedded plots).

``write_reports`` writes, atomically, ``index.md``/``index.html`` and per model ``<name>.md``,
``.html``, ``.json`` and ``<name>.png``. The JSON is byte-identical for the same seed and
versions (no timestamps: run times appear in the HTML only).
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

from ..compare import EXPLANATIONS
from ..model import Model
from ..notation import latex, mathml
from ..result import Result
from ..htmlpage import page
from .atomic import write_bytes, write_text
from .plots import ulp_histogram

SCHEMA_VERSION = 1
MAX_STEPS = 30  # program steps shown in a report; the rest is counted


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


def model_json(entry: Entry) -> dict:
    r = entry.result
    return {"schema_version": SCHEMA_VERSION, "environment": environment(r),
            "description": entry.model.description, "steps": _steps(entry.model),
            "result": r.as_dict(), "stats": _stats(r),
            "worst_samples": [f.as_dict() for f in r.worst],
            "tolerance": r.config.tolerance.as_dict(),
            "oracle": {"method": "python-flint arb ball arithmetic, precision doubled until "
                                 "each entry is certified",
                       "bits": r.oracle_bits, "samples_checked": len(r.oracle_samples),
                       "which": f"the first {len(r.oracle_samples)} of {r.config.samples}"}}


def _steps(model: Model) -> list[dict]:
    nodes = model.display_graph.nodes
    shown = [{"name": n.name, "latex": f"{latex(n.symbol)} = {latex(_display(n))}"}
             for n in nodes[:MAX_STEPS]]
    if len(nodes) > MAX_STEPS:
        shown.append({"name": "...", "latex": f"\\text{{{len(nodes) - MAX_STEPS} more steps}}"})
    return shown


def _display(node):
    shown = getattr(node.symbol, "shown", None)
    return shown if shown is not None else node.expr


def _stats(r: Result) -> list[dict]:
    rows = []
    for label, cols in [("value", slice(0, 1))] + [(f"d/d{n}", slice(a, b))
                                                   for n, a, b in r.blocks]:
        row = {"output": label}
        for name in r.comparisons:
            row[f"{name} max ULPs"] = _num(r.worst_ulps(name, cols))
            row[f"{name} median ULPs"] = _num(r.median_ulps(name, cols))
        rows.append(row)
    return rows


def _num(v: float):
    return v if np.isfinite(v) else str(v)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    return "0" if v == 0 else f"{v:.3g}"


def model_markdown(entry: Entry, png_name: str) -> str:
    r, m = entry.result, entry.model
    verdict = "OK" if r.ok else "FAIL"
    out = [f"# {m.name}: {verdict}", "", m.description, "",
           f"{len(r.oracle_samples)} of {r.config.samples} samples checked against the exact "
           f"derivative (certified ball arithmetic, up to {r.oracle_bits.get('max', 0)} bits);"
           f" {r.config.dtype} on "
           f"{r.config.device}, seed {r.config.seed}.", "", "## Model", ""]
    for step in _steps(m):
        out += [f"$${step['latex']}$$", ""]
    out += ["## Gradient (reverse accumulation)", "", _gradient_md(m), "",
            "## Error per parameter (ULPs of the backend's dtype)", "",
            tabulate([{k: _fmt(v) for k, v in row.items()} for row in _stats(r)],
                     headers="keys", tablefmt="github"), "",
            f"![error histogram]({png_name})", "", "## Verdict rule", "",
            r.config.tolerance.rule(), ""]
    out += _findings_md(r)
    return "\n".join(out)


def _adjoints(m: Model):
    from ..derive import reverse_accumulation
    program = m._cache.get("program") or reverse_accumulation(m)
    back = program.assignments[program.n_forward:]
    head = f"{len(back)} adjoint steps over {program.n_forward} forward steps; the first:"
    return head, back[:8]


def _gradient_md(m: Model) -> str:
    head, steps = _adjoints(m)
    return "\n\n".join([head] + [f"$$ {latex(sym)} = {latex(expr)} $$" for sym, expr in steps])


def _gradient_html(m: Model) -> str:
    head, steps = _adjoints(m)
    return f"<p>{html.escape(head)}</p>" + "".join(
        f"<p>{mathml(_eq(sym, expr), display=True)}</p>" for sym, expr in steps)


def _findings_md(r: Result) -> list[str]:
    out = ["## Findings", ""]
    if not r.failures and not r.precision_losses:
        return out + ["None: every backend is within the bound on every checked sample.", ""]
    kinds = sorted({f.kind for f in r.failures + r.precision_losses})
    for k in kinds:
        out += [f"- **{k}**: {EXPLANATIONS[k]}"]
    out += ["", "| backend | kind | output | sample | expected | got | ULPs | allowed | cause |",
            "|---|---|---|---|---|---|---|---|---|"]
    for f in (r.failures + r.precision_losses)[:20]:
        out.append(f"| {f.backend} | {f.kind} | {f.output} | {f.sample} | {f.expected!r} | "
                   f"{f.got!r} | {_fmt(f.ulps)} | {_fmt(f.allowed_ulps)} | "
                   f"{f.cause or '-'} |")
    return out + [""]


def model_html(entry: Entry, png: bytes) -> str:
    r, m = entry.result, entry.model
    steps = m.display_graph.nodes[:MAX_STEPS]
    eqs = "\n".join(f"<p>{mathml(_eq(n.symbol, _display(n)), display=True)}</p>" for n in steps)
    more = (f"<p>… {len(m.display_graph.nodes) - MAX_STEPS} more steps</p>"
            if len(m.display_graph.nodes) > MAX_STEPS else "")
    stats = tabulate([{k: _fmt(v) for k, v in row.items()} for row in _stats(r)],
                     headers="keys", tablefmt="html")
    findings = "".join(f"<li><b>{html.escape(f.kind)}</b>: {html.escape(f.message())}</li>"
                       for f in (r.failures + r.precision_losses)[:20]) or "<li>None</li>"
    worst = "".join(f"<li>{html.escape(f.message())}</li>" for f in r.worst[:6])
    img = base64.b64encode(png).decode("ascii")
    body = f"""
<p>{html.escape(m.description)}</p>
<p><b>Verdict: {'OK' if r.ok else 'FAIL'}</b> — {len(r.oracle_samples)} of {r.config.samples}
samples checked against the exact derivative; {r.config.dtype} on {r.config.device},
seed {r.config.seed}; verified in {entry.seconds:.2f} s.</p>
<h2>Model</h2>{eqs}{more}
<h2>Gradient (reverse accumulation)</h2>{_gradient_html(m)}
<h2>Error per parameter (ULPs)</h2>{stats}
<p><img alt="error histogram" src="data:image/png;base64,{img}"></p>
<h2>Worst samples</h2><ul>{worst}</ul>
<h2>Findings</h2><ul>{findings}</ul>
<h2>Verdict rule</h2><p>{html.escape(r.config.tolerance.rule())}</p>
"""
    return page(f"symgrad: {m.name}", body)


def _eq(lhs, rhs):
    import sympy as sp
    try:
        return sp.Eq(lhs, rhs, evaluate=False)
    except TypeError:
        return rhs


def index_rows(entries: list[Entry]) -> list[dict]:
    rows = []
    for e in entries:
        r = e.result
        row = {"model": e.model.name, "verdict": "OK" if r.ok else "FAIL"}
        for name in ("numpy", "torch", "torch_fn"):
            row[f"{name} worst ULPs"] = _fmt(r.worst_ulps(name)) if name in r.comparisons else "-"
        row["samples"] = len(r.oracle_samples)
        rows.append(row)
    return rows


def write_reports(entries: list[Entry], out: Path) -> list[Path]:
    """Write every file of the report set; returns the paths written."""
    out = Path(out)
    written = []

    def put(name: str, data) -> None:
        path = out / name
        (write_bytes if isinstance(data, bytes) else write_text)(path, data)
        written.append(path)

    for e in entries:
        name = e.model.name
        png = ulp_histogram(e.result)
        put(f"{name}.png", png)
        put(f"{name}.json", json.dumps(model_json(e), indent=2, sort_keys=True) + "\n")
        put(f"{name}.md", model_markdown(e, f"{name}.png"))
        put(f"{name}.html", model_html(e, png))
    env = environment(entries[0].result) if entries else {}
    rows = index_rows(entries)
    md = ["# symgrad verification reports", "",
          tabulate(rows, headers="keys", tablefmt="github"), "",
          "Per model: " + ", ".join(f"[{e.model.name}]({e.model.name}.md)" for e in entries), "",
          "## Environment", "", tabulate(sorted(env.items()), tablefmt="github"), "",
          "## Verdict rule", "", entries[0].result.config.tolerance.rule() if entries else "", ""]
    put("index.md", "\n".join(md))
    timed = [dict(r, seconds=f"{e.seconds:.2f}") for r, e in zip(rows, entries)]
    body = (tabulate(timed, headers="keys", tablefmt="html")
            + "<p>" + " · ".join(f'<a href="{e.model.name}.html">{e.model.name}</a>'
                                 for e in entries) + "</p>"
            + "<h2>Environment</h2>" + tabulate(sorted(env.items()), tablefmt="html"))
    put("index.html", page("symgrad verification reports", body))
    return written
