"""Cost of symgrad.gradcheck against torch.autograd.gradcheck (fast_mode off and on) on one
function, side by side: ``tanh(x @ W).sum(-1)`` with x (8, n), W (n, n). Writes
reports/capture_cost.md and .json.

    python scripts/capture_cost.py [--sizes 30 100] [--out reports]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402


def f(x, W):
    return torch.tanh(x @ W).sum(-1)


UNDECIDED: list[str] = []  # gradcheck's headline and first entry of each inconclusive call


def timed(check, *args, **kw) -> tuple[str, float, float]:
    """(verdict, seconds, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verdict = "pass" if check(*args, **kw) else "fail"
    except sg.GradcheckError as exc:
        head = str(exc).splitlines()[0]
        share = re.search(r"— (\d+) of ([\d,]+) entries", head)
        verdict = ("fail" if "inconclusive" not in head else
                   f"inconclusive ({share.group(1)} of {share.group(2)})" if share else
                   "inconclusive")
        if "inconclusive" in head and kw.get("rule_check", True):  # once per point
            UNDECIDED.append("\n".join(str(exc).splitlines()[:2]))
    except RuntimeError:
        verdict = "fail"
    return verdict, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--out", default=str(ROOT / "reports"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    sg.gradcheck(f, (torch.randn(2, 3, dtype=torch.float64, requires_grad=True),
                     torch.randn(3, 3, dtype=torch.float64, requires_grad=True)))  # warm-up
    rows = []
    for n in args.sizes:
        g = torch.Generator().manual_seed(n)
        for dtype in (torch.float64, torch.float32):
            x = torch.randn(8, n, generator=g, dtype=dtype).requires_grad_()
            W = (torch.randn(n, n, generator=g, dtype=dtype) / n ** 0.5).requires_grad_()
            row = {"n": n, "entries": x.numel() + W.numel(), "dtype": str(dtype)[6:]}
            row["symgrad"], row["symgrad_s"], row["symgrad_cpu"] = timed(sg.gradcheck, f, (x, W))
            # the float64 rule check off (sg.gradcheck(..., rule_check=False)): what it costs
            row["symgrad_off"], row["symgrad_off_s"], row["symgrad_off_cpu"] = timed(
                sg.gradcheck, f, (x, W), rule_check=False)
            row["torch_fast"], row["torch_fast_s"], _ = timed(torch.autograd.gradcheck, f,
                                                              (x, W), fast_mode=True)
            row["torch_slow"], row["torch_slow_s"], _ = timed(torch.autograd.gradcheck, f,
                                                              (x, W))
            rows.append(row)
            print(row, flush=True)
    out = Path(args.out)
    write_text(out / "capture_cost.json", json.dumps(rows, indent=1) + "\n")
    lines = ["# symgrad.gradcheck vs torch.autograd.gradcheck: cost", "",
             f"torch {torch.__version__}, {platform.machine()}, CPU, 2 threads; `python "
             "scripts/capture_cost.py`. Function `tanh(x @ W).sum(-1)`, x (8, n), W (n, n), "
             "both differentiated; symgrad: 4 points (the given one and 3 around it), a random "
             "cotangent; torch: finite differences (slow: every input entry; fast: one random "
             "direction). symgrad runs its float64 rule check in float32 by default (the "
             "user's code once more in float64 on the same points: `VerifyConfig.rule_check`); "
             "the next column is the same call with `rule_check=False`, side by side in this "
             "run. Verdict (inconclusive: how many of the entries compared, value "
             "and gradients at the 4 points, could not be decided), then wall seconds (and "
             "symgrad's CPU seconds, this process's). Measured "
             "on a 2-core machine shared with other jobs (load "
             f"{os.getloadavg()[0]:.0f} at the end): the times are noisy, the ratio is the "
             "point.", "",
             "| n | input entries | dtype | symgrad | s | CPU s | symgrad, rule check off | s | "
             "CPU s | torch fast | s | torch slow | s | slow / symgrad |",
             "| ---: | ---: | --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: | --- | "
             "---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['entries']} | {r['dtype']} | {r['symgrad']} | "
                     f"{r['symgrad_s']:.2f} | {r['symgrad_cpu']:.2f} | {r['symgrad_off']} | "
                     f"{r['symgrad_off_s']:.2f} | {r['symgrad_off_cpu']:.2f} | "
                     f"{r['torch_fast']} | {r['torch_fast_s']:.2f} | "
                     f"{r['torch_slow']} | {r['torch_slow_s']:.2f} | "
                     f"{r['torch_slow_s'] / r['symgrad_s']:.1f}x |")
    if UNDECIDED:
        lines += ["", "symgrad's inconclusive calls, as `sg.gradcheck` words them (its headline "
                  "and the first undecided entry):", ""]
        lines += [f"    {line}" for text in UNDECIDED for line in text.splitlines()]
    write_text(out / "capture_cost.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
