"""``reports/ops.md``, ``ops.html``, ``ops.json`` from an ``OpsReport``, with a reproducer
snippet per finding (its numbers are the real failing input; ``tests/test_opcatalog.py`` runs
every snippet of the committed report and checks that it reproduces).
"""

from __future__ import annotations

import html
import json
import platform
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..compare import dtype_info
from ..present.htmlpage import inline, page
from ..atomic import write_text
from ..version import __version__
from .run import TOLERANCE, Finding, OpsConfig, OpsReport, Order, Row
from .table import CATALOGUE, by_name

SCHEMA_VERSION = 1

METHOD = [
    "Each operator is an ordinary `sg.Model`: L = sum_i r_i op(args)_i with a random read-out "
    "vector r (an input), so the gradient of every output entry is checked; its definition is "
    "the documented formula in sympy. The torch operator runs as the model's `torch_fn` "
    "(plain autograd, one sample at a time) through `sg.verify`: the oracle (mpmath, 50 "
    "digits) gives the exact value and gradient, `symgrad.compare` the verdict.",
    "Allowance: the verdict rule below, |got - exact| <= 4 u E + 4 tiny, with u the unit "
    "roundoff of the dtype (float64 2^-53, float32 2^-24, bfloat16 2^-8, float16 2^-11) and E "
    "the first-order running error bound of the exact definition's computation. For bfloat16 "
    "and float16 only the dtype's u enters: no other tolerance.",
    "Second order: the Hessian-vector product H v is the gradient of sum_j v_j dL/dp_j "
    "(sympy.diff of the definition, a model of its own), so the same pipeline judges torch's "
    "double backward (`torch.autograd.grad(grad . v, p)`): its allowance is the running bound "
    "E of that first-derivative program, differentiated by symgrad's reverse accumulation. "
    "Samples at a kink of the first derivative are excluded (no second derivative there).",
    "Entries are *inconclusive* where the allowance is at least the exact value itself (the "
    "bound cannot see an error there; counted, never passed silently), *outside* where the "
    "exact value is undefined or beyond the dtype's range, *kink* where any subgradient is "
    "accepted.",
    "gradcheck: `torch.autograd.gradcheck` (float64, default eps=1e-6, atol=1e-5, rtol=1e-3) "
    "of the same scalar L at the same inputs (rounded to the row's dtype, then float64).",
]


# ------------------------------------------------------------------ reproducers
def _entry(output: str) -> tuple[str, tuple[int, ...]] | None:
    """'d/dx[2]' -> ('x', (2,)); 'value' -> None."""
    if output == "value":
        return None
    m = re.match(r"d/d([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9,]+)\])?$", output)
    idx = tuple(int(i) for i in m.group(2).split(",")) if m.group(2) else ()
    return m.group(1), idx


def _lit(v: float) -> str:
    """A float as Python source (inf/nan included)."""
    return repr(v) if np.isfinite(v) else f"float({str(v)!r})"


def snippet(f: Finding) -> str:
    """A paste-able torch program reproducing ``f`` at its real failing input."""
    op = by_name(f.op)
    dt = f"torch.{f.dtype}"
    params = [a.name for a in op.params]
    lines = ["import torch", "import torch.nn.functional as F", "",
             f"# {f.op} ({f.dtype}): {f.cause}"]
    for a in op.args:
        v = f.point[a.name]
        if a.domain == "class3":
            lines.append(f"{a.name} = torch.tensor({int(v)})")
        else:
            grad = ", requires_grad=True" if a.param else ""
            lines.append(f"{a.name} = torch.tensor({v!r}, dtype={dt}{grad})")
    lines.append(f"readout = torch.tensor({f.point['readout']!r}, dtype={dt})")
    lines += [f"out = {op.call}", "loss = (readout * out.reshape(readout.shape)).sum()"]
    target = _entry(f.output)
    plist = ", ".join(params)
    if f.order == "gradient":
        if target is None:
            got = "loss.item()"
        else:
            lines.append(f"grads = dict(zip([{', '.join(map(repr, params))}], "
                         f"torch.autograd.grad(loss, [{plist}])))")
            got = f"grads[{target[0]!r}][{target[1]}].item()" if target[1] else \
                f"grads[{target[0]!r}].item()"
    else:
        for a in op.params:
            lines.append(f"v_{a.name} = torch.tensor({f.point['v_' + a.name]!r}, dtype={dt})")
        lines += [f"grads = torch.autograd.grad(loss, [{plist}], create_graph=True)",
                  f"hv = sum((g * v).sum() for g, v in zip(grads, "
                  f"[{', '.join('v_' + p for p in params)}]))",
                  f"hv = hv + 0 * sum(p.sum() for p in [{plist}])"]
        if target is None:
            got = "hv.item()"
        else:
            lines.append(f"hvp = dict(zip([{', '.join(map(repr, params))}], "
                         f"torch.autograd.grad(hv, [{plist}])))  # H v by double backward")
            got = f"hvp[{target[0]!r}][{target[1]}].item()" if target[1] else \
                f"hvp[{target[0]!r}].item()"
    what = "the loss" if target is None else f"{'d' if f.order == 'gradient' else '(H v)'}" \
        f"/d{f.output[3:]}"
    lines += [f"got = {got}  # {what}",
              f"exact = {_lit(f.expected)}  # the exact value (mpmath, 50 digits)",
              f"allowed = {_lit(f.allowed_abs)}  # symgrad's rounding-error allowance 4 u E",
              'print(f"torch {got!r}, exact {exact!r}, |error| {abs(got - exact):.3g} > '
              'allowed {allowed:.3g}")',
              ("reproduced = got != got or abs(got) == float('inf')  # non-finite where "
               "the exact value is finite" if f.kind == "non-finite" else
               "reproduced = not abs(got - exact) <= allowed")]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ views
