"""CPU seconds of test files (and of the heaviest workloads) on two source trees, side by side,
and whether both trees give the same answers (issue 17: "the default test suite no slower").

Each target runs in a fresh child process per tree, the two trees alternating, on the same
machine in one run; the child's user + system CPU seconds are reported (this project's box is
shared: wall time follows the load, CPU time much less). Targets:

- a pytest node or file (``tests/test_kinks.py``): ``pytest -p no:cacheprovider -q`` in that
  tree, imports included, its pass/fail counts as the answer;
- ``work:fuzz`` (``symgrad.fuzz.fuzz(1000, seed=0)``, as test_fuzz_1000 runs it) and
  ``work:ops`` (the op catalogue's fast subset, as tests/test_opcatalog.py runs it): their
  answer is a digest of every ``verify`` the workload made (per backend: the status, the exact
  value's two parts, the allowance, the kink positions, the sides and undecided rows, hashed),
  so "same answers" means every compared entry's verdict and number is the same, not only the
  summary line. A side's label may name a step by its sympy ``Dummy`` index (``z#2489310``),
  whose base sympy draws at random in each process: the indices are numbered by first
  appearance within each verify (before that, work:ops's digest changed from run to run).

Usage::

    python scripts/benchmark_suite_files.py --before /path/to/old/tree [--after .] \\
        [--out reports/benchmark_suite_files] TARGET...
    python scripts/benchmark_suite_files.py --merge A.json B.json [--out ...]

Writes ``<out>.json`` and the generated section of ``<out>.md`` (between its
``benchmark_suite_files`` markers; every hand-written section of the page stays), ``--merge``:
one report from the rows of runs made side by side on different targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad import atomic  # noqa: E402

CHILD = r"""
import hashlib, json, re, resource, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import symgrad.tensor.verify as tv
digests = []
_verify = tv.verify_tensor

def _h(a):
    if a is None:
        return None
    a = np.ascontiguousarray(np.asarray(a))
    return hashlib.sha1(a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()).hexdigest()[:12]

def _renumbered(text):  # sympy's Dummy indices ("z#2489310" in a side's label) start at a
    seen = {}  # random base per process: numbered by first appearance within one verify
    return re.sub(r"#(\d+)", lambda m: "#%d" % seen.setdefault(m.group(1), len(seen)), text)

def digest(*args, **kwargs):
    res = _verify(*args, **kwargs)
    d = {}
    for name, c in res.comparisons.items():
        d[name] = [_h(c.status), _h(c.expected), _h(c.exact_lo), _h(c.allowed_ulps),
                   _h(c.kink_position), repr(sorted((c.side or {}).items())),
                   repr(sorted((c.undecided or {}).items()))]
    digests.append(json.loads(_renumbered(json.dumps(d))))
    return res

tv.verify_tensor = digest
import symgrad.verify
sys.modules["symgrad.verify"].verify_tensor = digest  # (symgrad.verify is also the function)
case = sys.argv[1]
out = {}
t0 = resource.getrusage(resource.RUSAGE_SELF)
if case == "work:fuzz":
    from symgrad.fuzz import fuzz
    r = fuzz(1000, seed=0)
    out["summary"] = r.summary().splitlines()[0].split(" in ")[0]
elif case == "work:ops":
    from symgrad.opcatalog.run import OpsConfig, run_ops
    sys.path.insert(0, "tests")
    from test_opcatalog import FAST
    r = run_ops(OpsConfig(ops=FAST, dtypes=("float64", "float32"), budget=10, gradcheck=False))
    out["summary"] = [(x.op, x.dtype, x.status) for x in r.rows]
t1 = resource.getrusage(resource.RUSAGE_SELF)
out["answers"] = hashlib.sha1(json.dumps(digests).encode()).hexdigest()[:16]
if len(sys.argv) > 2:  # every verify's digest, to find the ones that differ
    open(sys.argv[2], "w").write(json.dumps(digests))
