"""How tight is the tensor rounding-error bound? Writes reports/bound_tightness.md and .json.

For each GPT size and dtype: the oracle (double-double) once, the backends under test (symgrad's
torch view of the tensor program, and the native torch.nn module as ``torch_fn``), then every
bound mode of ``symgrad.tensor.bound`` (``Tolerance.entry_bound``): the fraction of gradient
entries that come out inconclusive, error / allowance (median, p99, max) on correct code, false
alarms (must be 0), and detection of planted wrong gradients:

- ``x1.5 block``: dL/d(block) x 1.5 on one parameter block (the entry test alone, and with the
  block/pooled tests of ``symgrad.compare.systematic``);
- ``attention 1e-10``: the native module's attention weights' backward x (1 + 1e-10).

    python scripts/bound_tightness.py               # tiny_gpt, depth series, 4L_w64_t32
    python scripts/bound_tightness.py --quick       # tiny_gpt only
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
W64 = {"vocab_size": 1024, "context_length": 32, "emb_dim": 64, "n_heads": 4, "drop_rate": 0.1}
SIZES = {
    # name: (config, tokens, samples)
    "tiny_gpt": ({}, None, 8),
    "w64_L1_t32": (dict(W64, n_layers=1), 32, 4),
    "w64_L2_t32": (dict(W64, n_layers=2), 32, 4),
    "4L_w64_t32": (dict(W64, n_layers=4), 32, 4),
}
# label: (Tolerance.entry_bound, exact zeros tracked)
MODES = {"worst, before": ("worst", False), "worst": ("worst", True),
         "probabilistic": ("probabilistic", True)}


def _run(name: str, dtype: str, seed: int) -> list[dict]:
    import torch

    from symgrad.backends.torch import run_torch_fn
    from symgrad.compare import FAILING, INCONCLUSIVE, MISMATCH, Tolerance, compare, systematic
    from symgrad.tensor.bound import evaluate_bound
    from symgrad.tensor.tables import oracle_ops
    from symgrad.tensor.views import _flatten, oracle_view, torch_view
    from symgrad.testing import scale_backward
    from symgrad.zoo import native_gpt
    from symgrad.zoo.gpt import GPTConfig
    from symgrad.zoo.gpt2 import gpt

    config, tokens, samples = SIZES[name]
    model = gpt(config, tokens=tokens, dropout=True, name=name)
    values = model.draw(samples, np.random.default_rng(seed), dtype)
    hi, lo = oracle_view(model, values, oracle_ops())
    blocks, col = [], 1
    for b in model.param_blocks:
        blocks.append((b.name, col, col + b.size))
        col += b.size
    cfg = GPTConfig.from_dict(config)
    got = {"torch": torch_view(model, values, dtype=dtype, device="cpu"),
           "torch_fn": run_torch_fn(model.reference, model.blocks, values, device="cpu",
                                    dtype=dtype)[0]}
    hook = native_gpt.reference(cfg, weights_hook=lambda t: scale_backward(t, 1 + 1e-10))
    mutants = {"attention 1e-10": (run_torch_fn(hook, model.blocks, values, device="cpu",
                                                dtype=dtype)[0], None)}
    for blk in ("h0_Wq", "h0_ln1_g", "out_head"):
        name_, a, b = next(x for x in blocks if x[0] == blk)
        m = got["torch_fn"].copy()
        m[:, a:b] *= 1.5  # exactly what a x1.5 backward on the block returns
        mutants[f"x1.5 {blk}"] = (m, (a, b))
    rows = []
    for mode, (entry_bound, zeros) in MODES.items():
        tol = Tolerance(entry_bound=entry_bound)
        t0 = time.perf_counter()
        E = _flatten(model, evaluate_bound(model.gradient.outputs, values, mode=entry_bound,
                                           sigmas=tol.entry_sigmas,
                                           sqrt_terms=tol.entry_sqrt_terms, exact_zeros=zeros),
                     np.asarray, samples)
        bound_s = time.perf_counter() - t0
        row = {"size": name, "dtype": dtype, "seed": seed, "mode": mode,
               "parameters": model.n_parameters, "samples": samples, "bound_s": bound_s}
        for backend, g in got.items():
            c = compare(hi, lo, g, E, backend=backend, dtype=dtype, tol=tol)
            grad = slice(1, None)
            st = c.status[:, grad]
            with np.errstate(all="ignore"):
                ratio = (c.error / c.allowed_abs)[:, grad]
            ratio = ratio[np.isfinite(ratio)]
            s = systematic(c, blocks, tol)
            row[backend] = {
                "inconclusive": float((st == INCONCLUSIVE).mean()),
                "ratio_median": float(np.median(ratio)),
                "ratio_p99": float(np.quantile(ratio, 0.99)),
                "ratio_max": float(ratio.max()),
                "false_alarms": int(np.isin(s.status, FAILING).sum()),
                "mismatch": int((c.status == MISMATCH).sum())}
        for mname, (m, cols) in mutants.items():
            c = compare(hi, lo, m, E, backend="mutant", dtype=dtype, tol=tol)
            s = systematic(c, blocks, tol)
            a, b = cols if cols else (1, hi.shape[1])
            row[mname] = {"entry": bool(np.isin(c.status[:, a:b], FAILING).any()),
                          "with_block_tests": bool(np.isin(s.status[:, a:b], FAILING).any())}
        rows.append(row)
    del torch
    return rows


def _fmt(x: float) -> str:
    return f"{x:.2g}"


def render(rows: list[dict]) -> str:
    out = ["## Tightness of the tensor rounding-error bound",
           "",
           "Generated by `scripts/bound_tightness.py` (numbers measured by the script). Per GPT "
           "size, dtype and bound mode (`Tolerance.entry_bound`): the share of gradient entries "
           "that are *inconclusive* (allowance >= |exact|), error / allowance on correct code "
           "(median, p99, max over entries: must stay <= 1), false alarms of correct code "
           "(entry + block + pooled tests), and whether planted bugs are caught by the entry test "
           "alone / with the block and pooled tests. `torch`: symgrad's torch view of the tensor "
           "program; `native`: the torch.nn module as `torch_fn`.",
           "",
           "| size | dtype | seed | bound | inconclusive torch / native | error/allowance native "
           "(median, p99, max) | false alarms | attention x(1+1e-10) | x1.5 h0_Wq | "
           "x1.5 h0_ln1_g | x1.5 out_head |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, n = r["torch"], r["torch_fn"]

        def det(k):
            d = r[k]
            return f"{'yes' if d['entry'] else 'no'} / {'yes' if d['with_block_tests'] else 'no'}"
        out.append(f"| {r['size']} | {r['dtype']} | {r['seed']} | {r['mode']} | "
                   f"{t['inconclusive']:.1%} / {n['inconclusive']:.1%} | "
                   f"{_fmt(n['ratio_median'])}, {_fmt(n['ratio_p99'])}, {_fmt(n['ratio_max'])} | "
                   f"{t['false_alarms'] + n['false_alarms']} | {det('attention 1e-10')} | "
                   f"{det('x1.5 h0_Wq')} | {det('x1.5 h0_ln1_g')} | {det('x1.5 out_head')} |")
    out.append("")
    out.append("Detection cells: caught by the entry test / by entry + block + pooled tests.")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="*", default=list(SIZES))
    ap.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--quick", action="store_true", help="tiny_gpt only")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bound_tightness"))
    args = ap.parse_args()
    sizes = ["tiny_gpt"] if args.quick else args.sizes
    rows = []
    for size in sizes:
        for dtype in args.dtypes:
            for seed in args.seeds:
                t0 = time.perf_counter()
                rows += _run(size, dtype, seed)
                print(f"{size} {dtype} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
                print(render(rows[-len(MODES):]), flush=True)
    Path(args.out + ".json").write_text(json.dumps(
        {"machine": platform.platform(), "rows": rows}, indent=1))
    Path(args.out + ".md").write_text(render(rows))


if __name__ == "__main__":
    main()
