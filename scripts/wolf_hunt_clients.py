"""Hunt false FAILs on real small modules through ``sg.gradcheck``'s capture path: the CNN
(conv, BatchNorm in train mode, relu, max-pool, linear, then cross-entropy) and the LLaMA-style
block (RMSNorm, RoPE, causal SDPA, SwiGLU) of ``tests/clients.py``, in float32 and bfloat16,
at inputs that reach their kinks by rounding and at large logits. Each case is what
``sg.gradcheck(module, (x,))`` runs (``wolf_hunt.run_case``: the given point and 2 around it,
parameters and input differentiated), judged as ``wolf_hunt.judge`` does.

Regimes:
    cnn normal       x ~ N(0, 1)
    cnn zeros        x = 0: every conv output is its channel's bias, so BatchNorm (train) is
                     exactly 0 everywhere: every relu at its kink, every 2x2 pool window a
                     four-way tie (torch's rounded batch mean leaves +-1e-7: rounding picks
                     each relu's side)
    cnn quantized    x integers in -2..2, conv weights multiples of 1/4, bias 0: exact ties in
                     the pool windows and pre-activations equal to the batch mean
    cnn large        fc weights x 100: logits ~1e2, the cross-entropy saturated
    llama normal     x ~ N(0, 1)
    llama zeros      x = 0: q = k = v = 0, every attention row a tie (uniform softmax), silu(0)
    llama ties       every position the same vector: equal values along each attention row
    llama large      q, k weights x 30, w1 x 30: attention logits ~1e3 (one-hot softmax),
                     silu saturated

Usage (JSON in ``reports/wolf_hunt_clients.json``, the table printed in Markdown):

    PYTHONPATH=$PWD python scripts/wolf_hunt_clients.py --seeds 3

>>> m, x = build("cnn", "zeros", "float32", 0)
>>> bool((x == 0).all()) and tuple(x.shape)
(2, 2, 4, 4)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]
import clients  # noqa: E402  (tests/clients.py: the shared real modules)
import wolf_hunt  # noqa: E402

from symgrad import atomic  # noqa: E402
from symgrad.backends.torch import TORCH_DTYPES  # noqa: E402

JSON = os.path.join(HERE, "..", "reports", "wolf_hunt_clients.json")
REGIMES = {"cnn": ("normal", "zeros", "quantized", "large"),
           "llama": ("normal", "zeros", "ties", "large")}


class CNNLoss(nn.Module):
    """``clients.CNN`` then cross-entropy against fixed labels."""

    def __init__(self, net: nn.Module, labels: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("labels", labels)

    def forward(self, x):
        return F.cross_entropy(self.net(x), self.labels)


def build(model: str, regime: str, dtype: str, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """The module (train mode) and its input for one case; every draw from an explicit
    generator (the construction's from torch's, restored: ``clients.seeded``).

    Arguments:
        model: "cnn" or "llama".
        regime: one of ``REGIMES[model]`` (module docstring).
        dtype: float32 or bfloat16 (float64 too).
        seed: the case's seed.
    Returns:
        ``(module, x)``.
    """
    td = TORCH_DTYPES[dtype]
    g = torch.Generator().manual_seed(1000 * seed + 11)
    f64 = dict(dtype=torch.float64, generator=g)
    with clients.seeded(seed):
        net = clients.CNN() if model == "cnn" else clients.LlamaBlock()
    shape = (2, 2, 4, 4) if model == "cnn" else (1, 4, 8)
    x = torch.randn(shape, **f64)
    with torch.no_grad():
        if model == "cnn":
            if regime == "zeros":
                x.zero_()
            elif regime == "quantized":
                x = torch.randint(-2, 3, shape, generator=g).double()
                net.conv1.weight.copy_(torch.randint(-4, 5, net.conv1.weight.shape,
                                                     generator=g) / 4)
                net.conv1.bias.zero_()
            elif regime == "large":
                net.fc.weight.mul_(100)
            net = CNNLoss(net, torch.randint(0, 3, (2,), generator=g))
        else:
            if regime == "zeros":
                x.zero_()
            elif regime == "ties":
                x = x[:, :1].expand(shape).clone()
            elif regime == "large":
                for lin in (net.q, net.k, net.w1):
                    lin.weight.mul_(30)
    return net.to(td), x.to(td).requires_grad_(True)


def hunt(models: list[str], dtypes: list[str], seeds: int) -> list[dict]:
    rows = []
    for model in models:
        for dtype in dtypes:
            for regime in REGIMES[model]:
                for seed in range(seeds):
                    row = {"model": model, "dtype": dtype, "regime": regime, "seed": seed}
                    t0 = time.process_time()
                    try:
                        net, x = build(model, regime, dtype, seed)
                        row.update(wolf_hunt.judge(wolf_hunt.run_case(net, (x,), dtype,
                                                                      seed=seed)))
                    except Exception as exc:  # a case symgrad cannot run: recorded as such
                        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    row["cpu_s"] = round(time.process_time() - t0, 2)
                    rows.append(row)
                    print(model, dtype, regime, seed, row.get("counts"), row.get("worst"),
                          row["cpu_s"], (row.get("error") or row.get("fail") or "")[:400],
                          file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """One Markdown line per (model, dtype, regime), seeds pooled. kink: entries at a kink
    that agree with one of its sides (passing); worst: over every gradient entry, a kink
    entry's error measured from the derivative's main side."""
    out = ["| model | dtype | inputs | seeds | ok | kink | loss | inconcl. | suspect | FAIL | "
           "errors | worst err/allow |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["model"], r["dtype"], r["regime"]), []).append(r)
    for (model, dtype, regime), rs in groups.items():
        c: dict = {}
        for r in rs:
            for k, n in r.get("counts", {}).items():
                c[k] = c.get(k, 0) + n
        failing = sum(c.get(k, 0) for k in wolf_hunt.FAILING_NAMES)
        worst = [r["worst"] for r in rs if r.get("worst") is not None]
        out.append(f"| {model} | {dtype} | {regime} | {len(rs)} | {c.get('ok', 0)} | "
                   f"{c.get('kink', 0)} | {c.get('precision loss', 0)} | {c.get('inconclusive', 0)} | "
                   f"{c.get('suspect', 0)} | {failing} | "
                   f"{sum(1 for r in rs if 'error' in r)} | "
                   + (f"{max(worst):.3g} |" if worst else "- |"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,llama")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--table", action="store_true", help="only print the table of the JSON")
    a = p.parse_args(argv)
    if a.table:
        print(table(json.load(open(JSON))["rows"]))
        return
    t0, c0 = time.time(), time.process_time()
    rows = hunt(a.models.split(","), a.dtypes.split(","), a.seeds)
    meta = {"cases": len(rows), "wall_s": round(time.time() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1), "load": os.getloadavg()[0],
            "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "torch": torch.__version__}
    atomic.write_text(Path(JSON), json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(meta)
    print(table(rows))
    for r in rows:
        if "fail" in r or "error" in r:
            print(f"- {r['model']} {r['dtype']} {r['regime']} seed {r['seed']}: "
                  f"{r.get('fail') or r.get('error')}")


if __name__ == "__main__":
    main()
