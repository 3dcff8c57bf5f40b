"""`symgrad ops` in-process against Dask workers, side by side in one run.

Three runs of the same catalogue (by default the whole one, float64, float32 and bfloat16, budget
32: the committed reports/ops.json's settings), one after the other in one script run:

- in-process (``run_ops(cfg)``, what `symgrad ops` does without --workers/--scheduler);
- ``--workers 2``: a Dask ``LocalCluster`` of 2 single-threaded worker processes;
- a real ``dask scheduler`` and 2 ``dask worker --nthreads 1`` processes on 127.0.0.1 (the
  README's commands, as subprocesses), reached with ``--scheduler tcp://127.0.0.1:PORT``
  (``--no-scheduler`` skips it).

Each run's wall time and the CPU seconds of its whole process tree (this process, plus every
child process it reaped: the workers, nannies and scheduler; the workers' own rusage, read on
them before they stop, is given beside it) are recorded with the load average. The reports are
compared as ``as_json`` documents without their timing fields (the top-level ``timing`` and each
row's ``seconds``): every row (counts, worst ratios, findings, failing inputs, gradcheck), the
grouped findings, the summary and the gradcheck comparison. The generated section of
reports/benchmark_cluster.md is replaced (``atomic.write_section``), the rest of the page kept.

    nice -n 10 python scripts/benchmark_cluster.py [--ops N] [--dtype float64,float32]
        [--budget 32] [--workers 2] [--no-scheduler] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad import atomic  # noqa: E402
from symgrad.cluster import connect, session  # noqa: E402
from symgrad.errors import SymgradError  # noqa: E402
from symgrad.opcatalog import OpsConfig, run_ops  # noqa: E402
from symgrad.opcatalog.report import as_json  # noqa: E402
from symgrad.opcatalog.table import CATALOGUE  # noqa: E402

START_S = 120  # the scheduler and its workers must be up within this (a loaded machine)
SECTION = "benchmark_cluster"
DTYPES = "float64,float32,bfloat16"  # reports/ops.json's


def _without_times(doc: dict) -> dict:
    """The report without its timing fields: the top-level ``timing``, each row's ``seconds``."""
    doc = json.loads(json.dumps(doc))
    doc.pop("timing", None)
    for row in doc.get("rows", []):
        row.pop("seconds", None)
    return doc


