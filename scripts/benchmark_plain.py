"""The plain-model path's per-model cost, two source trees side by side (issue 17, "nothing
slower: the default test suite"): CPU seconds (user + system, ``resource.getrusage`` of each
child) of ``symgrad fuzz --budget B --seed 0`` and of the op catalogue's fast subset (as
``tests/test_opcatalog.py``'s ``test_fast_subset_...``), each workload in a fresh child per
tree, the trees alternated ``--repeat`` times so both meet the same load.

Usage::

    python scripts/benchmark_plain.py --old /path/to/old/tree --new . [--budget 300] \\
        [--repeat 2] [--work fuzz,ops]

Prints one Markdown table (median CPU s per tree, new / old) and each run's seconds; the
import of symgrad is timed apart and left out of the workload's seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.process_time()
import symgrad.fuzz as fz
from symgrad.opcatalog import OpsConfig, run_ops
t1 = time.process_time()
work, budget = sys.argv[1], int(sys.argv[2])
if work == "fuzz":
    r = fz.fuzz(budget, seed=0)
    answer = r.summary().split(" in ")[0] + f"; {len(r.disagreements)} disagreements"
else:
    FAST = ("relu", "sigmoid", "exp", "log1p", "softplus", "hardsigmoid", "softmax",
            "layer_norm", "mse_loss", "cross_entropy")  # tests/test_opcatalog.py's FAST
    r = run_ops(OpsConfig(ops=FAST, dtypes=("float64", "float32"), budget=10,
                          gradcheck=False))
    answer = f"ok={r.ok}, {len(r.findings)} findings, {len(r.rows)} rows"
t2 = time.process_time()
print("RESULT " + json.dumps({"import_s": t1 - t0, "work_s": t2 - t1, "answer": answer}))
"""


def run(tree: Path, work: str, budget: int) -> dict:
    """One child in ``tree``: its RESULT line, with the child's whole CPU seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-c", CHILD, work, str(budget)], cwd=tree, env=env,
                       capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    out["child_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the old source tree")
    ap.add_argument("--new", type=Path, default=Path("."), help="the new source tree")
    ap.add_argument("--budget", type=int, default=300, help="fuzz budget (seed 0)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per tree and workload")
    ap.add_argument("--work", default="fuzz,ops", help="workloads: fuzz, ops (commas)")
    args = ap.parse_args(argv)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    rows = []
    for work in [w for w in args.work.split(",") if w]:
        got: dict[str, list] = {"old": [], "new": []}
        for _ in range(args.repeat):
            for label, tree in trees.items():
                got[label].append(run(tree, work, args.budget))
                r = got[label][-1]
                print(f"  {work} {label}: work {r['work_s']:.2f} CPU s (import "
                      f"{r['import_s']:.2f}, child {r['child_s']:.2f}) {r['answer']}",
                      file=sys.stderr, flush=True)
        med = {k: statistics.median(r["work_s"] for r in v) for k, v in got.items()}
        same = {r["answer"] for v in got.values() for r in v}
        rows.append((work, med["old"], med["new"], med["new"] / med["old"], len(same) == 1,
                     [round(r["work_s"], 2) for r in got["old"]],
                     [round(r["work_s"], 2) for r in got["new"]]))
    print("| workload | old CPU s (median) | new CPU s (median) | new / old | same answer | "
          "old runs | new runs |")
    print("|---|---|---|---|---|---|---|")
    for w, o, n, q, s, ro, rn in rows:
        print(f"| {w} | {o:.2f} | {n:.2f} | {q:.3f} | {s} | {ro} | {rn} |")
    print(f"\nload (1, 5, 15 min) at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
