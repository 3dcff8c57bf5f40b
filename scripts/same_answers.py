"""Do two source trees give the same answers? Every verify of a fuzz run and of each small zoo
model, as ``str(result)`` and the JSON of ``result.as_dict()`` (timings and sample rates left
out: they are the only fields that differ between runs of one tree), per tree in a fresh child,
then compared line by line (issue 17: a speed-up of the plain-model path, results identical).

Usage::

    python scripts/same_answers.py --before /path/to/old/tree [--after .] [--budget 300] \\
        [--models neuron,simplenet,...]

Prints the number of verifies and of differing ones; exit 1 where any differs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, re, sys, warnings
warnings.simplefilter("ignore")
import symgrad as sg, symgrad.zoo as zoo
import symgrad.fuzz as fz
out = []
TIMED = ("seconds", "timings", "samples_per_second", "per_second", "_s")

def clean(d):
    if isinstance(d, dict):
        return {k: clean(v) for k, v in d.items()
                if not any(k == t or k.endswith(t) for t in TIMED)}
    if isinstance(d, list):
        return [clean(v) for v in d]
    return d

def text(r):  # a side's label may name a step by its sympy Dummy index (random base per
    seen = {}  # process): numbered by first appearance
    s = str(r) + "\n" + json.dumps(clean(r.as_dict()), sort_keys=True, default=str)
    s = re.sub(r"\d+(\.\d+)? s\b", "T s", s)  # durations in the text
    return re.sub(r"#(\d+)", lambda m: "#%d" % seen.setdefault(m.group(1), len(seen)), s)

_verify = fz.verify
def recorded(model, **kw):
    r = _verify(model, **kw)
    out.append(["fuzz " + model.name, text(r)])
    return r
fz.verify = recorded
budget, models = int(sys.argv[1]), [m for m in sys.argv[2].split(",") if m]
rep = fz.fuzz(budget, seed=0)
out.append(["fuzz report", re.sub(r" in [\d.]+ s", "", rep.summary()) + "\n" + "\n".join(
    f"{d.index} {d.backend} {d.cause} {d.reproducer}" for d in rep.disagreements)])
for name in models:
    m = zoo.get(name)
    out.append([name, text(sg.verify(m, torch_fn=m.reference))])
print("ANSWERS " + json.dumps(out))
"""


def answers(tree: Path, budget: int, models: str) -> list:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run([sys.executable, "-c", CHILD, str(budget), models], cwd=tree, env=env,
                       capture_output=True, text=True)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("ANSWERS ")]
    if not line:
        raise SystemExit(f"same_answers: the run in {tree} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[-1][8:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the old tree (a checkout)")
    ap.add_argument("--after", type=Path, default=Path("."), help="the new tree (default .)")
    ap.add_argument("--budget", type=int, default=300, help="fuzz budget (seed 0)")
    ap.add_argument("--models", default="chain_rule,neuron,simplenet,tensor_ops,gpt_layer_norm,"
                    "gpt_gelu_tanh,gpt_softmax,gpt_cross_entropy", help="zoo models, commas")
    args = ap.parse_args(argv)
    old = answers(args.before.resolve(), args.budget, args.models)
    new = answers(args.after.resolve(), args.budget, args.models)
    if [k for k, _ in old] != [k for k, _ in new]:
        print("same_answers: the two trees verified different models")
        return 1
    differ = 0
    for (key, a), (_, b) in zip(old, new):
        if a != b:
            differ += 1
            print(f"--- {key} differs:")
            print("\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(),
                                                      lineterm=""))[:40]))
    print(f"same_answers: {len(old)} answers (fuzz budget {args.budget}, models "
          f"{args.models}); {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
