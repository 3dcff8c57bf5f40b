"""The oracle's double-double products (Ozaki's scheme) on a torch device against numpy's, at
GPT-2's 1024-token shapes (issue 19, item 5), side by side in one process: wall and CPU seconds,
a float64 GEMM of the same shape on each (the floor), the load average, and how far the device's
result is from numpy's (its one rounded GEMM sums in another order: ``precise/ozaki_torch.py``).

    python scripts/benchmark_gpu.py                  # --device cuda where there is one, else cpu
    python scripts/benchmark_gpu.py --device cpu     # torch's CPU GEMMs (MKL) vs numpy's
    python scripts/benchmark_gpu.py --quick --no-write
    python scripts/benchmark_gpu.py --device cpu --rows run.err   # the page from a run's rows

Writes reports/benchmark_gpu.md (``--out`` to put it elsewhere). Device times include moving
the operands to the device and the result back (the oracle's DD arrays live in host memory).
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from symgrad.atomic import write_text
from symgrad.precise.dd import DD
from symgrad.precise.ozaki import dd_matmul
from symgrad.precise.ozaki_torch import dd_matmul_torch

REPORT = Path(__file__).resolve().parents[1] / "reports" / "benchmark_gpu.md"

# (name, Bt, M, K, N): GPT-2 small (width 768, 12 heads of 64, MLP 3072, vocabulary 50257) at
# 1024 tokens; the forward's products and the backward's weight gradients (K = the tokens)
SHAPES = [
    ("MLP up, forward: x W", 1, 1024, 768, 3072),
    ("MLP down, forward", 1, 1024, 3072, 768),
    ("MLP up, weight gradient: x^T dy", 1, 768, 1024, 3072),
    ("attention scores: Q K^T, 12 heads", 12, 1024, 64, 1024),
    ("attention values: A V, 12 heads", 12, 1024, 1024, 64),
    ("logits: x W_vocab^T", 1, 1024, 768, 50257),
    ("logits backward: dlogits W_vocab", 1, 1024, 50257, 768),
]
QUICK = [s for s in SHAPES if s[0].startswith(("MLP up, forward", "attention scores"))]


def operands(bt: int, m: int, k: int, n: int, seed: int) -> tuple[DD, DD]:
    """DD operands as the oracle's are: hi with a lo about 2**-53 of it."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((bt, m, k))
    b = rng.standard_normal((bt, k, n)) * 0.02
    return (DD(a, a * rng.standard_normal((bt, m, k)) * 2.0**-54),
            DD(b, b * rng.standard_normal((bt, k, n)) * 2.0**-54))


def timed(f, device: str | None = None):
    """(result, wall s, CPU s, load at the start); a device's queue drained before and after."""
    sync = torch.cuda.synchronize if device and device.startswith("cuda") else (lambda: None)
    sync()
    load = os.getloadavg()[0]
    c0, w0 = time.process_time(), time.perf_counter()
    out = f()
    sync()
    return out, time.perf_counter() - w0, time.process_time() - c0, load


def measure(shapes: list, device: str, repeat: int) -> list[dict]:
    rows = []
    dev = torch.device(device)
    warm = operands(1, 8, 8, 8, 0)
    dd_matmul_torch(*warm, device=device)  # the device's start-up, not the first row's
    for name, bt, m, k, n in shapes:
        a, b = operands(bt, m, k, n, m + k + n)
        best: dict[str, tuple] = {}
        for _ in range(repeat):
            runs = {
                "numpy DD": lambda: dd_matmul(a, b),
                "device DD": lambda: dd_matmul_torch(a, b, device=device),
                "numpy f64": lambda: np.matmul(a.hi, b.hi),
                "device f64": lambda: torch.matmul(torch.from_numpy(a.hi).to(dev),
                                                   torch.from_numpy(b.hi).to(dev)).cpu(),
            }
            for what, f in runs.items():
                got = None  # the last row's result freed before the next runs
                got, wall, cpu, load = timed(f, device if what.startswith("device") else None)
                if what not in best or wall < best[what][0]:
                    best[what] = (wall, cpu, load)
                if what == "numpy DD":
                    ref = got
                elif what == "device DD":
                    dd = got
                del got
        gap = same_hi = same_lo = 0.0
        for r0 in range(0, m, 128):  # in row blocks: no more whole-output temporaries
            rs = slice(r0, r0 + 128)
            scale = np.abs(a.hi[:, rs]) @ np.abs(b.hi)
            d = np.abs((dd.hi[:, rs] - ref.hi[:, rs]) + (dd.lo[:, rs] - ref.lo[:, rs]))
            gap = max(gap, float((d / scale).max()))
            same_hi += int(np.sum(dd.hi[:, rs] == ref.hi[:, rs]))
            same_lo += int(np.sum(dd.lo[:, rs] == ref.lo[:, rs]))
        rows.append({"name": name, "shape": (bt, m, k, n), "best": best, "gap": gap,
                     "same_hi": same_hi / ref.hi.size, "same_lo": same_lo / ref.hi.size})
        del ref, dd
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def machine(device: str) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = (torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
           else "torch's CPU device (no GPU: these are CPU figures)")
    blas = "MKL" if torch.backends.mkl.is_available() else "torch's own BLAS"
    return (f"{cpu}, {os.cpu_count()} cores, {platform.python_version()}; numpy {np.__version__} "
            f"(its BLAS: `numpy.show_config()`), torch {torch.__version__} ({blas} on CPU, "
            f"{torch.get_num_threads()} intra-op threads); device: {dev}")


