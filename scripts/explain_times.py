"""CPU time of ``sg.explain`` (model built, explained, rendered as Markdown and HTML), one fresh
process per run, for one or more checkouts side by side: the best of ``--runs`` runs per case
(the machine is shared; the minimum is the least disturbed run).

    python scripts/explain_times.py --runs 3 /work/main /work/wt-explain
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CASES = ("neuron_at", "simplenet", "simplenet_at", "gpt_attention", "tiny_gpt", "tiny_gpt_at")

CHILD = r'''
import sys, time
import numpy as np
import symgrad as sg
from symgrad import zoo
case = sys.argv[1]
t0 = time.process_time()
rng = np.random.default_rng(0)
if case == "neuron_at":
    e = sg.explain(zoo.get("neuron"), at={"x": 1.1, "w": 2.2, "b": 0, "y": 1})
elif case == "simplenet_at":
    at = {"W1": rng.normal(size=(5, 10)), "b1": rng.normal(size=5),
          "W2": rng.normal(size=(1, 5)), "b2": [0.1], "x": rng.normal(size=10), "y": 1.0}
    e = sg.explain(zoo.get("simplenet"), at=at)
elif case == "tiny_gpt_at":
    m = zoo.get("tiny_gpt")
    at = {k: v[0] for k, v in m.draw(1, rng, "float64").items()}
    e = sg.explain(m, at=at)
else:
    e = sg.explain(zoo.get(case))
e.markdown(), e.html()
print(f"{time.process_time() - t0:.3f}")
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkouts", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    print("| case | " + " | ".join(args.checkouts) + " |")
    print("|---|" + "---|" * len(args.checkouts))
    for case in CASES:
        row = []
        for path in args.checkouts:
            best = None
            for _ in range(args.runs):
                r = subprocess.run([args.python, "-c", CHILD, case], cwd=path, text=True,
                                   capture_output=True, env={"PYTHONPATH": path,
                                                             "PATH": "/usr/bin:/bin"})
                if r.returncode:
                    best = "error: " + r.stderr.strip().splitlines()[-1][:80]
                    break
                t = float(r.stdout.strip().splitlines()[-1])
                best = t if best is None else min(best, t)
            row.append(f"{best:.2f} s" if isinstance(best, float) else best)
        print(f"| {case} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