def _ratio(v: float) -> str:
    if not np.isfinite(v):
        return "inf"
    return "0" if v == 0 else f"{v:.3g}"


def _causes(row: Row) -> str:
    names = sorted({f.cause.split(": ", 1)[-1] for f in row.findings})
    return "; ".join(names) or "-"


def _second(row: Row) -> str:
    s = row.second
    if s is None:
        return "-"
    if s.note:
        return s.note.split(":")[0]
    bad = sum(f.count for f in row.findings if f.order == "hessian-vector")
    return f"{_ratio(s.worst_ratio)}" + (f" ({bad} failing)" if bad else "")


def table_rows(report: OpsReport) -> list[dict]:
    rows = []
    for r in report.rows:
        if r.status == "unsupported":
            continue
        first_bad = sum(f.count for f in r.findings if f.order == "gradient")
        rows.append({"operator": r.op, "dtype": r.dtype, "verdict": r.status,
                     "worst err/allowance": _ratio(r.first.worst_ratio),
                     "failing": first_bad, "inconclusive": r.first.inconclusive,
                     "kinks": r.first.kinks, "outside": r.first.outside,
                     "cause": _causes(r), "H·v err/allowance": _second(r),
                     "gradcheck flags": (f"{r.gradcheck['flagged']}/{r.gradcheck['samples']}"
                                         if r.gradcheck else "-")})
    return rows


def summary(report: OpsReport) -> list[dict]:
    out = []
    for dtype in report.config.dtypes:
        rows = [r for r in report.rows if r.dtype == dtype]
        out.append({"dtype": dtype,
                    "operators verified": sum(r.status not in ("unsupported", "error")
                                              for r in rows),
                    "ok": sum(r.status == "ok" for r in rows),
                    "with findings (named cause)": sum(r.status == "finding" for r in rows),
                    "unexplained": sum(r.status == "unexplained" for r in rows),
                    "errors": sum(r.status == "error" for r in rows),
                    "unsupported": sum(r.status == "unsupported" for r in rows)})
    return out


def gradcheck_comparison(report: OpsReport) -> dict:
    """What each catches: symgrad findings gradcheck passes, gradcheck flags symgrad accepts."""
    missed = sorted({(f.op, f.dtype, f.cause) for f in report.findings
                     if f.gradcheck_passes})
    flagged_ok = sorted({r.op for r in report.rows
                         if r.gradcheck.get("flagged") and r.status == "ok"})
    return {"symgrad findings that gradcheck passes": [list(m) for m in missed],
            "operators gradcheck flags that symgrad verifies ok": flagged_ok}


CLASS_ORDER = ("unexplained", "real derivative error", "known torch convention",
               "saturation/clamping inside torch", "precision loss", "overflow", "domain")


def _grouped(report: OpsReport) -> list[Finding]:
    """One finding per (operator, dtype, order, cause), the worst input; bugs first, then
    torch conventions and clamps, then precision loss and overflow."""
    def rank(f: Finding) -> int:
        klass = f.cause.split(": ", 1)[0]
        return CLASS_ORDER.index(klass) if klass in CLASS_ORDER else len(CLASS_ORDER)
    return sorted(report.findings, key=lambda f: (rank(f), f.op, f.dtype, f.order, f.cause))


