"""`symgrad ops` in-process against two local Dask workers, side by side in one run.

Writes reports/benchmark_cluster.md and .json: wall time of each, whether the reports are the
same (JSON without its timing fields), the machine's cores and load average.

    nice python scripts/benchmark_cluster.py [--ops N] [--budget 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.cluster import session  # noqa: E402
from symgrad.opcatalog import OpsConfig, run_ops  # noqa: E402
from symgrad.opcatalog.report import as_json  # noqa: E402
from symgrad.opcatalog.table import CATALOGUE  # noqa: E402


def _without_times(doc: dict) -> str:
    doc = json.loads(json.dumps(doc))
    doc.pop("timing", None)
    for row in doc.get("rows", []):
        row.pop("seconds", None)
    return json.dumps(doc, sort_keys=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=40, help="first N supported catalogue rows")
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    a = ap.parse_args()
    names = tuple(op.name for op in CATALOGUE if not op.unsupported)[:a.ops]
    cfg = OpsConfig(ops=names, dtypes=("float64", "float32"), budget=a.budget)
    t0 = time.time()
    local = run_ops(cfg)
    t_local = time.time() - t0
    t0 = time.time()
    with session(None, a.workers) as client:
        t_start = time.time() - t0
        t1 = time.time()
        remote = run_ops(cfg, client=client)
        t_remote = time.time() - t1
    same = _without_times(as_json(local)) == _without_times(as_json(remote))
    doc = {"operators": len(names), "dtypes": list(cfg.dtypes), "budget": a.budget,
           "cells": len(local.rows), "in_process_s": round(t_local, 1),
           "dask_workers": a.workers, "dask_start_s": round(t_start, 1),
           "dask_run_s": round(t_remote, 1), "same_report": same,
           "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
           "cpu": platform.processor() or platform.machine()}
    out = Path(a.out)
    (out / "benchmark_cluster.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = ["# symgrad ops: in-process against Dask workers (scripts/benchmark_cluster.py)", "",
          f"{doc['operators']} operators x {len(cfg.dtypes)} dtypes ({doc['cells']} cells), "
          f"budget {a.budget}, measured side by side in one run on {doc['cores']} cores "
          f"(load average after the run {doc['load_average']}).", "",
          "| run | wall s | same report as in-process |", "|---|---|---|",
          f"| in-process | {doc['in_process_s']} | - |",
          f"| {a.workers} local Dask workers (LocalCluster, 1 thread each) | "
          f"{doc['dask_run_s']} (+ {doc['dask_start_s']} to start the cluster) | "
          f"{'yes' if same else 'NO'} |", "",
          "The report is compared as JSON without its timing fields. On one 2-core machine "
          "the workers share the cores the in-process run already uses, and pay for shipping "
          "the tasks and deriving each operator once per worker: no speed-up is expected "
          "here; the point of the cluster is more machines (each worker adds its cores)."]
    (out / "benchmark_cluster.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
