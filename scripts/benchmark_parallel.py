"""The oracle's and the bound's threaded passes (``symgrad.parallel``, issue 19) at GPT-2's
1024-token shapes, on 1 and on 2 threads side by side in one process: CPU seconds, wall, the
load average beside them, and whether the two results are bit-identical. Each pass runs
alternately on 1 and 2 threads, ``--repeat`` times (best wall, its CPU).

    python scripts/benchmark_parallel.py              # reports/benchmark_parallel.md
    python scripts/benchmark_parallel.py --repeat 2 --no-write
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp

from symgrad import parallel
from symgrad.precise import DD_OPS
from symgrad.precise.dd import DD
from symgrad.precise.ddsum import dd_sum
from symgrad.precise.ozaki import dd_matmul
from symgrad.tensor.mapbound import b_map
from symgrad.tensor.program import X

REPORT = Path(__file__).resolve().parents[1] / "reports" / "benchmark_parallel.md"


def passes() -> list[tuple[str, callable]]:
    """(name, f) of each pass at GPT-2's 1024-token shapes (width 768, MLP 3072, 12 heads);
    f() returns the arrays compared for bit-identity."""
    rng = np.random.default_rng(0)
    a = DD(rng.standard_normal((1, 1024, 768)), rng.standard_normal((1, 1024, 768)) * 2.0**-60)
    b = DD(rng.standard_normal((1, 768, 3072)), rng.standard_normal((1, 768, 3072)) * 2.0**-60)
    x = sp.Symbol("x")
    gelu = x * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 10**6) * x**3))) / 2
    v = DD_OPS.asarray(rng.standard_normal(1024 * 3072))
    att = rng.standard_normal((1, 12, 1024, 1024))
    err = np.abs(att) * 2.0**-52

    class Node:  # a map node as the bound's walk gives it: exp(x0) * x1 (softmax's VJP terms)
        attrs = {"expr": sp.exp(X[0]) * X[1]}
        op = "map"
    s = DD(rng.standard_normal((1024, 8192)), rng.standard_normal((1024, 8192)) * 2.0**-60)

    def pair(d: DD):
        return d.hi, d.lo
    return [
        ("Ozaki DD product 1024x768 @ 768x3072 (an MLP weight)", lambda: pair(dd_matmul(a, b))),
        ("DD map: GELU over 1024 x 3072", lambda: pair(DD_OPS.map(gelu, {x: v}))),
        ("bound, map E in blocks: exp(x0) x1 over 12 x 1024 x 1024 (attention)",
         lambda: (b_map(Node, [att, att], [err, err], att, None),)),
        ("DD sum over the last axis of 1024 x 8192", lambda: pair(dd_sum(s, (1,), False))),
    ]


def measure(repeat: int) -> list[dict]:
    rows = []
    for name, f in passes():
        best: dict[int, tuple] = {}
        outs: dict[int, tuple] = {}
        for _ in range(repeat):
            for threads in (1, 2):
                with parallel.using(threads):
                    load = os.getloadavg()[0]
                    c0, w0 = time.process_time(), time.perf_counter()
                    outs[threads] = f()
                    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if threads not in best or wall < best[threads][0]:
                    best[threads] = (wall, cpu, load)
        same = all(np.array_equal(p, q, equal_nan=True) for p, q in zip(outs[1], outs[2]))
        rows.append({"pass": name, "best": best, "same": same})
        print(name, best, "bit-identical" if same else "DIFFERENT", file=sys.stderr, flush=True)
    return rows


def render(rows: list[dict], repeat: int) -> str:
    md = ["# The oracle's and the bound's passes on 1 and 2 threads (issue 19)", "",
          "`scripts/benchmark_parallel.py`: each pass at GPT-2's 1024-token shapes on "
          "`symgrad.parallel`'s threads, 1 and 2 alternately in one process, best wall of "
          f"{repeat} (its CPU s beside it) and the 1-minute load average at its start. The "
          "machine is a shared 2-core one: at a load above 2 a second thread gets a core only "
          "part of the time, so the wall ratio is a lower bound of what an idle machine gives. "
          "The two results are compared bit for bit.", "",
          "| pass | 1 thread: wall s (CPU s) | 2 threads: wall s (CPU s) | wall 1 / 2 | "
          "load | bits |", "|---|---|---|---|---|---|"]
    for r in rows:
        (w1, c1, l1), (w2, c2, l2) = r["best"][1], r["best"][2]
        md.append(f"| {r['pass']} | {w1:.2f} ({c1:.2f}) | {w2:.2f} ({c2:.2f}) | "
                  f"{w1 / w2:.2f}x | {l1:.1f}, {l2:.1f} | "
                  f"{'identical' if r['same'] else 'DIFFERENT'} |")
    return "\n".join(md) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    md = render(measure(args.repeat), args.repeat)
    print(md)
    if not args.no_write:
        from symgrad.atomic import write_text
        write_text(REPORT, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