def as_json(report: OpsReport) -> dict:
    import mpmath
    import sympy
    import torch

    for f in report.findings:
        f.snippet = f.snippet or snippet(f)
    return {"schema_version": SCHEMA_VERSION,
            "environment": {"symgrad": __version__, "torch": torch.__version__,
                            "sympy": sympy.__version__, "mpmath": mpmath.__version__,
                            "numpy": np.__version__, "python": platform.python_version()},
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(report.config).items() if k != "progress"},
            "tolerance": TOLERANCE.as_dict(),
            "unit_roundoff": {d: dtype_info(d).eps / 2 for d in report.config.dtypes},
            "method": METHOD,
            "summary": summary(report),
            "timing": {"total_s": round(report.seconds, 2),
                       **{k: round(v, 2) for k, v in report.timing.items()}},
            "rows": [_json_safe(asdict(r)) for r in report.rows],
            "findings": [_json_safe(asdict(f)) for f in _grouped(report)],
            "unsupported": [{"operator": op.name, "call": op.call, "why": op.unsupported}
                            for op in CATALOGUE if op.unsupported],
            "gradcheck": gradcheck_comparison(report)}


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def _md_table(rows: list[dict]) -> list[str]:
    from tabulate import tabulate
    return [tabulate(rows, headers="keys", tablefmt="github")] if rows else ["(none)"]


def as_markdown(report: OpsReport) -> str:
    cfg = report.config
    out = ["# Torch's operators, verified against their exact derivatives", "",
           f"{len({r.op for r in report.rows})} catalogue rows; dtypes "
           f"{', '.join(cfg.dtypes)}; {cfg.budget} edge-seeking inputs per operator and dtype; "
           f"seed {cfg.seed}; regenerate with `symgrad ops "
           + (f"--ops {','.join(cfg.ops)} " if cfg.ops else "")
           + f"--dtype {','.join(cfg.dtypes)} --budget {cfg.budget} --seed {cfg.seed}`.", "",
           "## Summary", ""] + _md_table(summary(report))
    out += ["", "## Every operator", ""] + _md_table(table_rows(report)) + ["", "## Method", ""]
    out += [f"- {m}" for m in METHOD]
    out += ["", f"Verdict rule: {TOLERANCE.rule()}.", "",
            "## Findings", "",
            "Each real disagreement of a torch operator with its exact derivative, grouped by "
            "operator, dtype, order and named cause (the worst input shown). The snippet is "
            "the real failing input; paste it to reproduce.", ""]
    for f in _grouped(report):
        gc = {True: "gradcheck passes here", False: "gradcheck flags this input",
              None: "gradcheck not run"}[f.gradcheck_passes]
        out += [f"### {f.op} · {f.dtype} · {f.order} · {f.cause}", "",
                f"{f.explanation}. {f.count} failing entr{'y' if f.count == 1 else 'ies'}; "
                f"worst: {f.output} expected {f.expected!r}, got {f.got!r} "
                f"({_ratio(f.ulps)} ULPs, allowed {_ratio(f.allowed_ulps)}); {gc}.", "",
                "```python", (f.snippet or snippet(f)).rstrip(), "```", ""]
    out += ["## Not expressible in symgrad (listed, not dropped)", ""]
    out += [f"- `{op.call}` ({op.name}): {op.unsupported}" for op in CATALOGUE
            if op.unsupported]
    no_dbl = sorted({r.op for r in report.rows if r.second and r.second.note
                     and r.second.note.startswith("no double backward")})
    out += ["", "## Second order", "",
            "No double backward in torch: " + (", ".join(no_dbl) or "none") + ".",
            "Hessian zero (linear operators): " + ", ".join(sorted(
                {r.op for r in report.rows if r.second and "zero" in r.second.note})) + ".", ""]
    gc = gradcheck_comparison(report)
    out += ["## gradcheck beside symgrad", "",
            f"- symgrad findings at inputs where float64 gradcheck passes: "
            f"{len(gc['symgrad findings that gradcheck passes'])} — "
            + "; ".join(f"{o} ({d}, {c.split(': ', 1)[-1]})"
                        for o, d, c in gc["symgrad findings that gradcheck passes"][:40]),
            f"- operators gradcheck flags at some input while symgrad verifies them ok "
            f"(finite differences across kinks, thresholds, huge or tiny inputs): "
            f"{', '.join(gc['operators gradcheck flags that symgrad verifies ok']) or 'none'}",
            "", "## Closing note", "",
            "Operators verified per dtype: " + ", ".join(
                f"{r['dtype']} {r['operators verified']} ({r['ok']} ok, "
                f"{r['with findings (named cause)']} with named findings, {r['unexplained']} "
                f"unexplained)" for r in summary(report)) + ".", "",
            "Findings (operator: cause [dtypes, orders]):", ""]
    seen: dict = {}
    for f in _grouped(report):
        seen.setdefault((f.op, f.cause), set()).add(f"{f.dtype} {f.order}")
    out += [f"- {op}: {cause} [{', '.join(sorted(where))}]" for (op, cause), where in seen.items()]
    out += ["", "## Timing", "",
            f"{round(report.seconds, 2):.1f} s in all: " + ", ".join(  # as ops.json holds
                f"{k} {round(v, 2):.1f} s" for k, v in sorted(report.timing.items())), ""]
    return "\n".join(out)


