"""The same-verdict gate (issue 17): every case of tests/gate_cases.py (scalar zoo models,
planted bugs, correct twins, false-alarm cases) through the old scalar pipeline (pinned by
``symgrad.verify.pipeline("scalar")``, whatever the default) and the new tensor one (``symgrad.tensor.front.to_program``). Writes reports/gate.md and .json.

    python scripts/gate.py [--only SUBSTRING] [--out reports] [--from-json reports/gate.json]

``--from-json`` redraws the Markdown from a committed gate.json (after KNOWN changed) without
running the cases.

Columns: verdict old / new, same?, worst error / allowance of the deciding backends (old, new),
seconds of each ``sg.verify`` call (the new one includes deriving the tensor program), the
failures' causes (``symgrad.causes``; old / new where they differ) and the known reason for a
difference (tests/gate_cases.py's KNOWN; tests/test_gate.py xfails those).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.report.atomic import write_text  # noqa: E402
from tests.gate_cases import CASES, KNOWN, Row, run_case  # noqa: E402


def _f(x: float) -> str:
    return "—" if x != x else f"{x:.3g}"


def _causes(r: Row) -> str:
    """The failures' causes: once when both paths agree, else old / new."""
    if r.same_cause:
        return r.cause_old.replace("|", "/")
    return f"**old** {r.cause_old or '—'} / **new** {r.cause_new or '—'}".replace("|", "/")


def markdown(rows: list[Row]) -> str:
    same = sum(r.same for r in rows)
    caught = [r for r in rows if r.suite == "planted bug" and r.old == "fail"]
    lost = [r for r in caught if r.new == "pass"]
    named = [r for r in rows if r.cause_old or r.cause_new]
    lines = [
        "# Same-verdict gate: scalar pipeline vs tensor program (issue 17)",
        "",
        "Every case runs `sg.verify(model, ...)` (old: the scalar program, pinned by "
        "`symgrad.verify.pipeline(\"scalar\")`) and "
        "`sg.verify(to_program(model), ...)` (new: `symgrad.tensor.front`) with the same seed, "
        "samples, dtype and torch_fn. Written by `scripts/gate.py`; `tests/test_gate.py` asserts "
        "the same verdict on every row without a known reason and xfails (strict) the others.",
        "",
        f"**{same} of {len(rows)} rows agree.** Planted bugs the old path catches: "
        f"{len(caught)}; passed by the new path: {len(lost)} (must be 0). The failures' "
        f"causes agree on {sum(r.same_cause for r in named)} of the {len(named)} rows with "
        "failures.",
        "",
        "| case | suite | old | new | same | worst err/allow old | new | s old | s new | "
        "causes | reason for a difference |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reason = KNOWN.get(r.case, "") or (f"error: {r.error_new}" if r.error_new else "")
        if not r.same and not KNOWN.get(r.case):
            reason = "**unexplained** " + reason
        lines.append(f"| {r.case} | {r.suite} | {r.old} | {r.new} | "
                     f"{'yes' if r.same else '**no**'} | {_f(r.ratio_old)} | {_f(r.ratio_new)} | "
                     f"{r.seconds_old:.2f} | {r.seconds_new:.2f} | {_causes(r)} | "
                     f"{reason.replace('|', '/')} |")
    reasons: dict[str, list[str]] = {}
    for r in rows:
        if not r.same:
            reasons.setdefault(KNOWN.get(r.case, "unexplained"), []).append(r.case)
    lines += ["", "## What is left before the switch", ""]
    for reason, cases in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- {reason}: {len(cases)} row(s) ({', '.join(cases)})")
    slow = max(rows, key=lambda r: r.seconds_new)
    phases = ", ".join(f"{k} {v:.1f}" for k, v in sorted(slow.phases_new.items(),
                                                        key=lambda kv: -kv[1])[:4])
    lines += ["", f"Where the new path's time goes, in its slowest row ({slow.case}, "
              f"{slow.seconds_new:.1f} s): {phases} (seconds)."]
    told = sum(r.seconds_old for r in rows)
    tnew = sum(r.seconds_new for r in rows)
    lines += ["", f"Total time: old {told:.1f} s, new {tnew:.1f} s "
              f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              "one run, on a machine shared with other jobs: compare within a row)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="run the cases whose id contains this")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--from-json", default="", help="redraw from this gate.json, run nothing")
    args = ap.parse_args(argv)
    rows = []
    if args.from_json:
        fields = set(Row.__dataclass_fields__)
        rows = [Row(**{k: v for k, v in r.items() if k in fields})
                for r in json.loads(Path(args.from_json).read_text())]
    for case in [] if args.from_json else CASES:
        if args.only in case.id:
            row = run_case(case)
            print(f"{row.case}: old {row.old} new {row.new} ({row.seconds_old:.1f} s, "
                  f"{row.seconds_new:.1f} s) {row.error_new[:120]}", flush=True)
            rows.append(row)
    out = Path(args.out)
    write_text(out / "gate.md", markdown(rows))
    write_text(out / "gate.json", json.dumps(
        [{**asdict(r), "same": r.same, "reason": KNOWN.get(r.case, "")} for r in rows],
        indent=1) + "\n")


if __name__ == "__main__":
    main()
