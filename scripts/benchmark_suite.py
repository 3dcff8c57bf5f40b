"""The default test suite, old tree vs new: totals and per-test junit times side by side
(issue 17: "the default test suite no slower"), written to reports/benchmark_suite.md/.json.

Inputs are what one run of the suite in each tree leaves behind:

- ``--old-junit``/``--new-junit``: pytest's ``--junitxml`` files (per-test seconds, setup and
  teardown included, and the pass/skip/fail counts);
- ``--old-time``/``--new-time`` (optional): ``/usr/bin/time -v -o FILE`` of the pytest process
  (user + system CPU seconds, wall, peak RSS);
- ``--load-log`` (optional): lines ``HH:MM:SS load1 load5 load15 ...`` sampled during the runs;
  the samples inside each suite's junit window give its load average (min / mean / max).

Per-test times are compared only over the test ids present in both trees (a test renamed or
ported between them counts in neither sum); the tests that got slower and faster by the most
(absolute seconds) are listed, and the same per test file.

    nice -n 10 /usr/bin/time -v -o old.time python -m pytest -q -p no:cacheprovider \\
        --junitxml=old.xml                                    # in the old tree, then the new
    python scripts/benchmark_suite.py --old-junit old.xml --new-junit new.xml \\
        --old-time old.time --new-time new.time --old-label 05efed3 --new-label 3c29157
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.atomic import write_text  # noqa: E402

TOP = 10


@dataclass(frozen=True)
class Suite:
    """One suite run: per-test seconds and outcome, the counts, and its time window."""

    times: dict[str, float]  # test id -> junit seconds
    outcome: dict[str, str]  # test id -> passed / skipped / failed / error
    junit_s: float  # the testsuite's own time attribute
    start: datetime | None
    counts: dict[str, int]


def read_junit(path: Path) -> Suite:
    """Parse a pytest ``--junitxml`` file into a `Suite` (ids ``classname::name``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "j.xml"
        >>> _ = p.write_text('<testsuites><testsuite time="1.5" timestamp="2026-01-01T00:00:00">'
        ...     '<testcase classname="tests.test_a" name="test_x" time="0.5"/>'
        ...     '<testcase classname="tests.test_a" name="test_y" time="1.0"><skipped/></testcase>'
        ...     '</testsuite></testsuites>')
        >>> s = read_junit(p); s.times["tests.test_a::test_x"], s.counts["skipped"]
        (0.5, 1)
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SystemExit(f"benchmark_suite: cannot read junit file {path} ({exc}); pass the "
                         f"file pytest --junitxml wrote") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    times: dict[str, float] = {}
    outcome: dict[str, str] = {}
    for case in root.iter("testcase"):
        tid = f"{case.get('classname', '')}::{case.get('name', '')}"
        times[tid] = times.get(tid, 0.0) + float(case.get("time") or 0.0)
        tags = {child.tag for child in case}
        outcome[tid] = ("failed" if "failure" in tags else "error" if "error" in tags
                        else "skipped" if "skipped" in tags else "passed")
    stamp = suites[0].get("timestamp") if suites else None
    counts = {k: sum(1 for v in outcome.values() if v == k)
              for k in ("passed", "skipped", "failed", "error")}
    counts["total"] = len(outcome)
    return Suite(times=times, outcome=outcome,
                 junit_s=sum(float(s.get("time") or 0.0) for s in suites),
                 start=datetime.fromisoformat(stamp) if stamp else None, counts=counts)


def read_time(path: Path | None) -> dict[str, float]:
    """``/usr/bin/time -v`` output: cpu_s (user + system), wall_s, peak_rss_mb (empty if None)."""
    if path is None:
        return {}
    text = path.read_text()

    def field(label: str) -> str:
        m = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", text, re.M)
        if not m:
            raise SystemExit(f"benchmark_suite: {path} has no '{label}' line; pass the file "
                             f"`/usr/bin/time -v -o FILE` wrote")
        return m.group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    user, system = float(field("User time (seconds)")), float(field("System time (seconds)"))
    return {"cpu_s": round(user + system, 1), "user_s": user, "sys_s": system,
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1)}


