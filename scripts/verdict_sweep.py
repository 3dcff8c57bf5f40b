"""The false-alarm and missed-bug sweep of symgrad's three-valued verdict (issue 16).

Writes reports/verdict_sweep.md and reports/verdict_sweep.json. Everything runs through the public
API (``sg.verify``, ``sg.compare_paths``, the CLI's model lookup), so the sweep measures what a
user gets. Run niced; ``--quick`` for a smoke run:

    nice -n 10 python scripts/verdict_sweep.py [--seeds 20] [--client-seeds 20] [--quick]

Sections:
* built-in models x seeds x 100 samples x float64/float32 (their native references as torch_fn):
  pass / inconclusive / fail per model and dtype; every fail listed with its cause.
* real clients, no layout map: nanoGPT, Hugging Face GPT2LMHeadModel and the book GPTModel (its
  GELU constant in float64) at a small and a medium config x seeds x 4 and 16 samples x float64 and
  float32, through ``compare_paths`` (eager, sdpa-math, sdpa-flash; torch.compile on the first
  seeds only: inductor compiles take ~half a minute each).
* the issue's edge cases (correct code that must not fail) and mutants (wrong code that must not
  pass): each one line, its verdict and what decided it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad import zoo  # noqa: E402

SMALL = {"vocab_size": 16, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
         "drop_rate": 0.0, "qkv_bias": False}
MEDIUM = {"vocab_size": 64, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
          "drop_rate": 0.0, "qkv_bias": False}


def verdict(result) -> str:
    """The run's three-valued verdict (older Results: ok / fail only)."""
    return getattr(result, "verdict", "pass" if result.ok else "fail")


def causes(result) -> list[str]:
    return sorted({f"{f.backend}: {f.kind} in {f.output} ({f.cause or 'no cause'})"
                   for f in result.failures})[:4]


def builtins(seeds: int, samples: int, dtypes) -> dict:
    rows = {}
    for name in zoo.names():
        for dtype in dtypes:
            counts, fails, t0 = Counter(), [], time.time()
            for seed in range(seeds):
                model = zoo.get(name)
                n = samples if name != "tiny_gpt" else min(samples, 14)
                try:
                    r = sg.verify(model, torch_fn=model.reference, samples=n, seed=seed,
                                  dtype=dtype)
                except sg.SymgradError as e:  # a refusal is reported, never counted as a pass
                    counts["error"] += 1
                    fails.append(f"seed {seed}: {e}")
                    continue
                v = verdict(r)
                counts[v] += 1
                if v != "pass":
                    fails.append(f"seed {seed}: {v}: " + "; ".join(causes(r) or [
                        f"{k} {c}" for k, c in r.total_counts().items()
                        if c and k in ("inconclusive", "suspect")]))
            rows[f"{name} {dtype}"] = {"model": name, "dtype": dtype, "seeds": seeds,
                                       "samples": n, **counts, "notes": fails[:6],
                                       "seconds": round(time.time() - t0, 1)}
            print(f"{name:18s} {dtype}: {dict(counts)} ({time.time() - t0:.0f} s)", flush=True)
    return rows