def _differences(a: dict, b: dict) -> list[str]:
    """Where two timing-free reports differ: the cells (op/dtype) and top-level keys."""
    out = [f"key {k}" for k in sorted(set(a) | set(b))
           if k != "rows" and a.get(k) != b.get(k)]
    ra, rb = a.get("rows", []), b.get("rows", [])
    if len(ra) != len(rb):
        out.append(f"rows: {len(ra)} against {len(rb)}")
    for x, y in zip(ra, rb):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            out.append(f"row {x.get('op')}/{x.get('dtype')}: {', '.join(keys)}")
    return out


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its reaped child processes."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _worker_facts() -> dict:
    """Run on each worker just before it stops: its own CPU seconds and torch's threads."""
    import torch
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": r.ru_utime + r.ru_stime, "torch_threads": torch.get_num_threads()}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed(label: str, cfg: OpsConfig, client_of) -> tuple[dict, dict]:
    """One run: ``client_of()`` is a context giving the client (None: in-process)."""
    print(f"[{time.strftime('%H:%M:%S')}] {label}: start, load {_load()}", file=sys.stderr,
          flush=True)
    cpu0, wall0 = _cpu(), time.perf_counter()
    with client_of() as client:
        started = time.perf_counter()
        report = run_ops(cfg, client=client)
        ran = time.perf_counter()
        workers = ({} if client is None else
                   {addr.rsplit(":", 1)[-1]: facts
                    for addr, facts in client.run(_worker_facts).items()})
    cpu1, wall1 = _cpu(), time.perf_counter()
    fact = {"wall_s": round(wall1 - wall0, 1), "run_s": round(ran - started, 1),
            "start_s": round(started - wall0, 1), "stop_s": round(wall1 - ran, 1),
            "cpu_parent_s": round(cpu1[0] - cpu0[0], 1),
            "cpu_children_s": round(cpu1[1] - cpu0[1], 1),
            "cpu_tree_s": round(cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1], 1),
            "cpu_workers_s": round(sum(w["cpu_s"] for w in workers.values()), 1),
            "worker_torch_threads": sorted({w["torch_threads"] for w in workers.values()}),
            "load_after": _load()}
    print(f"[{time.strftime('%H:%M:%S')}] {label}: {fact}", file=sys.stderr, flush=True)
    return fact, as_json(report)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _real_cluster:
    """`dask scheduler` + N `dask worker --nthreads 1` on 127.0.0.1 (the README's commands),
    as subprocesses of this one; the client to them; every process stopped and reaped on exit."""

    def __init__(self, workers: int):
        self.workers, self.procs, self.client = workers, [], None

    def _start(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli." + args[0], *args[1:]], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}"
        self._start("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                    "--no-dashboard")
        for _ in range(self.workers):
            self._start("dask_worker", address, "--nthreads", "1", "--no-dashboard",
                        "--host", "127.0.0.1")
        deadline = time.time() + START_S
        self.client = None
        while time.time() < deadline:
            try:
                self.client = self.client or connect(address, None)
                if len(self.client.scheduler_info()["workers"]) == self.workers:
                    return self.client
            except SymgradError:  # the scheduler is not up yet: try again until the deadline
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise SystemExit(f"the Dask scheduler and {self.workers} workers did not start within "
                         f"{START_S} s")

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        for p in reversed(self.procs):  # workers first (they stop their nannies' children)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        return False


def _page(doc: dict) -> str:
    runs = doc["runs"]
    base = runs["in-process"]
    scope = "The whole catalogue" if doc["whole"] else "A subset"
    extra = doc["operators"] - doc["supported"]
    lines = [f"## {scope}: {doc['supported']} operators x {len(doc['dtypes'])} "
             f"dtypes ({doc['cells']} cells" + (f" with the {extra} unsupported rows" if extra
                                                else "") + ")", "",
             f"`symgrad ops --dtype {','.join(doc['dtypes'])}` (budget {doc['budget']}, seed "
             f"{doc['seed']}, second order and gradcheck on: reports/ops.json's settings), run "
             f"{len(runs)} ways one after the other in one `{doc['command']}` run on {doc['cores']} "
             f"cores ({doc['cpu']}; {doc['date']}, commit {doc['commit']}). The machine was "
             f"shared: load average {doc['load_before']} before, {doc['load_after']} after; "
             "wall times are under that load, the CPU seconds are the run's own.", "",
             "| run | wall s (start + run + stop) | CPU s, whole process tree | of it on the "
             "workers | CPU / in-process | same report as in-process |",
             "|---|---|---|---|---|---|"]
    for label, r in runs.items():
        ratio = r["cpu_tree_s"] / base["cpu_tree_s"] if base["cpu_tree_s"] else float("nan")
        same = "-" if label == "in-process" else ("yes" if doc["same"][label] else "**NO**")
        lines.append(f"| {label} | {r['wall_s']} ({r['start_s']} + {r['run_s']} + "
                     f"{r['stop_s']}) | {r['cpu_tree_s']} | "
                     f"{r['cpu_workers_s'] if label != 'in-process' else '-'} | "
                     f"{ratio:.2f}x | {same} |")
    lines += ["", "What is compared: each run's `as_json` report (what `symgrad ops --json` "
              "writes) without its timing fields, the top-level `timing` and every row's "
              "`seconds`; everything else must be equal: all "
              f"{doc['cells']} rows (status, samples, the first- and second-order counts of "
              "ok/kink/inconclusive/outside/failing entries and their worst ratio and ULPs, each "
              "row's findings with their points, expected and got values, its failing inputs, "
              "its gradcheck flags), the report's "
              f"{doc['findings']} grouped findings, the summary per dtype and the gradcheck "
              "comparison. " + (
                  "They are equal for every run." if all(doc["same"].values()) else
                  "They differ: " + "; ".join(f"{k}: {', '.join(v[:8])}"
                                             for k, v in doc["differences"].items() if v)),
              "",
              "CPU s of the whole process tree: this process (client, LocalCluster's scheduler "
              "and nannies) plus every child process it reaped (the worker processes; for the "
              "real cluster the `dask scheduler` and `dask worker` processes and, through "
              "them, their nannies' workers), from `getrusage`. 'Of it on the workers': each "
              "worker's own rusage, read on it just before it stops. In-process torch ran with "
              f"{doc['torch_threads']} threads; the workers with "
              f"{doc['worker_torch_threads']} (Dask sets one thread per worker process). On one "
              "2-core machine the workers share the cores the in-process run uses and pay for "
              "their start, for shipping the tasks and for deriving each operator again in each "
              "worker: no speed-up is expected here; the point of the cluster is more machines "
              "(each worker adds its cores)."]
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=None,
                    help="first N supported catalogue rows (default: the whole catalogue)")
    ap.add_argument("--dtype", default=DTYPES)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-scheduler", action="store_true",
                    help="skip the run on a real `dask scheduler` + `dask worker` processes")
    ap.add_argument("--keep", default=None, help="write each run's report JSON into this folder")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the page's section from benchmark_cluster.json")
    a = ap.parse_args()
    if a.render:
        doc = json.loads((Path(a.out) / "benchmark_cluster.json").read_text())
        _write(Path(a.out), doc)
        return 0
    import torch
    names = (None if a.ops is None else
             tuple(op.name for op in CATALOGUE if not op.unsupported)[:a.ops])
    cfg = OpsConfig(ops=names, dtypes=tuple(a.dtype.split(",")), budget=a.budget,
                    progress=False)
    keep = Path(a.keep or tempfile.mkdtemp(prefix="benchmark_cluster."))
    keep.mkdir(parents=True, exist_ok=True)
    load_before, commit = _load(), _git("rev-parse", "--short", "HEAD")
    plan = [("in-process", _nothing),
            (f"{a.workers} local Dask workers (`--workers {a.workers}`, LocalCluster, 1 thread "
             "each)", lambda: session(None, a.workers))]
    if not a.no_scheduler:
        plan.append((f"`dask scheduler` + {a.workers} `dask worker --nthreads 1` on 127.0.0.1 "
                     "(`--scheduler`)", lambda: _real_cluster(a.workers)))
    runs, docs, doc = {}, {}, {}
    for i, (label, client_of) in enumerate(plan):
        runs[label], docs[label] = _timed(label, cfg, client_of)
        atomic.write_text(keep / f"run{i}.json", json.dumps(docs[label], indent=1) + "\n")
        if i:  # the page after each run: a run cut short keeps what was measured
            doc = _doc(a, cfg, runs, docs, load_before, torch.get_num_threads(), commit)
            _write(Path(a.out), doc)
    print(f"each run's report: {keep}", file=sys.stderr)
    print(_page(doc))
    return 0 if all(doc["same"].values()) else 1