def render(rows: list[dict], device: str, repeat: int, when: str) -> str:
    md = ["# The oracle's double-double products on a torch device vs numpy (issue 19, item 5)",
          "", f"`scripts/benchmark_gpu.py --device {device}`, {when}. {machine(device)}.", "",
          "Each row: one Ozaki double-double product (S = 3 slices: 4 float64 GEMMs over "
          "(S+1) K and 6 K columns, ~10x a float64 GEMM's multiply-adds, plus the slicing and "
          "the DD sums) at a GPT-2 1024-token shape, on numpy (`precise/ozaki.py`, OpenBLAS, "
          "`symgrad.parallel`'s threads) and on the torch device (`precise/ozaki_torch.py`, "
          "moving operands there and the result back), and a plain float64 GEMM of the same "
          f"shape on each. Best wall of {repeat}, its CPU s in brackets (a GPU's work is not "
          "CPU time), the 1-minute load average at its start. \"gap\": the largest "
          "|device - numpy| / (|A||B|)_ij (the rounded GEMM's order; the scheme's own error is "
          "~1e-31 of rowmax |A| colmax |B|); hi / lo: the share of entries with the same bits.",
          "", "| product | Bt x M x K x N | numpy DD: wall s (CPU s) | device DD: wall s (CPU s) "
          "| numpy / device: wall, CPU | numpy f64 s | device f64 s | DD / f64 on device | "
          "load | gap | hi, lo same |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["best"]
        nd, dd, nf, df = (b[k] for k in ("numpy DD", "device DD", "numpy f64", "device f64"))
        md.append(f"| {r['name']} | {' x '.join(map(str, r['shape']))} | {nd[0]:.2f} "
                  f"({nd[1]:.1f}) | {dd[0]:.2f} ({dd[1]:.1f}) | {nd[0] / dd[0]:.2f}x, "
                  f"{nd[1] / max(dd[1], 1e-9):.2f}x | {nf[0]:.3f} | {df[0]:.3f} | "
                  f"{dd[0] / df[0]:.0f}x | {nd[2]:.1f} | {r['gap']:.1e} | "
                  f"{r['same_hi']:.0%}, {r['same_lo']:.0%} |")
    total = {k: [sum(r["best"][k][i] for r in rows) for i in (0, 1)]
             for k in ("numpy DD", "device DD")}
    (nw, nc), (dw, dc) = total["numpy DD"], total["device DD"]
    md += ["", f"All rows: numpy {nw:.1f} s wall ({nc:.1f} CPU s), device {dw:.1f} s wall "
           f"({dc:.1f} CPU s): {nw / dw:.2f}x in wall, {nc / max(dc, 1e-9):.2f}x in CPU. On a "
           "loaded shared machine the wall is an upper bound and the CPU seconds are the figure "
           "to compare; on a GPU, the wall (its work is not CPU time)."]
    if not device.startswith("cuda"):
        md += ["", "These are CPU figures, no GPU's: torch's CPU device runs the device code "
               "(`ozaki_torch`) to show it runs and gives numpy's result, not to be fast. It "
               "makes each elementwise pass over a whole tile (out of cache) where numpy's path "
               "cuts sub-tiles that stay in cache, hence more CPU seconds. On a lent GPU: "
               "`bash scripts/gpu_checks.sh` (this page's rows with `--device cuda`, the CUDA "
               "tests, a 1-layer GPT-2 at 1024 tokens with its products there and on numpy)."]
    return "\n".join(md) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="two small rows only")
    ap.add_argument("--out", type=Path, default=REPORT)
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--rows", type=Path, default=None,
                    help="render the rows an earlier run printed on stderr (one per line)")
    ap.add_argument("--when", default=None, help="when the rows were measured (default now)")
    args = ap.parse_args()
    if args.rows:
        rows = [ast.literal_eval(ln) for ln in args.rows.read_text().splitlines()
                if ln.startswith("{'name'")]
    else:
        rows = measure(QUICK if args.quick else SHAPES, args.device, args.repeat)
    md = render(rows, args.device, args.repeat,
                args.when or time.strftime("%d %b %Y %H:%M UTC", time.gmtime()))
    print(md)
    if not args.no_write:
        write_text(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
