"""One verified model's page: Markdown, self-contained HTML (MathML formulas, the embedded error
histogram) and JSON: summary, the model's formulas and its gradient's, error statistics, the
findings with a reproducer, the verdict rule. The JSON is byte-identical for the same seed and
versions (no timestamps: run times are in the HTML only)."""

from __future__ import annotations

import base64
import html

import numpy as np
from tabulate import tabulate

from ..causes import OWN, precision_loss, stable_ops
from ..compare import EXPLANATIONS, LOSS
from ..present import step_derivation, step_formulas, tensor_formulas
from ..present.formulas import Formula
from ..present.htmlpage import inline, page
from ..result import Failure, Result
from ..tensor.model import program_of
from .tables import Entry, backend_rows, badge, deciding_sentence, environment, fmt, \
    resolution_text, stats_rows, verdict_word

SCHEMA_VERSION = 2
LOSS_KIND = "precision loss"  # a Failure's kind for a LOSS entry
MAX_FINDINGS = 10  # findings shown per list on a page; the JSON keeps what the result holds


def model_formulas(model) -> list[Formula]:
    """The model one line per op, read from the tensor program it is verified as: a program of
    scalar steps (a plain ``sg.Model``) as its steps (``step_formulas``), a whole-array program
    (a GPT) one line per node (``tensor_formulas``).

    >>> from symgrad import zoo
    >>> print(*[f.latex for f in model_formulas(zoo.get("neuron"))][:2], sep="; ")
    z = b + w x; a = \\sigma\\left(z\\right)
    """
    prog, view = _view(model)
    return tensor_formulas.model_formulas(prog) if view is None else \
        step_formulas.model_formulas(view)


def gradient_formulas(model) -> list[tuple[str, list[Formula]]]:
    """(title, formulas): the textbook gradient, then the first nodes of the gradient program,
    from the same program as ``model_formulas``."""
    prog, view = _view(model)
    return tensor_formulas.gradient_formulas(prog) if view is None else \
        step_formulas.gradient_formulas(view)


def _view(model) -> tuple:
    """(program, its ``step_formulas.View`` or None for a program of tensor operations), read
    once per program."""
    prog = program_of(model)
    view = prog._cached("report_steps", lambda: step_formulas.View(prog))
    return prog, view if view.steps is not None else None


def _oracle(r: Result) -> dict:
    """How the exact values were obtained, for the JSON: by the run's own oracle (the tensor
    program's double-double one, which records its certificate; without one, arb balls)."""
    which = f"the first {len(r.oracle_samples)} of {r.config.samples}"
    if "oracle_certified" in r.program_size:
        return {"method": "double-double tensor program (error-free Ozaki products), certified "
                          "by python-flint arb ball arithmetic on sample 0",
                "certified": r.program_size.get("oracle_certified", ""),
                "samples_checked": len(r.oracle_samples), "which": which}
    return {"method": "python-flint arb ball arithmetic, precision doubled until each entry is "
                      "certified",
            "bits": r.oracle_bits, "samples_checked": len(r.oracle_samples), "which": which}


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
    """How to draw a sample of the run again: the program's own draw, as the run drew them."""
    c = r.config
    return (f"sample i is `as_program(model).draw({c.samples}, np.random.default_rng({c.seed}), "
            f"{c.dtype!r})[block][i]` (`from symgrad.verify import as_program`; a tensor model "
            "draws itself: `model.draw(...)`), the samples the run verified; the full point of "
            "every sample named here is in the JSON under `points`")


def _finding_row(r: Result, f: Failure, stable: list[str]) -> dict:
    m = r.measure(f)
    who = (f.backend if r.decides(f.backend)
           else f"{f.backend} (symgrad's own program, not deciding)")
    cause = f.cause or (f.note if f.kind == "inconclusive" else "-")
    loss = _loss_cause(r, f, stable)
    if loss:
        cause = f"{loss['cause']} ({loss['explanation']})"
    return {"backend": who, "kind": f.kind, "output": f.output, "sample": f.sample,
            "expected": repr(f.expected), "got": repr(f.got),
            "error / allowance": fmt(m["error_over_allowance"]), "ULPs": fmt(m["ulps"]),
            "cause": cause}