def _doc(a, cfg: OpsConfig, runs: dict, docs: dict, load_before: list, threads: int,
         commit: str) -> dict:
    base = _without_times(docs["in-process"])
    diffs = {k: _differences(base, _without_times(d)) for k, d in docs.items()
             if k != "in-process"}
    supported = sum(1 for op in cfg.selected() if not op.unsupported)
    nice = os.nice(0)
    return {"operators": len(cfg.selected()), "supported": supported, "whole": a.ops is None,
            "dtypes": list(cfg.dtypes), "budget": a.budget, "seed": cfg.seed,
            "cells": len(docs["in-process"]["rows"]),
            "findings": len(docs["in-process"]["findings"]),
            "runs": runs, "same": {k: not v for k, v in diffs.items()}, "differences": diffs,
            "torch_threads": threads,
            "worker_torch_threads": sorted({t for r in runs.values()
                                            for t in r["worker_torch_threads"]}),
            "cores": os.cpu_count(), "cpu": _cpu_model(),
            "load_before": load_before, "load_after": _load(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit,  # HEAD when the run began
            "command": (f"nice -n {nice} " if nice else "") + "python scripts/benchmark_cluster.py"
                       + (f" --ops {a.ops}" if a.ops else "")
                       + (f" --dtype {a.dtype}" if a.dtype != DTYPES else "")
                       + (" --no-scheduler" if a.no_scheduler else "")}


def _write(out: Path, doc: dict) -> None:
    """benchmark_cluster.json (the earlier run kept under "earlier") and the generated section
    of benchmark_cluster.md (the rest of the page kept)."""
    old = json.loads((out / "benchmark_cluster.json").read_text()) \
        if (out / "benchmark_cluster.json").exists() else {}
    earlier = old.get("earlier", old if "operators" in old and "runs" not in old else None)
    atomic.write_text(out / "benchmark_cluster.json",
                      json.dumps({**doc, "earlier": earlier}, indent=1) + "\n")
    atomic.write_section(out / "benchmark_cluster.md", SECTION, _page(doc))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