def load_during(log: Path | None, suite: Suite) -> dict[str, float]:
    """Min / mean / max of the 1-minute load samples inside the suite's junit window."""
    if log is None or suite.start is None:
        return {}
    lo, hi = suite.start, suite.start + timedelta(seconds=suite.junit_s)
    samples = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        t = datetime.combine(lo.date(), datetime.strptime(parts[0], "%H:%M:%S").time(),
                             tzinfo=lo.tzinfo)  # the log's clock is the junit stamp's
        if lo <= t <= hi:
            samples.append(float(parts[1]))
    if not samples:
        return {}
    return {"load_min": min(samples), "load_mean": round(statistics.fmean(samples), 2),
            "load_max": max(samples), "load_samples": len(samples)}


def by_file(times: dict[str, float], ids: set[str]) -> dict[str, float]:
    """Sum of junit seconds per test module (the classname up to its ``test_*`` part)."""
    out: dict[str, float] = {}
    for tid in ids:
        parts = tid.split("::")[0].split(".")
        mod = next((i for i in range(len(parts) - 1, -1, -1) if parts[i].startswith("test")), 0)
        key = ".".join(parts[:mod + 1])
        out[key] = out.get(key, 0.0) + times[tid]
    return out


def test_source(tree: Path | None, tid: str) -> str | None:
    """The source of the test function ``tid`` names in ``tree`` (None: no tree or not found)."""
    if tree is None:
        return None
    mod, _, name = tid.partition("::")
    path = tree / (mod.replace(".", "/") + ".py")
    name = name.split("[")[0].split("::")[-1]
    try:
        text = path.read_text()
    except OSError:
        return None
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return ast.get_source_segment(text, node)
    return None


def same_body(trees: tuple[Path | None, Path | None], tid: str) -> str:
    """'same' where the test function's source is equal in both trees, else 'changed' or '?'."""
    a, b = test_source(trees[0], tid), test_source(trees[1], tid)
    return "?" if a is None or b is None else "same" if a == b else "changed"


def compare(old: Suite, new: Suite, *,
            trees: tuple[Path | None, Path | None] = (None, None)) -> dict:
    """Common ids, their summed times, and the largest per-test and per-file changes.

    Arguments:
        old, new: the two suite runs.
        trees: the old and new source trees, to mark whether each listed test's function
            changed (None: not marked).

    Returns:
        Counts of common and one-sided ids, the common tests' summed seconds, and the
        top-``TOP`` slower/faster tests and test files.
    """
    common = set(old.times) & set(new.times)
    ran = {t for t in common if old.outcome[t] != "skipped" and new.outcome[t] != "skipped"}
    delta = sorted(((new.times[t] - old.times[t], t) for t in ran), reverse=True)
    fo, fn = by_file(old.times, ran), by_file(new.times, ran)
    fdelta = sorted(((fn[k] - fo[k], k) for k in fo), reverse=True)

    def rows(items: list[tuple[float, str]], o: dict[str, float], n: dict[str, float]) -> list:
        return [{"id": t, "old_s": round(o[t], 3), "new_s": round(n[t], 3), "delta_s": round(d, 3),
                 "body": same_body(trees, t) if "::" in t else ""} for d, t in items]

    return {"common": len(common), "common_ran_both": len(ran),
            "only_old": len(set(old.times) - common), "only_new": len(set(new.times) - common),
            "common_old_s": round(sum(old.times[t] for t in ran), 1),
            "common_new_s": round(sum(new.times[t] for t in ran), 1),
            "slower": rows(delta[:TOP], old.times, new.times),
            "faster": rows(delta[::-1][:TOP], old.times, new.times),
            "files_slower": rows(fdelta[:TOP], fo, fn),
            "files_faster": rows(fdelta[::-1][:TOP], fo, fn)}