def as_html(report: OpsReport, md_rows: list[dict]) -> str:
    """The page: summary and the per-operator table first, then method and findings (the
    Markdown's inline code and emphasis as HTML)."""
    from tabulate import tabulate
    parts = ["<h2>Summary</h2>", tabulate(summary(report), headers="keys", tablefmt="html"),
             "<h2>Every operator</h2>", tabulate(md_rows, headers="keys", tablefmt="html"),
             "<h2>Method</h2><ul>" + "".join(f"<li>{inline(m)}</li>" for m in METHOD)
             + "</ul>", f"<p>Verdict rule: {inline(TOLERANCE.rule())}</p>",
             "<h2>Findings</h2>"]
    for f in _grouped(report):
        parts.append(f"<h3>{html.escape(f'{f.op} · {f.dtype} · {f.order} · {f.cause}')}</h3>"
                     f"<p>{inline(f.explanation)}; {f.count} failing; worst "
                     f"{html.escape(f.output)}: expected {f.expected!r}, got {f.got!r}</p>"
                     f"<pre>{html.escape(f.snippet or snippet(f))}</pre>")
    parts += ["<h2>Not expressible in symgrad</h2><ul>"
              + "".join(f"<li><code>{html.escape(op.call)}</code>: {inline(op.unsupported)}"
                        "</li>" for op in CATALOGUE if op.unsupported) + "</ul>"]
    return page("symgrad: torch's operators, verified", "\n".join(parts))


def from_json(doc: dict) -> OpsReport:
    """The ``OpsReport`` a committed ``ops.json`` was written from (to redraw its Markdown and
    HTML views without running the catalogue again).

    Arguments:
        doc: the parsed ``ops.json``.
    Returns:
        The report: config, rows with their findings, timing.
    """
    def num(x):  # _json_safe wrote non-finite floats as strings
        return float(x) if x in ("inf", "-inf", "nan") else x

    def order(d: dict | None) -> Order | None:
        return None if d is None else Order(**{k: num(v) for k, v in d.items()})

    rows = []
    for r in doc["rows"]:
        findings = [Finding(**{k: num(v) for k, v in f.items()})
                    for f in r["findings"]]
        rows.append(Row(**{**r, "first": order(r["first"]), "second": order(r["second"]),
                           "findings": findings}))
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["config"].items()}
    timing = doc["timing"]
    return OpsReport(OpsConfig(**cfg), rows, timing["total_s"],
                     {k: v for k, v in timing.items() if k != "total_s"})


def redraw(folder: Path) -> list[Path]:
    """Rewrite ``ops.md`` and ``ops.html`` in ``folder`` from its ``ops.json``."""
    folder = Path(folder)
    report = from_json(json.loads((folder / "ops.json").read_text()))
    paths = [folder / "ops.md", folder / "ops.html"]
    write_text(paths[0], as_markdown(report))
    write_text(paths[1], as_html(report, table_rows(report)))
    return paths


def write_ops_report(report: OpsReport, out: Path) -> list[Path]:
    """Write ops.json, ops.md and ops.html atomically into ``out``; returns the paths."""
    out = Path(out)
    doc = as_json(report)
    paths = [out / "ops.json", out / "ops.md", out / "ops.html"]
    write_text(paths[0], json.dumps(doc, indent=2, sort_keys=True) + "\n")
    write_text(paths[1], as_markdown(report))
    write_text(paths[2], as_html(report, table_rows(report)))
    return paths