def _loss_cause(r: Result, f: Failure, stable: list[str]) -> dict:
    """A precision-loss warning's cause and explanation (``causes.precision_loss``: which ops
    the model has, what symgrad's own programs do at the same entry); {} for other findings."""
    if f.kind != LOSS_KIND or f.cause:
        return {}
    c = precision_loss(f.backend, stable, _own_loses(r, f))
    return {"cause": f"{c.klass}: {c.name}", "explanation": c.explanation}


def _own_loses(r: Result, f: Failure) -> bool | None:
    """Whether symgrad's own programs lose digits at ``f``'s sample and entry too (None for
    their own findings, or where the entry is not found)."""
    own = [c for n, c in r.comparisons.items() if n in OWN and n != f.backend]
    rows = np.flatnonzero(np.asarray(r.oracle_samples) == f.sample)
    col = f.column if f.column >= 0 else (r.outputs.index(f.output) if f.output in r.outputs
                                          else -1)
    if f.backend in OWN or not own or not len(rows) or col < 0:
        return None
    return any(int(c.status[rows[0], col]) == LOSS for c in own)


def _stable(model) -> list[str]:
    """symgrad's stable ops the model was written with (``causes.stable_ops``), from the
    program it is verified as."""
    prog, view = _view(model)
    steps = step_derivation.steps_of(prog) if view is not None else None
    return [] if steps is None else stable_ops((n.kind, n.expr) for n in steps.nodes)


def _legend(kind: str, stable: list[str]) -> str:
    if kind == LOSS_KIND and stable:  # "a stable form would avoid it" is not true here
        return (EXPLANATIONS[kind].split(": ")[0] + f": the model already uses symgrad's "
                f"stable forms ({', '.join(stable)}); the cause column says where the digits "
                "are lost")
    return EXPLANATIONS[kind]


def _findings_md(r: Result, stable: list[str]) -> list[str]:
    out = ["## Findings", ""]
    lists = _finding_lists(r)
    if not lists:
        return out + ["None: every backend is within the bound on every checked sample.", ""]
    kinds = sorted({f.kind for _, fs, _ in lists for f in fs})
    out += [f"- **{k}**: {_legend(k, stable)}" for k in kinds] + [""]
    for title, shown, total in lists:
        k = min(len(shown), MAX_FINDINGS)
        out += [f"### {title.capitalize()}: showing {k} of {total}, worst first", "",
                tabulate([_finding_row(r, f, stable) for f in shown[:MAX_FINDINGS]],
                         headers="keys", tablefmt="github", disable_numparse=True), ""]
    return out + [f"To reproduce: {_reproduce(r)}.", ""]


def _findings_html(r: Result, stable: list[str]) -> str:
    lists = _finding_lists(r)
    if not lists:
        return "<p>None: every backend is within the bound on every checked sample.</p>"
    out = []
    for title, shown, total in lists:
        k = min(len(shown), MAX_FINDINGS)
        out.append(f"<h3>{html.escape(title.capitalize())}: showing {k} of {total}, worst "
                   "first</h3>")
        out.append(tabulate([_finding_row(r, f, stable) for f in shown[:MAX_FINDINGS]],
                            headers="keys", tablefmt="html", disable_numparse=True))
    return "".join(out) + f"<p>To reproduce: {inline(_reproduce(r))}.</p>"


def _points(entry: Entry) -> dict:
    """The full point (every block) of each sample a finding names, by sample index."""
    r = entry.result
    named = sorted({f.sample for f in r.failures + r.precision_losses + r.worst + r.kinks
                    + r.undecided})
    if not named:
        return {}
    values = r.values  # the samples the run compared (the program pipeline records them)
    if values is None:  # a Result without its samples: the program draws the same ones
        c = r.config
        values = program_of(entry.model).draw(c.samples, np.random.default_rng(c.seed), c.dtype)
    return {str(i): {b: np.asarray(v[i]).tolist() for b, v in values.items()} for i in named}