def markdown(res: dict) -> str:
    """The report: totals per tree, the common-id sums, then the top-10 tables."""
    o, n, c = res["old"], res["new"], res["common"]

    def cell(d: dict, key: str, fmt: str = "{:.1f}") -> str:
        return fmt.format(d[key]) if key in d else "-"

    def load(d: dict) -> str:
        return (f"{d['load_min']:.1f} / {d['load_mean']:.1f} / {d['load_max']:.1f}"
                if "load_mean" in d else "-")

    lines = ["# The default test suite, old vs new tree", "",
             "`scripts/benchmark_suite.py` over one `pytest -q -p no:cacheprovider --junitxml` "
             "run of the default selection per tree. CPU: user + system seconds of the pytest "
             "process (`/usr/bin/time -v`); wall follows the shared box's load and is an upper "
             "bound. Per-test seconds are junit's (setup + call + teardown).", "",
             "| tree | tests | passed | skipped | failed+error | CPU s | wall s | CPU s per "
             "test run | peak RSS MB | load 1-min (min / mean / max) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, d in ((res["old_label"], o), (res["new_label"], n)):
        run = d["counts"]["total"] - d["counts"]["skipped"]
        per = f"{d['cpu_s'] / run:.3f}" if "cpu_s" in d and run else "-"
        lines.append(f"| {label} | {d['counts']['total']} | {d['counts']['passed']} | "
                     f"{d['counts']['skipped']} | {d['counts']['failed'] + d['counts']['error']} "
                     f"| {cell(d, 'cpu_s')} | {cell(d, 'wall_s')} | {per} | "
                     f"{cell(d, 'peak_rss_mb', '{:.0f}')} | {load(d)} |")
    ratio = c["common_new_s"] / c["common_old_s"] if c["common_old_s"] else float("nan")
    lines += ["", f"Test ids in both trees: {c['common']} ({c['common_ran_both']} ran, not "
              f"skipped, in both; {c['only_old']} only in the old tree, {c['only_new']} only in "
              f"the new). Sum of their junit seconds: old {c['common_old_s']:.1f}, new "
              f"{c['common_new_s']:.1f} (new / old {ratio:.3f})."]
    if "cpu_s" in o and "cpu_s" in n and c["common_old_s"]:
        # junit seconds are wall: scaled by each run's CPU share they estimate CPU seconds
        so, sn = o["cpu_s"] / o["junit_s"], n["cpu_s"] / n["junit_s"]
        lines += ["", f"junit seconds are wall time; scaled by each run's CPU share (CPU s / "
                  f"junit s: old {so:.3f}, new {sn:.3f}) the common sums estimate CPU seconds: "
                  f"old {c['common_old_s'] * so:.1f}, new {c['common_new_s'] * sn:.1f} "
                  f"(new / old {c['common_new_s'] * sn / (c['common_old_s'] * so):.3f})."]
    lines.append("")
    for key, title in (("slower", "common tests that got slower by the most"),
                       ("faster", "common tests that got faster by the most"),
                       ("files_slower", "test files (common tests only) slower by the most"),
                       ("files_faster", "test files (common tests only) faster by the most")):
        lines += [f"## The {TOP} {title}", "",
                  "| test | old s | new s | change s | test function (old vs new) |",
                  "|---|---|---|---|---|"]
        lines += [f"| `{r['id']}` | {r['old_s']:.2f} | {r['new_s']:.2f} | {r['delta_s']:+.2f} | "
                  f"{r['body']} |" for r in c[key]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-junit", type=Path, required=True)
    ap.add_argument("--new-junit", type=Path, required=True)
    ap.add_argument("--old-time", type=Path, default=None, help="/usr/bin/time -v output")
    ap.add_argument("--new-time", type=Path, default=None, help="/usr/bin/time -v output")
    ap.add_argument("--load-log", type=Path, default=None,
                    help="lines 'HH:MM:SS load1 ...' sampled during both runs")
    ap.add_argument("--old-tree", type=Path, default=None,
                    help="the old source tree: mark whether each listed test's function changed")
    ap.add_argument("--new-tree", type=Path, default=None, help="the new source tree")
    ap.add_argument("--old-label", default="old")
    ap.add_argument("--new-label", default="new")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmark_suite"))
    ap.add_argument("--notes", type=Path, default=None,
                    help="Markdown appended to the report (how and where it was measured)")
    a = ap.parse_args()
    old, new = read_junit(a.old_junit), read_junit(a.new_junit)
    res = {"old_label": a.old_label, "new_label": a.new_label,
           "old": {"counts": old.counts, "junit_s": round(old.junit_s, 1),
                   **read_time(a.old_time), **load_during(a.load_log, old)},
           "new": {"counts": new.counts, "junit_s": round(new.junit_s, 1),
                   **read_time(a.new_time), **load_during(a.load_log, new)},
           "common": compare(old, new, trees=(a.old_tree, a.new_tree))}
    text = markdown(res) + ("\n" + a.notes.read_text() if a.notes else "")
    write_text(Path(a.out + ".md"), text)
    write_text(Path(a.out + ".json"), json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
