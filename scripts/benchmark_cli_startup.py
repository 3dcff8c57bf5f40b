"""What bad usage costs: CPU seconds (user + system) and max RSS of ``python -m symgrad.cli
ARGS`` (the process's own ``getrusage`` as it exits) for commands answered before any model is built (a usage
error, an unknown model name, ``list``, ``--help``), each tree in fresh processes, with the exit
code, the one stderr line and whether torch or sympy was imported on the way. Writes
reports/benchmark_cli_startup.md.

Usage::

    python scripts/benchmark_cli_startup.py --trees BASE_TREE . --labels BASE NEW --runs 5

>>> _median([3.0, 1.0, 2.0])
2.0
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["verify", "--bogus"], ["verify", "nosuchmodel"], ["verify", "neuron", "--bogus"],
            ["list"], ["verify", "--help"]]
# run as ``python -m symgrad.cli``, then print which heavy modules the process imported and
# its own CPU seconds and max RSS (KB)
WRAPPER = ("import resource, runpy, sys\n"
           "sys.argv = ['symgrad'] + sys.argv[1:]\n"
           "try:\n"
           "    runpy.run_module('symgrad.cli', run_name='__main__')\n"
           "finally:\n"
           "    u = resource.getrusage(resource.RUSAGE_SELF)\n"
           "    print('LOADED', sorted(m for m in ('torch', 'sympy') if m in sys.modules))\n"
           "    print('USAGE', u.ru_utime + u.ru_stime, u.ru_maxrss)\n")


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def _once(tree: Path, args: list[str]) -> dict:
    """One fresh process in ``tree``: CPU s, max RSS (MB), exit code, stderr line, loaded."""
    r = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=tree, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(tree)), timeout=300)
    loaded = [line for line in r.stdout.splitlines() if line.startswith("LOADED")][-1]
    cpu, rss = [line for line in r.stdout.splitlines() if line.startswith("USAGE")][-1].split()[1:]
    err = r.stderr.strip().splitlines()
    return {"cpu": float(cpu), "rss": int(rss) / 1024, "rc": r.returncode,
            "line": err[0] if err else "", "loaded": loaded[len("LOADED "):]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", nargs="+", required=True, help="source trees to compare")
    ap.add_argument("--labels", nargs="+", default=None, help="a name per tree (its commit)")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmark_cli_startup.md"))
    a = ap.parse_args()
    rows = []
    labels = dict(zip(a.trees, a.labels or a.trees))
    load = os.getloadavg()
    for args in COMMANDS:
        for tree in map(Path, a.trees):
            runs = [_once(tree.resolve(), args) for _ in range(a.runs)]
            cpu = [r["cpu"] for r in runs]
            rows.append((" ".join(args), labels[str(tree)], min(cpu), _median(cpu),
                         max(r["rss"] for r in runs), runs[0]["rc"], runs[0]["loaded"],
                         runs[0]["line"][:90].replace("|", "\\|")))  # (a table cell)
            print(rows[-1], flush=True)
    load_after = os.getloadavg()
    lines = ["# What bad usage costs (`python -m symgrad.cli ...`)", "",
             f"`python scripts/benchmark_cli_startup.py --trees {' '.join(labels.values())} "
             f"--runs {a.runs}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
             f"{load[0]:.1f} before, {load_after[0]:.1f} after (a shared 2-core machine: CPU "
             "seconds are the process's own user + system, from the interpreter's start to the command's "
             "end).",
             "", "| command | tree | CPU s (min) | CPU s (median) | max RSS MB | exit | "
             "imported | stderr |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| `{c}` | {t} | {lo:.2f} | {med:.2f} | {rss:.0f} | {rc} | {ld} | {ln} |"
              for c, t, lo, med, rss, rc, ld, ln in rows]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
