"""How tight is the tensor rounding-error bound? Writes reports/bound_tightness.md and .json.

For each GPT size and dtype: the oracle (double-double) once, the backends under test (symgrad's
torch view of the tensor program, and the native torch.nn module as ``torch_fn``), then every
bound mode of ``symgrad.tensor.bound`` (``Tolerance.entry_bound``): the fraction of gradient
entries that come out inconclusive, error / allowance (median, p99, max) on correct code, false
alarms (must be 0), and detection of planted wrong gradients:

- ``x1.5 block``: dL/d(block) x 1.5 on one parameter block (the entry test alone, and with the
  block/pooled tests of ``symgrad.compare.systematic``);
- ``attention 1e-10``: the native module's attention weights' backward x (1 + 1e-10).

    python scripts/bound_tightness.py --seeds 0 1                    # tiny_gpt, width-64 1-4 layers
    python scripts/bound_tightness.py --sizes w768_L1_t8 w768_L2_t8 --merge  # GPT-2 width
    python scripts/bound_tightness.py --sizes gpt2_8 --dtypes float32 --merge  # 163M, 14 GB
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
W768 = {"vocab_size": 1024, "context_length": 8, "emb_dim": 768, "n_heads": 12, "drop_rate": 0.1}
SIZES = {
    # name: (config, tokens, samples)
    "tiny_gpt": ({}, None, 8),
    "w64_L1_t32": (dict(W64, n_layers=1), 32, 4),
    "w64_L2_t32": (dict(W64, n_layers=2), 32, 4),
    "4L_w64_t32": (dict(W64, n_layers=4), 32, 4),
    # GPT-2's width (768, 12 heads) at 1 and 2 layers, vocabulary 1024, 8 tokens
    "w768_L1_t8": (dict(W768, n_layers=1), 8, 1),
    "w768_L2_t8": (dict(W768, n_layers=2), 8, 1),
    "gpt2_8": ("gpt2", 8, 1),  # GPT_CONFIG_124M, 163M parameters: 14 GB peak, 14 minutes
}

# label: (Tolerance.entry_bound, exact zeros tracked)
MODES = {"worst, before": ("worst", False), "worst": ("worst", True),
         "probabilistic": ("probabilistic", True)}


BIG = 5_000_000  # parameters: from here compare in column chunks, no block tests, no "before"
CHUNK = 1 << 22  # entries compared at once


def _chunks(a: int, b: int):
    for c in range(a, b, CHUNK):
        yield slice(c, min(c + CHUNK, b))


def _judge(hi, lo, g, E, dtype, tol, a, b):
    """Entry-test statistics of columns a:b, compared in chunks (GPT-2: 163M columns)."""
    from symgrad.compare import FAILING, INCONCLUSIVE, MISMATCH, compare
    inc = fail = mism = 0
    ratios = []
    for part in _chunks(a, b):
        c = compare(hi[:, part], lo[:, part], g[:, part], E[:, part], backend="b", dtype=dtype,
                    tol=tol)
        inc += int((c.status == INCONCLUSIVE).sum())
        fail += int(np.isin(c.status, FAILING).sum())
        mism += int((c.status == MISMATCH).sum())
        with np.errstate(all="ignore"):  # log10 in float32: GPT-2's worst case goes below
            r = np.log10(c.error / c.allowed_abs).astype(np.float32)  # float32's 1e-45
        ratios.append(r[~np.isnan(r) & (r < np.inf)])
        del c
    return inc, fail, mism, np.concatenate(ratios)


def _run(name: str, dtype: str, seed: int) -> list[dict]:
    from symgrad.backends.torch import run_torch_fn
    from symgrad.compare import FAILING, Tolerance, compare, systematic
    from symgrad.tensor.bound import evaluate_bound
    from symgrad.tensor.tables import oracle_ops
    from symgrad.tensor.views import _flatten, oracle_view, torch_view
    from symgrad.testing import scale_backward
    from symgrad.zoo import native_gpt
    from symgrad.zoo.gpt import GPT_CONFIG_124M, GPTConfig
    from symgrad.zoo.gpt2 import gpt, gpt2

    config, tokens, samples = SIZES[name]
    if config == "gpt2":
        model, cfg = gpt2(tokens=tokens), GPTConfig.from_dict(GPT_CONFIG_124M)
    else:
        model = gpt(config, tokens=tokens, dropout=True, name=name)
        cfg = GPTConfig.from_dict(config)
    big = model.n_parameters > BIG
    values = model.draw(samples, np.random.default_rng(seed), dtype)
    t0 = time.perf_counter()
    hi, lo = oracle_view(model, values, oracle_ops())
    oracle_s = time.perf_counter() - t0
    blocks, col = [], 1
    for b in model.param_blocks:
        blocks.append((b.name, col, col + b.size))
        col += b.size
    width = hi.shape[1]
    got = {"torch": torch_view(model, values, dtype=dtype, device="cpu"),
           "torch_fn": run_torch_fn(model.reference, model.blocks, values, device="cpu",
                                    dtype=dtype)[0]}
    hook = native_gpt.reference(cfg, weights_hook=lambda t: scale_backward(t, 1 + 1e-10))
    attention = run_torch_fn(hook, model.blocks, values, device="cpu", dtype=dtype)[0]
    del hook
    rows = []
    for mode, (entry_bound, zeros) in MODES.items():
        if big and not zeros:
            continue
        tol = Tolerance(entry_bound=entry_bound)
        t0 = time.perf_counter()
        E = _flatten(model, evaluate_bound(model.gradient.outputs, values, mode=entry_bound,
                                           sigmas=tol.entry_sigmas,
                                           sqrt_terms=tol.entry_sqrt_terms, exact_zeros=zeros),
                     np.asarray, samples)
        bound_s = time.perf_counter() - t0
        row = {"size": name, "dtype": dtype, "seed": seed, "mode": mode,
               "parameters": model.n_parameters, "samples": samples, "bound_s": bound_s,
               "oracle_s": oracle_s}
        for backend, g in got.items():
            inc, fail, mism, ratio = _judge(hi, lo, g, E, dtype, tol, 1, width)
            if not big:  # + the block and pooled tests
                s = systematic(compare(hi, lo, g, E, backend=backend, dtype=dtype, tol=tol),
                               blocks, tol)
                fail = int(np.isin(s.status, FAILING).sum())
            row[backend] = {
                "inconclusive": inc / ((width - 1) * samples),
                "ratio_median": float(10 ** np.median(ratio.astype(np.float64))),
                "ratio_p99": float(10 ** np.quantile(ratio.astype(np.float64), 0.99,
                                                     method="lower")),
                "ratio_max": float(10 ** ratio.max().astype(np.float64)),
                "false_alarms": fail, "mismatch": mism}
            del ratio
        mutants = [("attention 1e-10", attention, 1, width)]
        for blk in ("h0_Wq", "h0_ln1_g", "out_head"):
            _, a, b = next(x for x in blocks if x[0] == blk)
            # exactly what a x1.5 backward on the block returns
            mutants.append((f"x1.5 {blk}", _with(got["torch_fn"], a, b, 1.5, big), a, b))
        for mname, m, a, b in mutants:
            if big:
                row[mname] = {"entry": _judge(hi, lo, m, E, dtype, tol, a, b)[1] > 0,
                              "with_block_tests": None}
                continue
            c = compare(hi, lo, m, E, backend="mutant", dtype=dtype, tol=tol)
            s = systematic(c, blocks, tol)
            row[mname] = {"entry": bool(np.isin(c.status[:, a:b], FAILING).any()),
                          "with_block_tests": bool(np.isin(s.status[:, a:b], FAILING).any())}
        rows.append(row)
        del E
    return rows


def _with(g, a, b, factor, big):
    """``g`` with columns a:b times ``factor``; for big models a lazy view (no 1.3 GB copy)."""
    if not big:
        out = g.copy()
        out[:, a:b] *= factor
        return out

    class Scaled:
        def __getitem__(self, key):
            rows, part = key
            out = g[rows, part].copy()
            lo_, hi_ = max(part.start, a), min(part.stop, b)
            if lo_ < hi_:
                out[:, lo_ - part.start:hi_ - part.start] *= factor
            return out
    return Scaled()


def _fmt(x: float) -> str:
    return f"{x:.2g}" if x > 0 else "< 1e-45"  # rows of the first runs kept ratios in float32


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
           "(median, p99) | max torch / native | false alarms | attention x(1+1e-10) | x1.5 h0_Wq | "
           "x1.5 h0_ln1_g | x1.5 out_head |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, n = r["torch"], r["torch_fn"]

        def det(k):
            d = r[k]
            yn = {True: "yes", False: "no", None: "n/a"}
            return f"{yn[d['entry']]} / {yn[d['with_block_tests']]}"
        out.append(f"| {r['size']} | {r['dtype']} | {r['seed']} | {r['mode']} | "
                   f"{t['inconclusive']:.1%} / {n['inconclusive']:.1%} | "
                   f"{_fmt(n['ratio_median'])}, {_fmt(n['ratio_p99'])} | "
                   f"{_fmt(t['ratio_max'])} / {_fmt(n['ratio_max'])} | "
                   f"{t['false_alarms'] + n['false_alarms']} | {det('attention 1e-10')} | "
                   f"{det('x1.5 h0_Wq')} | {det('x1.5 h0_ln1_g')} | {det('x1.5 out_head')} |")
    out += ["", *_summary(rows), ""]
    out.append("Detection cells: caught by the entry test / by entry + block + pooled tests "
               "(n/a: not run above 5M parameters, w768 and gpt2, where this script compares in "
               "column chunks; `sg.verify` runs the block and pooled tests on tensor programs too, "
               "block by block). False alarms: failing entries of both correct backends.")
    return "\n".join(out) + "\n"


def _summary(rows: list[dict]) -> list[str]:
    """Findings computed from the rows (and one summation measured here)."""
    out = []
    prob = [r for r in rows if r["mode"] == "probabilistic"]
    if prob:
        worst = max(prob, key=lambda r: max(r[b]["ratio_max"] for b in ("torch", "torch_fn")))
        top = max(worst[b]["ratio_max"] for b in ("torch", "torch_fn"))
        out.append(f"- Correct code under the probabilistic bound: largest error / allowance "
                   f"{top:.2g} ({worst['size']}, {worst['dtype']}, seed {worst['seed']}); "
                   f"false alarms in all rows (every mode): "
                   f"{sum(r[b]['false_alarms'] for r in rows for b in ('torch', 'torch_fn'))}.")
    for dtype in ("float64", "float32"):
        series = []
        for size in SIZES:
            for mode in ("worst", "probabilistic"):
                sel = [r["torch_fn"]["ratio_median"] for r in rows
                       if r["size"] == size and r["dtype"] == dtype and r["mode"] == mode]
                if sel:
                    series.append(f"{size} {mode} {_fmt(float(np.median(sel)))}")
        if series:
            out.append(f"- Median error / allowance, native module, {dtype} (smaller: looser "
                       f"bound): " + "; ".join(series) + ".")
    out.append("- " + _stagnation())
    return out


def _stagnation() -> str:
    """One-by-one float32 summation of 2^20 copies of 0.1 against the probabilistic bound of a
    sum, with and without the sqrt(n) cap (Tolerance.entry_sqrt_terms)."""
    import symgrad.tensor as st
    from symgrad.compare import Tolerance, allowance
    from symgrad.tensor.bound import evaluate_bound
    n = 1 << 20
    x = np.full(n, 0.1, dtype=np.float32)
    err = abs(float(np.add.accumulate(x)[-1]) - float(np.sum(x.astype(np.float64))))
    a = st.param("a", (n,))
    tol = Tolerance()
    r = {}
    for n0 in (tol.entry_sqrt_terms, n):
        E = evaluate_bound([st.sum_(a)], {"a": x[None].astype(np.float64)},
                           mode="probabilistic", sqrt_terms=n0)[0]
        r[n0] = err / allowance(E, "float32", tol)[0]
    return (f"Recursive float32 summation of 2^20 x 0.1 (every rounding alike): error / "
            f"allowance {r[tol.entry_sqrt_terms]:.2g} with sqrt growth up to "
            f"{tol.entry_sqrt_terms} terms, {r[n]:.2g} with plain sqrt(n).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="*", default=[k for k in SIZES if not k.startswith(("gpt2",
                                                                                      "w768"))])
    ap.add_argument("--merge", action="store_true", help="add to the existing results")
    ap.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--quick", action="store_true", help="tiny_gpt only")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bound_tightness"))
    args = ap.parse_args()
    if args.render:
        rows = json.loads(Path(args.out + ".json").read_text())["rows"]
        Path(args.out + ".md").write_text(render(rows))
        return
    sizes = ["tiny_gpt"] if args.quick else args.sizes
    rows = []
    if args.merge and Path(args.out + ".json").exists():
        rows = [r for r in json.loads(Path(args.out + ".json").read_text())["rows"]
                if r["size"] not in sizes]
    for size in sizes:
        for dtype in args.dtypes:
            for seed in args.seeds:
                t0 = time.perf_counter()
                rows += _run(size, dtype, seed)
                print(f"{size} {dtype} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
                print(render(rows[-len(MODES):]), flush=True)
    order = {k: i for i, k in enumerate(SIZES)}
    rows.sort(key=lambda r: (order.get(r["size"], 99), r["dtype"] != "float64", r["seed"],
                             list(MODES).index(r["mode"])))
    Path(args.out + ".json").write_text(json.dumps(
        {"machine": platform.platform(), "rows": rows}, indent=1))
    Path(args.out + ".md").write_text(render(rows))


if __name__ == "__main__":
    main()
