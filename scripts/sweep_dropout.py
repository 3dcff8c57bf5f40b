"""False-alarm sweep of train-mode dropout fed symgrad's keep-masks (``symgrad.capture.dropout``):
each module is correct, so any "fail" is a false alarm. Each module runs in train mode with its
dropout on and, side by side in the same run, with the same layers at p = 0 (no mask fed): an
inconclusive the masks cause shows as a difference between the two columns.

Modules (tests/test_capture_dropout.py's): an MLP with nn.Dropout(0.3); nn.TransformerEncoderLayer
(dropout 0.1: nn.Dropout x3 and the attention's SDPA dropout in its math form); a CNN with
Dropout2d(0.5) (channel masks). Per seed x {float64, float32}: the module built at seed 0
(``tests.clients.seeded``), its input from an explicit generator at 100 + seed, ``sg.verify``'s
seed = seed (the points around the example and each sample's masks). Writes
reports/sweep_dropout.md (atomically). Run niced:

    nice -n 10 python scripts/sweep_dropout.py [--seeds 10] [--out reports]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402
from tests.clients import seeded  # noqa: E402


def _mlp(p: float) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(p), nn.Linear(6, 3))


def _tel(p: float) -> nn.Module:
    return nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=p, batch_first=True)


def _cnn(p: float) -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Dropout2d(p), nn.Flatten(),
                         nn.Linear(12, 2))


MODULES = {  # name -> (builder, its dropout rate, input shape, targets or None)
    "MLP + Dropout(0.3)": (_mlp, 0.3, (5, 4), torch.tensor([0, 2, 1, 1, 0])),
    "TransformerEncoderLayer(dropout=0.1)": (_tel, 0.1, (2, 3, 8), None),
    "CNN + Dropout2d(0.5)": (_cnn, 0.5, (2, 2, 4, 4), torch.tensor([0, 1])),
}


def run(seeds: int) -> list[dict]:
    rows = []
    for name, (build, rate, shape, y) in MODULES.items():
        for dtype in ("float64", "float32"):
            for p in (rate, 0.0):
                counts, undecided, t0 = Counter(), 0, time.process_time()
                for seed in range(seeds):
                    with seeded(0):
                        m = build(p).to(getattr(torch, dtype))
                    x = torch.randn(*shape, generator=torch.Generator().manual_seed(100 + seed),
                                    dtype=getattr(torch, dtype))
                    kw = {"targets": y, "loss": F.cross_entropy} if y is not None else {}
                    r = sg.verify(module=m, inputs=x, train=True, dtype=dtype, seed=seed, **kw)
                    counts[r.verdict] += 1
                    c = r.counts("module")
                    undecided = max(undecided, c["inconclusive"] + c["suspect"])
                rows.append({"module": name, "dtype": dtype, "p": p, "counts": counts,
                             "undecided": undecided, "cpu": time.process_time() - t0})
                print(rows[-1], flush=True)
    return rows


def page(rows: list[dict], seeds: int, wall: float) -> str:
    head = (f"# Train-mode dropout fed symgrad's keep-masks: false-alarm sweep\n\n"
            f"`python scripts/sweep_dropout.py --seeds {seeds}` (load {os.getloadavg()[0]:.1f} "
            f"at the end; {wall:.0f} s wall). Every module is correct: a fail is a false alarm. "
            "Each row's dropout column beside the same module at p = 0 in the same run.\n\n"
            "| module | dtype | p | pass | inconclusive | fail | most undecided entries in "
            "one run | CPU s |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['module']} | {r['dtype']} | {r['p']:g} | {r['counts']['pass']} | "
                   f"{r['counts']['inconclusive']} | {r['counts']['fail']} | {r['undecided']} "
                   f"| {r['cpu']:.1f} |\n" for r in rows)
    fails = sum(r["counts"]["fail"] for r in rows)
    return head + body + f"\n{fails} false alarm(s) in {len(rows) * seeds} runs.\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = run(args.seeds)
    write_text(args.out / "sweep_dropout.md", page(rows, args.seeds, time.perf_counter() - t0))


if __name__ == "__main__":
    main()