def _client(kind: str, cfg: dict, seed: int):
    torch.manual_seed(seed)
    if kind == "nanoGPT":
        from tests.gptmodels import nanogpt
        return nanogpt.from_book_config(cfg)
    if kind == "book":
        from tests.gptmodels import book
        return book.GPTModel(cfg)
    import transformers
    hc = transformers.GPT2Config(
        vocab_size=cfg["vocab_size"], n_positions=cfg["context_length"], n_embd=cfg["emb_dim"],
        n_layer=cfg["n_layers"], n_head=cfg["n_heads"], resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
    return transformers.GPT2LMHeadModel(hc)


CLIENT_CONFIG = {"nanoGPT": {"qkv_bias": True, "tie_weights": True, "gelu": "erf"},
                 "HF GPT-2": {"qkv_bias": True, "tie_weights": True},
                 "book": {}}


def clients(seeds: int, compile_seeds: int, sample_counts, dtypes, sizes) -> dict:
    rows = {}
    for kind, extra in CLIENT_CONFIG.items():
        if kind == "HF GPT-2":
            try:
                import transformers  # noqa: F401
            except ImportError:
                rows[kind] = {"skipped": "transformers is not installed"}
                continue
        for size, base in sizes.items():
            cfg = {**base, **extra}
            model = zoo.get("tiny_gpt", config=cfg)
            for dtype in dtypes:
                for n in sample_counts:
                    counts, notes, t0 = Counter(), [], time.time()
                    for seed in range(seeds):
                        module = _client(kind, cfg, seed)
                        module = module.double() if dtype == "float64" else module.float()
                        paths = ("eager", "sdpa-math", "sdpa-flash") + (
                            ("compile",) if seed < compile_seeds else ())
                        rep = sg.compare_paths(model, module, paths=paths, samples=n, seed=seed,
                                               dtype=dtype)
                        for row in rep.rows:
                            v = row["verdict"]
                            counts[f"{row['path']}: {v}"] += 1
                            if v not in ("pass", "ok", "OK", "skipped"):
                                notes.append(f"seed {seed} {row['path']}: {v}: "
                                             f"{row.get('note', '')}"[:300])
                    key = f"{kind} {size} {dtype} {n} samples"
                    rows[key] = {"client": kind, "size": size, "dtype": dtype, "samples": n,
                                 "seeds": seeds, "counts": dict(counts), "notes": notes[:6],
                                 "seconds": round(time.time() - t0, 1)}
                    print(f"{key}: {dict(counts)} ({time.time() - t0:.0f} s)", flush=True)
    return rows


PART = {"builtins": ("seeds", "samples", "torch", "seconds"),  # a run's keys per section
        "clients": ("client_seeds", "compile_seeds", "client_samples", "sizes", "torch",
                    "seconds")}


def write(out: Path, doc: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "verdict_sweep.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, out / "verdict_sweep.json")
    lines = ["# The three-valued verdict: false-alarm and missed-bug sweep "
             "(scripts/verdict_sweep.py)", ""] + ([
                 f"Run ({part}, apart): " + str({k: v for k, v in run.items() if k in PART[part]})
                 for part, run in doc["run"].items()] if "builtins" in doc["run"] else [
                 f"Run: {doc['run']}"]) + [
             "", "The defaults (`--seeds 20 --samples 100 --client-seeds 20 --compile-seeds 1 "
             "--sizes small,medium --client-samples 4,16`); a run line with less is a reduced "
             "sweep.", "",
             "## Built-in models (native reference as torch_fn)", "",
             "| model | dtype | seeds x samples | pass | inconclusive | fail | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in doc["builtins"].values():
        lines.append(f"| {r['model']} | {r['dtype']} | {r['seeds']} x {r['samples']} | "
                     f"{r.get('pass', 0)} | {r.get('inconclusive', 0)} | "
                     f"{r.get('fail', 0) + r.get('error', 0)} | "
                     + "<br>".join(n.replace("|", "/") for n in r["notes"][:3]) + " |")
    lines += ["", "## Real clients through compare_paths (no layout map)", "",
              "| client, size, dtype, samples | seeds | verdicts per path | notes |",
              "|---|---|---|---|"]
    for key, r in doc["clients"].items():
        if "skipped" in r:
            lines.append(f"| {key} | - | skipped: {r['skipped']} | |")
            continue
        shown = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
        lines.append(f"| {key} | {r['seeds']} | {shown} | "
                     + "<br>".join(n.replace("|", "/") for n in r["notes"][:3]) + " |")
    text = "\n".join(lines) + "\n"
    tmp = out / "verdict_sweep.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "verdict_sweep.md")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds per built-in model and dtype")
    ap.add_argument("--samples", type=int, default=100, help="samples per built-in model run")
    ap.add_argument("--client-seeds", type=int, default=20, help="seeds per real client")
    ap.add_argument("--compile-seeds", type=int, default=1, help="seeds that add torch.compile")
    ap.add_argument("--client-samples", default="4,16",
                    help="comma-separated samples per real-client run (default 4,16)")
    ap.add_argument("--sizes", default="small,medium",
                    help="comma-separated real-client configs of small, medium")
    ap.add_argument("--quick", action="store_true", help="2 seeds, small configs only")
    ap.add_argument("--only", choices=("builtins", "clients"), default=None)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--merge", nargs=2, metavar=("BUILTINS_JSON", "CLIENTS_JSON"),
                    help="write the page from two runs' JSON (--only builtins, --only "
                    "clients) run apart, without running anything")
    a = ap.parse_args()
    if a.merge:
        b, c = (json.loads(Path(f).read_text()) for f in a.merge)
        write(Path(a.out), {"run": {"builtins": b["run"], "clients": c["run"]},
                            "builtins": b["builtins"], "clients": c["clients"]})
        print(f"wrote {a.out}/verdict_sweep.md from {a.merge}")
        return 0
    if a.quick:
        a.seeds, a.client_seeds, a.samples = 2, 2, 20
    dtypes = ("float64", "float32")
    known = {"small": SMALL, "medium": MEDIUM}
    bad = sorted(set(a.sizes.split(",")) - set(known))
    if bad:
        ap.error(f"--sizes: unknown config(s) {bad}; choose from {sorted(known)}")
    sizes = {"small": SMALL} if a.quick else {k: known[k] for k in a.sizes.split(",")}
    sample_counts = tuple(int(n) for n in a.client_samples.split(","))
    t0 = time.time()
    doc = {"run": {"seeds": a.seeds, "samples": a.samples, "client_seeds": a.client_seeds,
                   "compile_seeds": a.compile_seeds, "client_samples": sample_counts,
                   "sizes": list(sizes), "torch": torch.__version__, "quick": a.quick},
           "builtins": {} if a.only == "clients" else builtins(a.seeds, a.samples, dtypes),
           "clients": {} if a.only == "builtins" else clients(
               a.client_seeds, a.compile_seeds, sample_counts, dtypes, sizes)}
    doc["run"]["seconds"] = round(time.time() - t0, 1)
    write(Path(a.out), doc)
    print(f"wrote {a.out}/verdict_sweep.md ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