# ------------------------------------------------------------------ pages
def model_json(entry: Entry) -> dict:
    r, stable = entry.result, _stable(entry.model)
    return {"schema_version": SCHEMA_VERSION, "environment": environment(r),
            "description": entry.model.description,
            "steps": [f.as_dict() for f in model_formulas(entry.model)],
            "result": r.as_dict(),
            "summary": {n: r.summary(n) for n in r.comparisons},
            "stats": stats_rows(r),
            "worst_samples": [f.as_dict() for f in r.worst],
            "findings": {title: {"total": total,
                                 "shown": [dict(f.as_dict(), **r.measure(f),
                                                **_loss_cause(r, f, stable)) for f in shown]}
                         for title, shown, total in _finding_lists(r)},
            "points": _points(entry),
            "reproduce": _reproduce(r),
            "tolerance": r.config.tolerance.as_dict(),
            "oracle": _oracle(r)}


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
           if "oracle_certified" not in r.program_size else
           "double-double tensor program, certified by ball arithmetic on "
           + r.program_size.get("oracle_certified", "sample 0"))
    what = "derivative" if r.config.order == 1 else ORDER2_WHAT
    return (f"{len(r.oracle_samples)} of {r.config.samples} samples checked against the exact "
            f"{what} ({how}); {r.config.dtype} on {r.config.device}, seed {r.config.seed}.")


ORDER2_WHAT = ("Hessian-vector product H v at order 2 (torch's double backward along a random "
               "direction v per sample: outputs g·v and Hv:<entry>; the gradient below is what "
               "is differentiated again)")


def model_markdown(entry: Entry, png_name: str) -> str:
    r, m = entry.result, entry.model
    grad = gradient_formulas(m)
    out = [f"# {m.name}: {verdict_word(r.verdict)}", "", m.description, "",
           _summary_sentence(entry), "", deciding_sentence(r), "", "## Summary per backend", "",
           tabulate(backend_rows(entry, with_model=False), headers="keys", tablefmt="github"),
           "", resolution_text(r), "", "## Model", ""]
    out += _formulas_md(model_formulas(m))
    out += ["## Gradient", ""]
    for title, formulas in grad:
        out += [f"### {title}", ""] + _formulas_md(formulas)
    out += ["## Error per parameter", "",
            "error/allowed: the worst error as a fraction of its allowance (over 1 fails); "
            "ULPs of the backend's dtype (at an exact zero: ULPs of the scale of the terms "
            "that produced it).", "",
            tabulate([{k: fmt(v) for k, v in row.items()} for row in stats_rows(r)],
                     headers="keys", tablefmt="github"), "",
            f"![error histogram]({png_name})", ""]
    out += _findings_md(r, _stable(m))
    out += ["## Verdict rule", "", r.config.tolerance.rule(), ""]
    return "\n".join(out)


def model_html(entry: Entry, png: bytes) -> str:
    r, m = entry.result, entry.model
    stats = tabulate([{k: fmt(v) for k, v in row.items()} for row in stats_rows(r)],
                     headers="keys", tablefmt="html")
    grad = "".join(f"<h3>{html.escape(t)}</h3>{_formulas_html(fs)}"
                   for t, fs in gradient_formulas(m))
    img = base64.b64encode(png).decode("ascii")
    body = f"""
<p>{html.escape(m.description)}</p>
<p><b>Verdict:</b> {badge(r.verdict)} — {html.escape(_summary_sentence(entry))}
Verified in {entry.seconds:.2f} s.</p>
<p>{inline(deciding_sentence(r))}</p>
<h2>Summary per backend</h2>
{tabulate(backend_rows(entry, with_model=False), headers="keys", tablefmt="html")}
<p>{inline(resolution_text(r))}</p>
<h2>Model</h2>{_formulas_html(model_formulas(m))}
<h2>Gradient</h2>{grad}
<h2>Error per parameter</h2>
<p>error/allowed: the worst error as a fraction of its allowance (over 1 fails); ULPs of the
backend's dtype (at an exact zero: ULPs of the scale of the terms that produced it).</p>{stats}
<p><img alt="error histogram" src="data:image/png;base64,{img}"></p>
<h2>Findings</h2>{_findings_html(r, _stable(m))}
<h2>Verdict rule</h2><p>{inline(r.config.tolerance.rule())}</p>
"""
    return page(f"symgrad: {m.name}", body)


