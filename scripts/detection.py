"""Detection rates and the false-alarm sweep of symgrad's verdict (issue 9, points 4-6).

Writes reports/detection.md and reports/detection.json. Run once, niced:

    nice -n 10 python scripts/detection.py [--quick]

* Block mutants (x-1, x0, x1.5 on one parameter block) on tiny_gpt as a tensor program
  (symgrad.zoo.gpt2.tiny_gpt, the default probabilistic entry bound, block and pooled tests): the
  oracle and the bound run once per dtype; every mutant is the native reference with a real
  scale_backward hook on that block's keyword tensor, run through the same compare_compact +
  block_tests as sg.verify (the correct reference's statuses are checked equal to sg.verify's).
* neuron: a real scale_backward hook of 1 + 1e-6 (float32) / 1 + 1e-12 (float64) on dL/dw; the rate
  is the fraction of samples whose d/dw entry fails.
* tiny_gpt attention backward x (1 + 1e-10): a real weights_hook run (sg.verify).
* False alarms: every built-in model (tiny_gpt as a tensor program), own programs and native
  reference, N seeds, float64 and float32; every failure is listed with its
  cause (a known torch finding is not a false alarm).

The scalar builder's rows (``blocks``, the scalar attention and sweep rows) went with the
scalar pipeline (issue 17); an older detection.json's scalar rows are still printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad.testing import scale_backward, scale_block_backward  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
TV = importlib.import_module("symgrad.tensor.verify")
from symgrad import zoo  # noqa: E402
from symgrad.backends.torch import run_torch_fn  # noqa: E402
from symgrad.compare import FAILING, SYSTEMATIC  # noqa: E402
from symgrad.tensor.bound import evaluate_bound  # noqa: E402
from symgrad.tensor.tables import oracle_ops  # noqa: E402
from symgrad.tensor.views import _flatten, oracle_view  # noqa: E402
from symgrad.zoo import gpt, gpt2, native_gpt  # noqa: E402  (gpt: the config only)

KNOWN = ("BCELoss clamp", "softplus threshold", "saturated logit", "kink")  # torch findings




def _cell(c, name: str, a: int, b: int) -> dict:
    """Caught or not on block ``name`` (columns a:b), by which test, failures elsewhere."""
    st = c.status[:, a:b]
    caught = bool(np.isin(st, FAILING).any())
    by = (["entry test"] if np.isin(st, [k for k in FAILING if k != SYSTEMATIC]).any()
          else []) + (["block test"] if any(f.block == name for f in c.systematic) else [])
    return {"caught": caught, "by": by,
            "elsewhere": int(np.isin(c.status, FAILING).sum() - np.isin(st, FAILING).sum())}


FACTORS = (-1.0, 0.0, 1.5)


on_block = scale_block_backward  # dL/d<block> scaled by factor: a wrong backward


class TensorRun:
    """tensor tiny_gpt at one dtype and seed: draw, oracle and entry bound once (as
    symgrad.tensor.verify does), then any torch_fn judged by the same compare_compact and
    block_tests as sg.verify."""

    def __init__(self, dtype: str, samples: int, seed: int = 0) -> None:
        self.model = m = gpt2.tiny_gpt()
        self.cfg = cfg = VerifyConfig(samples=samples, seed=seed, dtype=dtype)
        tol = cfg.tolerance
        self.values = m.draw(samples, np.random.default_rng(seed), dtype)
        self.hi, self.lo = oracle_view(m, self.values, oracle_ops(cfg.oracle_dps))
        self.E = _flatten(m, evaluate_bound(m.gradient.outputs, self.values,
                                            mode=tol.entry_bound, sigmas=tol.entry_sigmas,
                                            sqrt_terms=tol.entry_sqrt_terms),
                          np.asarray, samples)
        self.blocks, col = [], 1
        for b in m.param_blocks:
            self.blocks.append((b.name, col, col + b.size))
            col += b.size

    def judge(self, fn):
        got, _ = run_torch_fn(fn, self.model.blocks, self.values, device="cpu",
                              dtype=self.cfg.dtype)
        comp = TV.compare_compact(self.hi, self.lo, got, self.E, backend="torch_fn",
                                  dtype=self.cfg.dtype, tol=self.cfg.tolerance)
        return TV.block_tests(comp, self.hi, self.lo, self.E, self.blocks, self.cfg.tolerance)


def tensor_block_mutants(dtype: str, samples: int, seed: int = 0) -> dict:
    """tensor tiny_gpt, native reference: per block and factor, caught or not, and by which
    test (systematic: the block test; mismatch: the entry test)."""
    t0 = time.time()
    run = TensorRun(dtype, samples, seed)
    ref = run.model.reference
    base = run.judge(ref)
    full = sg.verify(run.model, torch_fn=ref, samples=samples, seed=seed, dtype=dtype)
    same = bool(np.array_equal(full.comparisons["torch_fn"].status, base.status))
    if not same:
        raise SystemExit(f"tensor tiny_gpt {dtype}: this script's verdict of the correct "
                         "reference differs from sg.verify's; fix the script before reading it")
    out = {"model": "tensor", "samples": samples, "seed": seed,
           "parameters": run.model.n_parameters,
           "correct_ok": bool(full.ok), "correct_failures": [f.message() for f in full.failures[:3]],
           "correct_counts": {b: {k: v for k, v in full.counts(b).items() if v}
                              for b in full.comparisons},
           "correct_max_projection_u": _max_projection(run.hi, base.got, run.lo, run.blocks,
                                                       dtype),
           "verdict_equals_sg_verify": same, "blocks": {}}
    for name, a, b in run.blocks:
        row = {f"x{f:g}": _cell(run.judge(on_block(ref, name, f)), name, a, b)
               for f in FACTORS}
        out["blocks"][name] = row
        print(f"  tensor {dtype} {name}: {row}", file=sys.stderr, flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def _counts(c) -> dict:
    from symgrad.compare import STATUS_NAMES
    return {STATUS_NAMES[k]: int((c.status == k).sum()) for k in STATUS_NAMES
            if (c.status == k).any()}


def _max_projection(expected, got, lo, blocks, dtype) -> float:
    """Largest |p| / u of correct code over blocks and samples (the block floor's margin)."""
    u = sg.compare.dtype_info(dtype).eps / 2
    worst = 0.0
    for _, a, b in blocks:
        g = expected[:, a:b]
        with np.errstate(all="ignore"):
            e = (got[:, a:b] - g) - np.asarray(lo[:, a:b], dtype=np.float64)
        ok = np.isfinite(e).all(1) & ((g * g).sum(1) > 0)
        if ok.any():
            with np.errstate(all="ignore"):
                p = (e[ok] * g[ok]).sum(1) / (g[ok] * g[ok]).sum(1)
            worst = max(worst, float(np.nanmax(np.abs(p))) / u)
    return worst


def neuron_rates() -> dict:
    m = zoo.get("neuron")
    out = {}
    for dtype, rel in (("float32", 1e-6), ("float32", 1e-5), ("float64", 1e-12)):
        def fn(w, b, x, y, _f=1 + rel):
            z = scale_backward(w, _f) * x + b
            return torch.nn.functional.binary_cross_entropy(torch.sigmoid(z), y)
        r = sg.verify(m, torch_fn=fn, samples=500, seed=0, dtype=dtype, backends=("torch_fn",))
        st = r.comparisons["torch_fn"].status
        col = 1 + list(m.entries).index(next(e for e in m.entries if str(e) == "w"))
        out[f"{dtype} {rel:g}"] = float(np.isin(st[:, col], FAILING).mean())
    return out


def attention_mutant(kind: str, dtype: str, samples: int) -> dict:
    """The native reference with every attention-weights backward x (1 + 1e-10), tiny_gpt as
    a tensor program (``kind`` "tensor", the row's name); caught when the torch_fn fails."""
    m = gpt2.tiny_gpt()
    cfg = gpt.GPTConfig.from_dict({})
    mutant = native_gpt.reference(cfg, weights_hook=lambda t: scale_backward(t, 1 + 1e-10))
    r = sg.verify(m, torch_fn=mutant, samples=samples, seed=0, dtype=dtype,
                  backends=("torch_fn",))
    mine = [f for f in r.failures if f.backend == "torch_fn"]
    return {"caught": bool(mine), "kinds": sorted({f.kind for f in mine}),
            "failures": [f.message() for f in mine[:3]]}


def sweep(seeds: int, samples: int, tensor_seeds: int, only: list[str] | None = None):
    """Yields (model dtype, its runs) as each finishes: tensor tiny_gpt, then the small models;
    ``only``: these model names."""
    models = [("tiny_gpt (tensor)", gpt2.tiny_gpt, tensor_seeds, 4)]
    models += [(n, functools.partial(zoo.get, n), seeds, samples)
               for n in zoo.names() if n != "tiny_gpt"]
    for name, build, n_seeds, n in models:
        if n_seeds == 0 or (only and name not in only):
            continue
        m = build()
        for dtype in ("float64", "float32"):
            rows = []
            t0 = time.time()
            for seed in range(n_seeds):
                r = sg.verify(m, torch_fn=m.reference, samples=n, seed=seed, dtype=dtype)
                counts = {b: r.counts(b) for b in r.comparisons}
                fails = [{"backend": f.backend, "output": f.output, "kind": f.kind,
                          "cause": f.cause} for f in r.failures]
                false = [f for f in fails if not any(k in f["cause"] for k in KNOWN)]
                rows.append({"seed": seed, "ok": r.ok, "false_alarms": len(false),
                             "failures": fails,
                             "inconclusive": sum(c.get("inconclusive", 0)
                                                 for c in counts.values()),
                             "entries": int(sum(c.status.size
                                                for c in r.comparisons.values()))})
            yield f"{name} {dtype}", {"seeds": n_seeds, "samples": n, "runs": rows,
                                      "seconds": round(time.time() - t0, 1)}
            print(name, dtype, sum(r["false_alarms"] for r in rows), "false alarms",
                  file=sys.stderr, flush=True)


def _caught(cell) -> bool:
    return cell["caught"] if isinstance(cell, dict) else bool(cell)


def _block_table(title: str, d: dict, floor_note: str) -> list[str]:
    n = len(d["blocks"])
    lines = [title, "", floor_note, "",
             "| factor | blocks caught | flagged by the entry test | by the block test | "
             "failing entries outside the block |", "|---|---|---|---|---|"]
    for f in (f"x{x:g}" for x in FACTORS):
        cells = [r[f] for r in d["blocks"].values()]
        by = sum(1 for c in cells if isinstance(c, dict) and "block test" in c["by"])
        entry = sum(1 for c in cells if isinstance(c, dict) and "entry test" in c["by"])
        tensor = isinstance(cells[0], dict)
        outside = sum(c["elsewhere"] for c in cells) if tensor else "-"
        lines.append(f"| {f} | {sum(_caught(c) for c in cells)}/{n} | "
                     f"{entry if tensor else '-'} | {by if tensor else '-'} | {outside} |")
    missed = [f"{b} {f}" for b, r in d["blocks"].items() for f, v in r.items() if not _caught(v)]
    return lines + ["", f"missed: {', '.join(missed) or 'none'}", ""]


def targets(results: dict) -> list[str]:
    """Issue 9's four targets, each with what this run measured."""
    rows = []
    tb = results.get("tensor_blocks", {}).get("float32")
    if tb:
        cells = [c for r in tb["blocks"].values() for c in r.values()]
        rows.append(("float32 tiny_gpt (tensor): x-1, x0, x1.5 on any single parameter block "
                     "caught", f"{sum(map(_caught, cells))}/{len(cells)} mutants",
                     all(map(_caught, cells))))
    nr = results.get("neuron", {}).get("float32 1e-06")
    if nr is not None:
        rows.append(("float32 neuron: 1e-6 relative error caught on >= 90% of samples",
                     f"{nr:.1%}", nr >= 0.9))
    at = results.get("attention", {}).get("tensor float64")
    if at:
        rows.append(("float64 default tiny_gpt (tensor): 1e-10 attention-backward mutant caught",
                     "caught" if at["caught"] else "missed", at["caught"]))
    sw = results.get("sweep")
    if sw:
        fa = sum(r["false_alarms"] for d in sw.values() for r in d["runs"])
        runs = sum(len(d["runs"]) for d in sw.values())
        short = [k for k, d in sw.items() if d["seeds"] < 20]
        rows.append(("zero false alarms: every built-in model x 20 seeds x float64, float32",
                     f"{fa} false alarms in {runs} runs"
                     + (f" (fewer than 20 seeds: {', '.join(short)})" if short else ""),
                     fa == 0 and not short))
    if not rows:
        return []
    return (["## Issue 9 targets (measured by this run)", "", "| target | measured | met |",
             "|---|---|---|"] + [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in rows]
            + [""])


def write(results: dict, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "detection.json").write_text(json.dumps(results, indent=1, default=str))
    tol = sg.Tolerance()
    lines = ["# Detection rates and false alarms (scripts/detection.py)", "",
             f"Run: {results.get('run', {})}.", "", f"Verdict (symgrad.compare.Tolerance()): "
             f"{tol.rule()}.", ""]
    lines += targets(results)
    if "neuron" in results:
        lines += ["## neuron: scale_backward(1 + rel) on dL/dw, native-style torch_fn, 500 samples",
                  "", "| dtype, rel. error | samples caught |", "|---|---|"]
        lines += [f"| {k} | {v:.1%} |" for k, v in results["neuron"].items()] + [""]
    for dtype, d in results.get("tensor_blocks", {}).items():
        counts = d["correct_counts"]
        lines += _block_table(
            f"## tiny_gpt as a tensor program, {dtype}: a factor on one parameter block "
            f"(native reference, real scale_backward hooks, {d['samples']} samples, "
            f"{d['parameters']} parameters)",
            d, f"correct reference (sg.verify, all backends): ok={d['correct_ok']}, counts "
               f"{counts}; largest |projection| of its error {d['correct_max_projection_u']:.3g} u "
               f"(block floor {tol.block_floor:g} u); {d['seconds']} s")
    for key in ("tiny_gpt float32", "tiny_gpt float64"):
        if key in results.get("blocks", {}):
            d = results["blocks"][key]
            lines += _block_table(
                f"## {key} (scalar builder): a factor on one parameter block (native reference, "
                f"real scale_backward hooks, {d.get('samples', '?')} samples)", d,
                f"correct reference: ok={d['correct_ok']}, counts {d['correct_counts']}, "
                f"largest |projection| of its error {d['correct_max_projection_u']:.3g} u "
                f"(block floor {tol.block_floor:g} u)")
    if results.get("attention"):
        lines += ["## tiny_gpt: attention-weights backward x (1 + 1e-10), native reference", "",
                  "| model, dtype | verdict | by |", "|---|---|---|"]
        for key, d in results["attention"].items():
            lines.append(f"| {key} | {'caught' if d['caught'] else 'MISSED'} | "
                         f"{', '.join(d.get('kinds', [])) or '-'} |")
        u32 = sg.compare.dtype_info("float32").eps / 2
        lines += ["", f"In float32, 1e-10 is {1e-10 / u32:.1g} u: below one rounding of the "
                  "dtype (issue 9 asks it of float64 only).", ""]
    if "sweep" in results:
        lines += ["## False-alarm sweep: own programs and native reference", "",
                  "A failure is a false alarm unless its cause is a documented torch finding; "
                  "those on symgrad's own numpy/torch programs are counted apart (own-program "
                  "stability is issue 9 point 3, not the verdict).", "",
                  "| model dtype | seeds x samples | runs ok | false alarms (own programs) | "
                  "known torch findings | inconclusive entries | seconds |",
                  "|---|---|---|---|---|---|---|"]
        for k, d in results["sweep"].items():
            runs = d["runs"]
            known = sum(len(r["failures"]) - r["false_alarms"] for r in runs)
            inc = sum(r["inconclusive"] for r in runs)
            total = sum(r["entries"] for r in runs)
            own = sum(1 for r in runs for f in r["failures"]
                      if f["backend"] != "torch_fn" and not any(k in f["cause"] for k in KNOWN))
            lines.append(f"| {k} | {d['seeds']} x {d['samples']} | "
                         f"{sum(r['ok'] for r in runs)}/{len(runs)} | "
                         f"{sum(r['false_alarms'] for r in runs)} ({own}) | {known} | "
                         f"{inc} ({inc / max(total, 1):.1%}) | {d['seconds']} |")
    (folder / "detection.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few seeds (a smoke run)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tensor-seeds", type=int, default=20, help="seeds of the tensor tiny_gpt")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--gpt-samples", type=int, default=4, help="samples per tiny_gpt run")
    ap.add_argument("--only", default="neuron,tensor_blocks,attention,sweep",
                    help="parts to run; 'none' rewrites detection.md from detection.json")
    ap.add_argument("--sweep-only", default="",
                    help="comma-separated model names: re-run only these in the sweep")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.tensor_seeds, args.samples = 2, 2, 40
    parts = args.only.split(",")
    results: dict = {}
    path = Path(args.out) / "detection.json"
    if path.exists():
        results = json.loads(path.read_text())
    if "none" not in parts:
        results["run"] = {"quick": args.quick, "seeds": args.seeds,
                          "tensor_seeds": args.tensor_seeds, "samples": args.samples,
                          "gpt_samples": args.gpt_samples, "torch": torch.__version__}
    out = Path(args.out)
    write(results, out)
    if "neuron" in parts:
        results["neuron"] = neuron_rates()
        write(results, out)
    if "tensor_blocks" in parts:
        results.setdefault("tensor_blocks", {})
        for d in ("float32", "float64"):
            results["tensor_blocks"][d] = tensor_block_mutants(d, args.gpt_samples)
            write(results, out)
    if "attention" in parts:
        results.setdefault("attention", {})
        for d in ("float64", "float32"):
            results["attention"][f"tensor {d}"] = attention_mutant("tensor", d, args.gpt_samples)
            write(results, out)
    if "sweep" in parts:
        only = args.sweep_only.split(",") if args.sweep_only else None
        results["sweep"] = results.get("sweep", {}) if only else {}
        for key, entry in sweep(args.seeds, args.samples, args.tensor_seeds, only):
            results["sweep"][key] = entry
            write(results, out)


if __name__ == "__main__":
    main()
