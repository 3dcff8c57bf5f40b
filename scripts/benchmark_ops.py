"""Benchmark of ``symgrad ops``: the whole catalogue in float64 and float32, timed per phase
and per operator (derive/compile cost is cached per operator across dtypes).

    python scripts/benchmark_ops.py [--budget 32] [--out reports/]

Writes reports/benchmark_ops.json and .md (the target: both dtypes within 5 minutes on the
2-core reference machine, gradcheck and second order included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from symgrad.opcatalog import OpsConfig, run_ops
from symgrad.atomic import write_text

TARGET_S = 300.0  # the target: float64 + float32 within 5 minutes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--out", default="reports")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    report = run_ops(OpsConfig(dtypes=("float64", "float32"), budget=args.budget))
    total = time.perf_counter() - t0
    slow = sorted(report.rows, key=lambda r: -r.seconds)[:10]
    doc = {"budget": args.budget, "cpus": os.cpu_count(), "python": platform.python_version(),
           "operators": len({r.op for r in report.rows}), "rows": len(report.rows),
           "total_s": round(total, 1), "target_s": TARGET_S, "within_target": total <= TARGET_S,
           "phases_s": {k: round(v, 1) for k, v in report.timing.items()},
           "slowest": [{"operator": r.op, "dtype": r.dtype, "seconds": round(r.seconds, 2)}
                       for r in slow]}
    out = Path(args.out)
    write_text(out / "benchmark_ops.json", json.dumps(doc, indent=2) + "\n")
    md = ["# symgrad ops benchmark", "",
          f"{doc['operators']} catalogue rows x float64, float32 at budget {args.budget} "
          f"({doc['cpus']} CPUs): **{total:.1f} s** (target {TARGET_S:.0f} s), phases: "
          + ", ".join(f"{k} {v} s" for k, v in doc["phases_s"].items()), "",
          "Slowest rows: " + ", ".join(f"{s['operator']} ({s['dtype']}) {s['seconds']} s"
                                       for s in doc["slowest"]), ""]
    write_text(out / "benchmark_ops.md", "\n".join(md))
    print("\n".join(md))
    return 0 if doc["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
