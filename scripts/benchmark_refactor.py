"""Nothing gets slower: the same `symgrad verify` runs on a baseline commit and on this tree,
side by side in one run (alternating, best of N), written to reports/benchmark_refactor.md/.json.

A redesign (issue 17: one program, one op table) must keep every case within 10 % of the
baseline's time. Each run is a fresh process (`python -m symgrad verify ... --json`) with the
tree on PYTHONPATH; the baseline is checked out with `git worktree` into a temporary folder.
The verdict of both runs is recorded too: a faster run that decides differently is no win.

    python scripts/benchmark_refactor.py --base 05efed3            # tiny_gpt, 4-layer width 64
    python scripts/benchmark_refactor.py --base 05efed3 --gpt2     # + gpt2 at 64 tokens (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.report.atomic import write_text  # noqa: E402

W64 = json.dumps({"vocab_size": 1024, "context_length": 32, "emb_dim": 64, "n_heads": 4,
                  "n_layers": 4, "drop_rate": 0.1})
# name -> verify arguments (the three sizes)
CASES = {
    "tiny_gpt, 8 samples": ["tiny_gpt", "--samples", "8"],
    "4-layer width-64 GPT, 32 tokens, 8 samples": ["tiny_gpt", "--config", W64, "--tokens", "32",
                                                    "--samples", "8"],
}
GPT2 = {"gpt2, 64 tokens, 1 sample": ["gpt2", "--tokens", "64", "--samples", "1"]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_once(tree: Path, args: list[str], timeout: float) -> tuple[float, str]:
    """One `symgrad verify` of ``args`` with ``tree`` on PYTHONPATH: (wall seconds, verdict)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "symgrad", "verify", *args, "--json"], cwd=tree,
                       env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1, 3):
        raise RuntimeError(f"{tree}: verify {' '.join(args)} exited {p.returncode}: "
                           f"{p.stderr.strip().splitlines()[-1:]}")
    out = json.loads(p.stdout)
    results = out if isinstance(out, list) else [out]
    return wall, ",".join(str(r.get("verdict")) for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="baseline commit (e.g. the session's start)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case and tree (best of)")
    ap.add_argument("--gpt2", action="store_true", help="also gpt2 at 64 tokens (minutes, ~14 GB)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmark_refactor"))
    a = ap.parse_args()
    cases = dict(CASES, **(GPT2 if a.gpt2 else {}))
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
                times: dict[str, list[float]] = {"base": [], "new": []}
                verdicts: dict[str, str] = {}
                for _ in range(a.repeat):  # alternate, so load drifts hit both alike
                    for label, tree in (("base", base), ("new", ROOT)):
                        t, v = run_once(tree, args, timeout=3600)
                        times[label].append(t)
                        verdicts[label] = v
                b, n = min(times["base"]), min(times["new"])
                rows.append({"case": name, "args": args, "base_s": round(b, 2),
                             "new_s": round(n, 2), "ratio": round(n / b, 3),
                             "within_10pct": n <= 1.1 * b, "verdict_base": verdicts["base"],
                             "verdict_new": verdicts["new"],
                             "same_verdict": verdicts["base"] == verdicts["new"]})
                print(rows[-1], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    meta = {"base": base_sha, "new": head_sha, "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_end": os.getloadavg()[0], "repeat": a.repeat}
    lines = [
        "# Nothing gets slower: baseline vs this tree, side by side",
        "",
        f"`scripts/benchmark_refactor.py`: each case is `symgrad verify ... --json` in a fresh "
        f"process, alternating baseline ({base_sha}) and this tree ({head_sha}), best of "
        f"{a.repeat}; {meta['cpu']}, {meta['cores']} cores, load average "
        f"{meta['load_average_end']:.1f} at the end. The target: every case within 10 % of the "
        f"baseline, with the same verdict.",
        "",
        "| case | baseline s | this tree s | ratio | within 10 % | verdict (base / new) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['base_s']:.2f} | {r['new_s']:.2f} | {r['ratio']:.2f} | "
                     f"{'yes' if r['within_10pct'] else 'NO'} | {r['verdict_base']} / "
                     f"{r['verdict_new']} |")
    write_text(Path(a.out + ".md"), "\n".join(lines) + "\n")
    write_text(Path(a.out + ".json"), json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
