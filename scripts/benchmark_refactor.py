"""Nothing gets slower: the same `symgrad verify` runs on a baseline commit and on this tree,
side by side in one run (alternating, best of N), written to reports/benchmark_refactor.md/.json.

A redesign (issue 17: one program, one op table) must keep every case within 10 % of the
baseline's time. Each run is a fresh process (`python -m symgrad verify ... --json`) with the
tree on PYTHONPATH; the baseline is checked out with `git worktree` into a temporary folder.
Per run: wall seconds, the child's CPU seconds (user + system, from ``os.wait4``), its peak
RSS and the 1-minute load average when it started. This project's box is shared, so wall time
is an upper bound that follows the load; CPU time follows it much less and decides the
10 % verdict (both ratios are reported). The verdict of both runs is recorded too: a faster
run that decides differently is no win.

gpt2 at full width needs ~7-8 GB: with ``--lock PATH`` each gpt2 run holds an exclusive
``flock`` on PATH (the same lock as ``flock PATH command``), so only one such run is on the
machine at a time, and it waits for ``--gpt2-free-gb`` of available memory first.

    python scripts/benchmark_refactor.py --base 05efed3            # tiny_gpt, 4-layer width 64
    python scripts/benchmark_refactor.py --base 05efed3 --gpt2 --lock /tmp/gpt2.lock \\
        --repeat 2 --gpt2-repeat 1                                  # + gpt2 at 64 tokens
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.atomic import write_text  # noqa: E402

W64 = json.dumps({"vocab_size": 1024, "context_length": 32, "emb_dim": 64, "n_heads": 4,
                  "n_layers": 4, "drop_rate": 0.1})
# name -> verify arguments (the three sizes)
CASES = {
    "tiny_gpt, 8 samples": ["tiny_gpt", "--samples", "8"],
    "4-layer width-64 GPT, 32 tokens, 8 samples": ["tiny_gpt", "--config", W64, "--tokens", "32",
                                                    "--samples", "8"],
}
GPT2 = {"gpt2, 64 tokens, 1 sample": ["gpt2", "--tokens", "64", "--samples", "1"]}
WITHIN = 1.10  # the "within 10 %"


@dataclass(frozen=True)
class Run:
    """One measured `symgrad verify` process."""

    wall_s: float
    cpu_s: float  # user + system of the child
    peak_rss_mb: float
    load_1min: float  # when the run started
    verdict: str
    lock_wait_s: float


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), or what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def available_gb() -> float:
    """MemAvailable from ``/proc/meminfo`` in GB (inf where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


@contextmanager
def held(lock: Path) -> Iterator[float]:
    """Hold an exclusive ``flock`` on ``lock`` (created if absent); yields the seconds waited."""
    t0 = time.perf_counter()
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def wait_for_memory(need_gb: float, *, patience_s: float = 900.0) -> None:
    """Wait until ``need_gb`` of memory is available; raise after ``patience_s`` seconds."""
    t0 = time.monotonic()
    while available_gb() < need_gb:
        if time.monotonic() - t0 > patience_s:
            raise SystemExit(f"benchmark_refactor: only {available_gb():.1f} GB available after "
                             f"{patience_s:.0f} s, --gpt2-free-gb asks for {need_gb:.1f}; rerun "
                             f"when the machine is quieter or lower --gpt2-free-gb")
        time.sleep(10)


def run_once(tree: Path, args: list[str], *, timeout: float, lock: Path | None = None,
             need_gb: float = 0.0) -> Run:
    """One `symgrad verify` of ``args`` with ``tree`` on PYTHONPATH, measured as a `Run`.

    Arguments:
        tree: the source tree (its ``symgrad`` is imported; the child runs in it).
        args: the arguments after ``symgrad verify`` (``--json`` is appended).
        timeout: seconds before the child is killed (and this raises).
        lock: hold an exclusive flock on this path for the run (None: no lock).
        need_gb: wait, holding the lock, until this much memory is available.

    Returns:
        The run's wall and CPU seconds, peak RSS, starting load and verdict(s).
    """
    env = dict(os.environ, PYTHONPATH=str(tree))
    with (held(lock) if lock else nullcontext(0.0)) as waited:
        wait_for_memory(need_gb)
        load = os.getloadavg()[0]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen([sys.executable, "-m", "symgrad", "verify", *args, "--json"],
                                 cwd=tree, env=env, stdout=out, stderr=err)
            killer = threading.Timer(timeout, p.kill)
            killer.start()
            try:
                _, status, usage = os.wait4(p.pid, 0)
            finally:
                killer.cancel()
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
    if p.returncode not in (0, 1, 3):
        raise RuntimeError(f"{tree}: verify {' '.join(args)} exited {p.returncode}: "
                           f"{stderr.strip().splitlines()[-1:]}")
    res = json.loads(stdout)
    results = res if isinstance(res, list) else [res]
    return Run(wall_s=round(wall, 2), cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
               peak_rss_mb=round(usage.ru_maxrss / 1024, 1), load_1min=round(load, 2),
               verdict=",".join(str(r.get("verdict")) for r in results),
               lock_wait_s=round(waited, 1))


def summarize(name: str, args: list[str], runs: dict[str, list[Run]]) -> dict:
    """One table row: best wall and best CPU per tree, their ratios, peak RSS, loads, verdicts."""
    best = {k: (min(r.wall_s for r in v), min(r.cpu_s for r in v)) for k, v in runs.items()}
    verdicts = {k: sorted({r.verdict for r in v}) for k, v in runs.items()}
    (bw, bc), (nw, nc) = best["base"], best["new"]
    loads = [r.load_1min for v in runs.values() for r in v]
    return {"case": name, "args": args, "repeat": len(runs["new"]),
            "base_wall_s": bw, "new_wall_s": nw, "wall_ratio": round(nw / bw, 3),
            "base_cpu_s": bc, "new_cpu_s": nc, "cpu_ratio": round(nc / bc, 3),
            "within_10pct_cpu": nc <= WITHIN * bc, "within_10pct_wall": nw <= WITHIN * bw,
            "base_peak_rss_mb": max(r.peak_rss_mb for r in runs["base"]),
            "new_peak_rss_mb": max(r.peak_rss_mb for r in runs["new"]),
            "load_min": min(loads), "load_max": max(loads),
            "verdict_base": "/".join(verdicts["base"]), "verdict_new": "/".join(verdicts["new"]),
            "same_verdict": verdicts["base"] == verdicts["new"],
            "runs": {k: [asdict(r) for r in v] for k, v in runs.items()}}


def markdown(rows: list[dict], meta: dict) -> str:
    """The report's Markdown: method line, then one row per case."""
    lines = [
        "# Nothing gets slower: baseline vs this tree, side by side",
        "",
        f"`scripts/benchmark_refactor.py`: each case is `symgrad verify ... --json` in a fresh "
        f"process, alternating baseline ({meta['base']}) and this tree ({meta['new']}); best of "
        f"the runs shown per case (wall and CPU minimised separately). {meta['cpu']}, "
        f"{meta['cores']} cores, shared: wall time is an upper bound that follows the load, so "
        f"the 10 % target is judged on CPU seconds (user + system of the child); the load "
        f"column is the 1-minute load average at the start of each run (min-max)."
        + (f" gpt2 runs held `flock {meta['lock']}`." if meta["lock"] else ""),
        "",
        "| case | runs | base CPU s | new CPU s | CPU ratio | base wall s | new wall s | "
        "wall ratio | peak RSS MB (base / new) | load | within 10 % (CPU / wall) | "
        "verdict (base / new) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['repeat']} | {r['base_cpu_s']:.2f} | {r['new_cpu_s']:.2f} | "
            f"{r['cpu_ratio']:.3f} | {r['base_wall_s']:.2f} | {r['new_wall_s']:.2f} | "
            f"{r['wall_ratio']:.3f} | {r['base_peak_rss_mb']:.0f} / {r['new_peak_rss_mb']:.0f} | "
            f"{r['load_min']:.1f}-{r['load_max']:.1f} | "
            f"{'yes' if r['within_10pct_cpu'] else 'NO'} / "
            f"{'yes' if r['within_10pct_wall'] else 'NO'} | "
            f"{r['verdict_base']} / {r['verdict_new']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="baseline commit (e.g. the session's start)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per small case and tree (best of)")
    ap.add_argument("--gpt2", action="store_true", help="also gpt2 at 64 tokens (minutes, ~8 GB)")
    ap.add_argument("--gpt2-only", action="store_true", help="gpt2 at 64 tokens alone")
    ap.add_argument("--gpt2-repeat", type=int, default=None,
                    help="runs per tree for gpt2 (default: --repeat)")
    ap.add_argument("--lock", type=Path, default=None,
                    help="hold an exclusive flock on this file around each gpt2 run "
                         "(e.g. /tmp/gpt2.lock)")
    ap.add_argument("--gpt2-free-gb", type=float, default=10.0,
                    help="wait for this much available memory before each gpt2 run")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmark_refactor"))
    a = ap.parse_args()
    for opt in ("repeat", "gpt2_repeat"):
        if getattr(a, opt) is not None and getattr(a, opt) < 1:
            ap.error(f"--{opt.replace('_', '-')} must be at least 1, got {getattr(a, opt)}")
    cases = {} if a.gpt2_only else dict(CASES)
    if a.gpt2 or a.gpt2_only:
        cases.update(GPT2)
    base_sha = subprocess.run(["git", "rev-parse", "--short", a.base], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    head_sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), a.base], cwd=ROOT,
                       check=True)
        try:
            for name, args in cases.items():
                big = name in GPT2
                repeat = (a.gpt2_repeat or a.repeat) if big else a.repeat
                runs: dict[str, list[Run]] = {"base": [], "new": []}
                for _ in range(repeat):  # alternate, so load drifts hit both alike
                    for label, tree in (("base", base), ("new", ROOT)):
                        r = run_once(tree, args, timeout=3600, lock=a.lock if big else None,
                                     need_gb=a.gpt2_free_gb if big else 0.0)
                        runs[label].append(r)
                        print(name, label, r, flush=True)
                    # written after every pair: an interrupted run keeps what it measured
                    write(a, rows + [summarize(name, args, runs)], base_sha, head_sha)
                rows.append(summarize(name, args, runs))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)


def write(a: argparse.Namespace, rows: list[dict], base_sha: str, head_sha: str) -> None:
    """Write ``<out>.md`` and ``<out>.json`` for the rows measured so far."""
    meta = {"base": base_sha, "new": head_sha, "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_end": os.getloadavg()[0], "repeat": a.repeat,
            "gpt2_repeat": a.gpt2_repeat or a.repeat, "lock": str(a.lock) if a.lock else None,
            "python": sys.version.split()[0]}
    write_text(Path(a.out + ".md"), markdown(rows, meta))
    write_text(Path(a.out + ".json"), json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
