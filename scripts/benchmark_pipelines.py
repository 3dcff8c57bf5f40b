"""CPU seconds of the scalar and the program pipeline on small sympy models (issue 17: "the
default test suite no slower" once SYMGRAD_PIPELINE=program is the default).

Each case runs in a fresh child process per pipeline (imports counted once, outside the timed
part), one after the other on the same machine; the child's user and system CPU seconds of the
timed part are reported, not wall time (this project's box is shared: wall time follows the
load, CPU time much less). Cases:

- ``fuzz``: ``symgrad.fuzz.fuzz(budget, seed=0)`` (the CI test runs budget 1000);
- ``neuron`` / ``simplenet``: ``sg.verify`` of the zoo model, ``repeat`` times, samples=500;
- ``neuron_at1``: ``sg.verify(neuron, at=one sample)`` ``repeat`` times, as the
  hypothesis-driven ``symgrad.testing`` path calls it.

Usage::

    python scripts/benchmark_pipelines.py [--budget 300] [--repeat 10] [--out reports/benchmark_pipelines]

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import symgrad as sg
from symgrad import zoo
from symgrad.fuzz import fuzz
case, budget, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {}
def run():
    if case == "fuzz":
        r = fuzz(budget, seed=0)
        out["summary"] = r.summary().splitlines()[0].split(" in ")[0]
        out["disagreements"] = [d.reproducer for d in r.disagreements]
        return
    model = zoo.get(case.replace("_at1", ""))
    for i in range(repeat):
        if case.endswith("_at1"):
            rng = np.random.default_rng(i)
            at = {b.name: b.domain.sample(rng, b.shape) if b.shape else
                  float(b.domain.sample(rng, ())) for b in model.blocks}
            res = sg.verify(model, at=at)
        else:
            res = sg.verify(model, samples=500, seed=i)
        out.setdefault("ok", []).append(bool(res.ok))
t0 = resource.getrusage(resource.RUSAGE_SELF)
run()
t1 = resource.getrusage(resource.RUSAGE_SELF)
out["user_s"] = round(t1.ru_utime - t0.ru_utime, 2)
out["sys_s"] = round(t1.ru_stime - t0.ru_stime, 2)
print(json.dumps(out))
"""


def measure(case: str, pipeline: str, budget: int, repeat: int) -> dict:
    """One case on one pipeline in a fresh child process: its CPU seconds and answers."""
    env = {**os.environ, "SYMGRAD_PIPELINE": pipeline}
    done = subprocess.run([sys.executable, "-c", CHILD, case, str(budget), str(repeat)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Measure every case on both pipelines; write the JSON and Markdown reports."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--cases", default="fuzz,neuron,simplenet,neuron_at1")
    ap.add_argument("--out", default="reports/benchmark_pipelines")
    args = ap.parse_args(argv)
    rows = []
    for case in args.cases.split(","):
        got = {p: measure(case, p, args.budget, args.repeat) for p in ("scalar", "program")}
        same = ({k: v for k, v in got["scalar"].items() if not k.endswith("_s")}
                == {k: v for k, v in got["program"].items() if not k.endswith("_s")})
        cpu = {p: got[p]["user_s"] + got[p]["sys_s"] for p in got}
        rows.append({"case": case, "scalar": got["scalar"], "program": got["program"],
                     "ratio": round(cpu["program"] / max(cpu["scalar"], 1e-9), 2),
                     "same_answers": same})
        print(f"{case:12s} scalar {cpu['scalar']:7.2f} s  program {cpu['program']:7.2f} s  "
              f"x{rows[-1]['ratio']}  same answers: {same}", flush=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(
        {"budget": args.budget, "repeat": args.repeat, "rows": rows}, indent=1) + "\n")
    lines = ["# Scalar vs program pipeline, CPU seconds (user + sys, child process)", "",
             f"fuzz budget {args.budget}, seed 0; zoo models {args.repeat} verifies each "
             "(samples=500, or one `at=` sample).", "",
             "| case | scalar user+sys s | program user+sys s | program / scalar | same answers |",
             "|---|---|---|---|---|"]
    for r in rows:
        s, p = r["scalar"], r["program"]
        lines.append(f"| {r['case']} | {s['user_s']} + {s['sys_s']} | {p['user_s']} + "
                     f"{p['sys_s']} | {r['ratio']} | {r['same_answers']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
