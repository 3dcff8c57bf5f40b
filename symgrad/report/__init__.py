"""Verification reports: Markdown, JSON, self-contained HTML (MathML, embedded plots).

``write_reports`` writes ``index.md``/``index.html`` and per model ``<name>.md``, ``.html``,
``.json`` and ``<name>.png`` as one complete set: everything is staged in a sibling folder and
swapped into place at the end, so an interrupted run leaves the previous set untouched. The JSON
is byte-identical for the same seed and versions (no timestamps: run times are in the HTML only).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from tabulate import tabulate

from ..present.htmlpage import inline, page
from ..atomic import write_set
from .pages import gradient_formulas, model_formulas, model_html, model_json, model_markdown
from .plots import ulp_histogram
from .tables import Entry, backend_rows, badge, environment, model_rows, tally, verdict_rule, \
    verdict_word

__all__ = ["Entry", "badge", "gradient_formulas", "index_html", "index_markdown", "model_html",
           "model_json", "model_markdown", "model_formulas", "render_files", "verdict_word",
           "write_reports"]


def index_markdown(entries: list[Entry]) -> str:
    env = environment(entries[0].result) if entries else {}
    per_backend = [row for e in entries for row in backend_rows(e, with_model=True)]
    return "\n".join([
        _title(entries), "",
        tally(entries), "",
        "## Verdict per model", "",
        tabulate(model_rows(entries), headers="keys", tablefmt="github"), "",
        "## Per backend", "", tabulate(per_backend, headers="keys", tablefmt="github"), "",
        "Per model: " + ", ".join(f"[{e.model.name}]({e.model.name}.md)" for e in entries), "",
        "## Verdict rule", "", verdict_rule(entries), "",
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
            + f"<h2>Verdict rule</h2><p>{inline(verdict_rule(entries))}</p>"
            + "<h2>Environment</h2>"
            + tabulate(sorted(env.items()), headers=["setting", "value"], tablefmt="html"))
    return page(_title(entries)[2:], body)


def _title(entries: list[Entry]) -> str:
    """The index's heading: first-order reports, or the second-order set (``--order 2``)."""
    second = any(e.result.config.order == 2 for e in entries)
    return ("# symgrad second-order verification reports (Hessian-vector products)" if second
            else "# symgrad verification reports")


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