out["verifies"] = len(digests)
out["user_s"] = round(t1.ru_utime - t0.ru_utime, 2)
out["sys_s"] = round(t1.ru_stime - t0.ru_stime, 2)
print("BENCH " + json.dumps(out))
"""


def _child(tree: Path, target: str) -> dict:
    """One target in a fresh child of ``tree``: CPU seconds and its answers."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if target.startswith("work:"):
        cmd = [sys.executable, "-c", CHILD, target]
    else:
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", target]
    before = os.times()
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    after = os.times()
    cpu = round((after.children_user - before.children_user)
                + (after.children_system - before.children_system), 2)
    if target.startswith("work:"):
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")]
        if not line:
            raise SystemExit(f"{target} in {tree} failed:\n{p.stderr[-3000:]}")
        got = json.loads(line[-1][6:])
        return {"cpu_s": cpu, "timed_cpu_s": round(got["user_s"] + got["sys_s"], 2),
                "answers": f"{got['answers']} ({got['verifies']} verifies)"}
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    return {"cpu_s": cpu, "timed_cpu_s": None,
            "answers": (lines[-1].split(" in ")[0].strip("= ") if lines else "?")}


TITLE = "# Test files and workloads, CPU seconds (user + sys of the child), old tree vs new"


def write_report(rows: list[dict], load: list[float], before: str, after: str,
                 out: str) -> None:
    """``<out>.json`` (the rows and the load) and the generated section of ``<out>.md``
    (between its ``benchmark_suite_files`` markers; the dated sections written by hand around
    it stay): the table; a test file's answers are its pass counts, old / new where they
    differ (the trees' files may hold other tests)."""
    atomic.write_text(Path(out + ".json"),
                      json.dumps({"rows": rows, "load": load, "before": before,
                                  "after": after}, indent=1))
    atomic.write_section(Path(out + ".md"), "benchmark_suite_files",
                         table(rows, load, before, after), head=TITLE + "\n\n")


def table(rows: list[dict], load: list[float], before: str, after: str) -> str:
    md = [f"old: `{before}`; new: `{after}`; load average at the end "
          f"{load[0]:.1f}. `work:` rows: the timed part alone in brackets (imports excluded).",
          "", "| target | old CPU s | new CPU s | new / old | answers (old) | same answers |",
          "|---|---|---|---|---|---|"]

    def cell(x):
        return f"{x['cpu_s']}" + (f" ({x['timed_cpu_s']})" if x["timed_cpu_s"] else "")
    for r in rows:
        b, a = r["before"], r["after"]
        answers = b["answers"] if r["same_answers"] else f"{b['answers']} / {a['answers']}"
        md.append(f"| {r['target']} | {cell(b)} | {cell(a)} | "
                  f"{a['cpu_s'] / max(b['cpu_s'], 1e-9):.2f} | {answers} | "
                  f"{r['same_answers']} |")
    old, new = (round(sum(r[k]["cpu_s"] for r in rows), 2) for k in ("before", "after"))
    md.append(f"| total | {old} | {new} | {new / max(old, 1e-9):.2f} | | |")
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*")
    ap.add_argument("--before", type=Path, help="the old tree (a checkout)")
    ap.add_argument("--after", default=Path("."), type=Path, help="the new tree (default .)")
    ap.add_argument("--out", default="reports/benchmark_suite_files")
    ap.add_argument("--merge", nargs="+", type=Path, default=[],
                    help="instead of running: the rows of earlier runs' .json files, in one "
                         "report (two runs side by side on different targets; each row's "
                         "CPU seconds are its own children's)")
    args = ap.parse_args(argv)
    if args.merge:
        runs = [json.loads(p.read_text()) for p in args.merge]
        write_report([r for run in runs for r in run["rows"]],
                     [max(run["load"][i] for run in runs) for i in range(3)],
                     runs[0].get("before") or str(args.before),
                     runs[0].get("after") or str(args.after), args.out)
        return 0
    if args.before is None or not args.targets:
        raise SystemExit("benchmark_suite_files: give --before OLD_TREE and at least one "
                         "target (a test file or work:ops / work:fuzz), or --merge RUN.json...")
    rows = []
    for target in args.targets:
        b = _child(args.before.resolve(), target)
        a = _child(args.after.resolve(), target)
        rows.append({"target": target, "before": b, "after": a,
                     "same_answers": a["answers"] == b["answers"]})
        print(json.dumps(rows[-1]), flush=True)
    write_report(rows, list(os.getloadavg()), str(args.before), str(args.after), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
