"""GPT-2 at long context (issue 19, item 3): ``symgrad verify gpt2`` at a reduced depth, full
width (768) and full vocabulary (50,257), 1 sample, float64 (``--dtype float32``: the backends
in float32, the oracle exact as ever), at growing token counts; per run
the CPU time (user + sys), wall, max RSS (``/usr/bin/time -v``), the load average, the resident
set per phase of ``sg.verify``, torch's own forward + backward of the same model (the native
``nn.Module``, float64) in the same process, the ratio, the verdict and the inconclusive share;
and the extrapolation to 12 layers from the per-layer figures measured at 1 and 2 layers.
``--model gpt2_medium`` runs GPT-2 medium (width 1024, 16 heads) the same way, in its own table.

Each configuration runs in a child process (``--one``) under ``/usr/bin/time -v``, holding
``/tmp/gpt2.lock`` (one full-width GPT-2 run on the machine at a time) and an address-space cap
(``--cap-gib``, default 9), so a run that outgrows it stops with a MemoryError rather than
taking the machine's memory. The cap counts address space, not memory: the spilled whole-model
arrays (``symgrad.tensor.spill``, 16 B an entry) are mapped files inside it.

    python scripts/benchmark_context.py --tokens 128,256,512,1024 --layers 1
    python scripts/benchmark_context.py --tokens 1024 --layers 2 --append
    python scripts/benchmark_context.py --render      # reports/benchmark_context.md from .json
    python scripts/benchmark_context.py --one --layers 1 --tokens 64 --result out.json
    python scripts/benchmark_context.py --model gpt2_medium --layers 24 --tokens 64 --append
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmark_memory import Sampler, cpu_model, recording_phases  # one place each

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
LOCK = "/tmp/gpt2.lock"
REPORT = ROOT / "reports" / "benchmark_context.md"
DATA = ROOT / "reports" / "benchmark_context.json"
TARGET_S, TARGET_GIB = 15 * 60, 16 * 1e9 / GIB  # issue 19: <= 15 min, <= 16 GB at 1024 tokens


def blas() -> str:
    import torch
    cfg = torch.__config__.show()
    found = re.search(r"BLAS_INFO=(\w+)", cfg)
    return f"torch {torch.__version__} BLAS {found.group(1) if found else '?'}"


def one(layers: int, tokens: int, result_path: str | None, vocab: int | None = None,
        model_name: str = "gpt2", dtype: str = "float64", threads: int | None = None) -> dict:
    """Verify ``model_name`` (a zoo GPT: gpt2, gpt2_medium) at ``layers`` layers and ``tokens``
    tokens in this process (1 sample, ``dtype`` (the backends'; default float64), seed 0, the native module as torch_fn: as
    ``symgrad verify gpt2 --config '{"n_layers": L}' --tokens T --samples 1``); then torch's
    own forward + backward of the native module on the same sample. Phases print to stderr as
    they end. ``threads``: ``VerifyConfig.threads`` (None: its default, the machine's cores)."""
    import symgrad as sg
    from symgrad import heap
    from symgrad.config import VerifyConfig
    from symgrad.zoo import TENSOR_BUILDERS

    heap.keep_freed()  # as the symgrad program runs (its own process; symgrad.heap)

    sampler, phases = Sampler(), []
    with recording_phases(sampler, phases, cpu=True, echo=True):
        model = TENSOR_BUILDERS[model_name](
            {"n_layers": layers, **({"vocab_size": vocab} if vocab else {})}, tokens=tokens)
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        result = sg.verify(model, torch_fn=model.reference,
                           config=VerifyConfig(samples=1, seed=0, progress=False, dtype=dtype,
                                               threads=threads))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result_path:
        Path(result_path).write_text(json.dumps(result.as_dict(), sort_keys=True))
    counts = {b: result.counts(b) for b in result.comparisons}
    verdict = result.verdict
    peak_verify = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    del result
    try:  # the verify's figures stand if torch's own step outgrows the cap after it
        torch_wall, torch_cpu, torch_error = *torch_step(model, dtype), None
    except (MemoryError, RuntimeError) as exc:
        torch_wall = torch_cpu = None
        torch_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return {"model": model_name, "layers": layers, "tokens": tokens, "vocab": vocab or 50257,
            "dtype": dtype, "parameters": model.n_parameters,
            "verdict": verdict, "counts": counts, "verify_wall_s": round(wall, 1),
            "verify_cpu_s": round(cpu, 1), "verify_peak_rss_gib": round(peak_verify, 2),
            "threads": threads,
            "torch_wall_s": torch_wall, "torch_cpu_s": torch_cpu, "torch_error": torch_error,
            "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "cpu_model": cpu_model(), "blas": blas(), "phases": phases}


def torch_step(model, dtype: str = "float64") -> tuple[float, float]:
    """Wall and CPU seconds (best of 2) of torch's own forward + backward of ``model``'s
    native module (its ``reference``) in ``dtype`` on the verify's sample (seed 0)."""
    import numpy as np
    import torch

    values = model.draw(1, np.random.default_rng(0), dtype)
    blocks = {}
    for b in model.blocks:
        t = torch.tensor(values[b.name][0],
                         dtype=torch.long if b.domain.integer else getattr(torch, dtype))
        blocks[b.name] = t.requires_grad_(True) if b.is_param else t
    del values
    ref = model.reference
    ref(**blocks)  # builds the module
    times, cpus = [], []
    for _ in range(2):
        for t in blocks.values():
            t.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        ref(**blocks).backward()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return round(min(times), 3), round(min(cpus), 3)


def timed(layers: int, tokens: int, cap_gib: float, result: str | None,
          vocab: int | None = None, model_name: str = "gpt2", dtype: str = "float64",
          threads: int | None = None) -> dict:
    """``one`` in a child process under ``/usr/bin/time -v``, capped; the lock held at GPT-2's
    vocabulary (a reduced one, ``vocab``, is a few GiB: no lock)."""
    lock = ["flock", LOCK] if not vocab else []
    cmd = [*lock, "prlimit", f"--as={int(cap_gib * GIB)}", "/usr/bin/time", "-v",
           sys.executable, __file__, "--one", "--layers", str(layers), "--tokens", str(tokens),
           "--model", model_name, "--dtype", dtype]
    if vocab:
        cmd += ["--vocab", str(vocab)]
    if threads:
        cmd += ["--threads", str(threads)]
    if result:
        cmd += ["--result", result]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    err = p.stderr
    sys.stderr.write(err[-4000:])

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}: (.+)", err)
        return m.group(1).strip() if m else ""
    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(x) for x in wall.split(":")] if wall else [0.0]
    wall_s = sum(x * 60 ** i for i, x in enumerate(reversed(parts)))
    row = {"model": model_name, "layers": layers, "tokens": tokens, "vocab": vocab or 50257,
           "dtype": dtype, "returncode": p.returncode,
           "user_s": float(field("User time (seconds)") or 0),
           "sys_s": float(field("System time (seconds)") or 0), "wall_s": wall_s,
           "max_rss_gib": round(int(field("Maximum resident set size (kbytes)") or 0) / 2**20,
                                2), "load_start": round(load, 2), "cap_gib": cap_gib}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if lines:
        row.update(json.loads(lines[-1]))
    else:  # the phases that ended, and the error
        row["phases"] = [ast.literal_eval(ln.strip()) for ln in err.splitlines()
                         if ln.startswith("  {'phase'")]
        tail = [ln for ln in err.splitlines() if "Error" in ln]
        row["error"] = tail[-1] if tail else f"exit {p.returncode}"
    return row


def _inconclusive(row: dict) -> str:
    """Inconclusive entries of the deciding backend (torch_fn), of all its entries."""
    c = row.get("counts", {}).get("torch_fn")
    if not c:
        return "n/a"
    total = sum(c.values())
    return f"{c.get('inconclusive', 0) / total:.2%} ({c.get('inconclusive', 0):,})"


def _error(row: dict) -> str:
    """A failed run's error, short: out of memory at the cap, or the exception's last line."""
    err = row.get("error", "?")
    if "MemoryError" in err:
        return f"out of memory at the {row['cap_gib']} GiB cap ({err.split('Unable to ')[-1]})"
    return err


def _phase_peaks(row: dict) -> str:
    return "; ".join(f"{p['phase'].split(' (')[0].split(',')[0]} {p['start_gib']}→"
                     f"{p['peak_gib']} ({p['cpu_s']} s"
                     + (f", wall {p['wall_s']} s)" if "wall_s" in p else ")")
                     for p in row.get("phases", [])
                     if p["peak_gib"] - p["start_gib"] >= 0.5 or p["cpu_s"] >= 5)


def extrapolate(rows: list[dict], tokens: int = 1024, layers: int = 12) -> dict | None:
    """CPU s, wall s and max RSS at ``layers`` layers and ``tokens`` tokens: the 1-layer run at
    GPT-2's vocabulary plus (layers - 1) times the per-layer difference of a 2-layer and a
    1-layer run of one vocabulary (the last of each; GPT-2's if both ran, else a reduced one:
    a layer is the same program at any vocabulary, 7.08M parameters at width 768). None
    without a pair; without the 1-layer full-vocabulary run, only the per-layer figures."""
    pairs: dict[int, dict[int, dict]] = {}
    for r in rows:
        if r["tokens"] == tokens and r["layers"] in (1, 2) and "verdict" in r and (
                r.get("model", "gpt2") == "gpt2") and r.get("dtype", "float64") == "float64" and (
                not r.get("threads")):  # a --threads comparison is not one of a depth pair
            pairs.setdefault(r.get("vocab", 50257), {})[r["layers"]] = r
    full = pairs.get(50257, {})
    pair = full if len(full) == 2 else next((p for v, p in sorted(pairs.items())
                                             if len(p) == 2), None)
    if pair is None:
        return None
    one, two = pair[1], pair[2]
    out = {"tokens": tokens, "layers": layers, "per_layer_vocab": one.get("vocab", 50257),
           "loads": (one.get("load_start"), two.get("load_start"))}
    for key, f in (("cpu_s", lambda r: r["user_s"] + r["sys_s"]), ("wall_s", lambda r: r["wall_s"]),
                   ("max_rss_gib", lambda r: r["max_rss_gib"]),
                   ("torch_cpu_s", lambda r: r["torch_cpu_s"])):
        per = f(two) - f(one)
        out[f"{key}_per_layer"] = round(per, 2)
        if 1 in full and "verdict" in full[1]:
            out[key] = round(f(full[1]) + (layers - 1) * per, 2)
    return out


def live_peak(steps: list, frees: list) -> int:
    """The most entries of non-leaf values a walk holds at once (its steps and, after each,
    the values it frees: ``symgrad.tensor.recompute.Plan``).

    >>> import symgrad.tensor as st
    >>> from symgrad.tensor.recompute import plan
    >>> x = st.param("x", (3,))
    >>> p = plan([st.sum_(x * x)], above=None)
    >>> live_peak(p.steps, p.frees)  # x * x (3) while its sum (1) is formed
    4
    """
    held, now, top = {}, 0, 0
    for node, gone in zip(steps, frees):
        if not node.is_leaf:
            held[node.id] = node.size
            now += node.size
        top = max(top, now)
        for f in gone:
            now -= held.pop(f.id, 0)
    return top


def plan_peaks(layers: int, tokens: int, vocab: int | None) -> dict:
    """The live entries at the peak of the oracle's and the bound's walk of gpt2 (``layers``,
    ``tokens``, ``vocab``), counted on the walk's plan, plain and with the forward's layers
    recomputed (nothing evaluated: seconds). The bound holds a value, E and sigma of each
    (and a nonzero mask of some), the oracle a hi and lo."""
    from symgrad.tensor.recompute import plan
    from symgrad.zoo.gpt2 import gpt2

    outs = gpt2({"n_layers": layers, **({"vocab_size": vocab} if vocab else {})},
                tokens=tokens).gradient.outputs
    plain, again = plan(outs, above=None), plan(outs)
    return {"layers": layers, "tokens": tokens, "vocab": vocab or 50257,
            "plain_entries": live_peak(plain.steps, plain.frees),
            "recompute_entries": live_peak(again.steps, again.frees),
            "recomputed_steps": sum(again.again)}


def _plan_table(plans: list[dict]) -> list[str]:
    if not plans:
        return []
    md = ["## Live entries at the walks' peak, counted on the plan", "",
          "The oracle's and the bound's walks hold a node's value from its step until the last "
          "step that reads it (`symgrad/tensor/recompute.py`). Counted on the plans of "
          "`plan_peaks` (no evaluation): the plain walk, and the walk that drops every forward "
          "segment before the head after the forward and computes it again in the backward "
          "(the default above 2^24 dropped entries). The bound keeps 24-32 B per entry, the "
          "oracle 16.", "",
          "| layers | tokens | vocab | plain: M entries | recomputed: M entries | "
          "steps recomputed |", "|---|---|---|---|---|---|"]
    for p in plans:
        md.append(f"| {p['layers']} | {p['tokens']} | {p['vocab']:,} | "
                  f"{p['plain_entries'] / 1e6:.1f} | {p['recompute_entries'] / 1e6:.1f} | "
                  f"{p['recomputed_steps']} |")
    return md + [""]


def _verify_peak(row: dict) -> str:
    """The verify's own peak (before torch's step in the same process), where it differs."""
    v = row.get("verify_peak_rss_gib")
    return f" (verify {v})" if v is not None and v < row["max_rss_gib"] - 0.05 else ""


def _table(rows: list[dict]) -> list[str]:
    """The runs' table: one row each, its figures, verdict, inconclusive share and phases."""
    md = ["| layers | tokens | vocab | dtype | parameters | CPU s (user + sys) | wall s | "
          "max RSS GiB | load | torch CPU s | verify / torch (CPU) | verdict | "
          "inconclusive (torch_fn) | phases: start→peak GiB (CPU s) | |", "|" + "---|" * 15]
    for r in rows:
        cpu = r["user_s"] + r["sys_s"]
        ratio = f"{cpu / r['torch_cpu_s']:.0f}×" if r.get("torch_cpu_s") else "n/a"
        md.append(f"| {r['layers']} | {r['tokens']} | {r.get('vocab', 50257):,} | "
                  f"{r.get('dtype', 'float64')} | {r.get('parameters', 0):,} | "
                  f"{r['user_s']:.0f} + {r['sys_s']:.0f} | {r['wall_s']:.0f} | "
                  f"{r['max_rss_gib']}{_verify_peak(r)} | {r['load_start']} | "
                  f"{r.get('torch_cpu_s') or 'n/a'} | "
                  f"{ratio} | {r.get('verdict', _error(r))} | {_inconclusive(r)} | "
                  f"{_phase_peaks(r)} | {r.get('label', '')} |")
    return md


def render(rows: list[dict], notes: list[str], plans: list[dict] = ()) -> None:
    """reports/benchmark_context.md from the recorded rows."""
    md = ["# GPT-2 at long context (issue 19, item 3)", "",
          "`symgrad verify gpt2 --config '{\"n_layers\": L}' --tokens T --samples 1` "
          "(float64 unless the dtype column says otherwise (`--dtype`), seed 0, the native "
          "`nn.Module` as torch_fn; width 768, vocabulary 50,257, "
          "12 heads), each in its own process under `/usr/bin/time -v`, `flock /tmp/gpt2.lock` "
          "and an address-space cap (`prlimit --as`), by `scripts/benchmark_context.py`. The "
          "machine is a shared 2-core one: wall times are upper bounds, CPU (user + sys) is "
          "the figure to compare; the load average (1 min) at the start of each run is beside "
          "it. torch: the native module's own forward + backward (in the row's dtype) of the "
          "same sample in the same process (best of 2, CPU s).", "",
          *_table([r for r in rows if r.get("model", "gpt2") == "gpt2"])]
    medium = [r for r in rows if r.get("model") == "gpt2_medium"]
    if medium:
        md += ["", "## GPT-2 medium (issue 19: 24 layers, width 1024, 16 heads, ≤ 20 min, "
               "≤ 16 GB at 64 tokens)", "",
               "`symgrad verify gpt2_medium --config '{\"n_layers\": L}' --tokens T --samples 1` "
               "(`GPT_CONFIG_355M`: untied, no qkv biases, 406,212,608 parameters at 24 layers), "
               "run as the rows above (`--model gpt2_medium`). Max RSS is the process's: it "
               "includes torch's own step after the verify (the native module's float64 "
               "parameters and gradients); the verify's own peak is in the phases and the "
               "note.", "", *_table(medium)]
    cpus = {r.get("cpu_model") for r in rows if r.get("cpu_model")}
    blas = {r.get("blas") for r in rows if r.get("blas")}
    md += ["", f"CPU: {', '.join(sorted(cpus)) or 'n/a'}; {', '.join(sorted(blas)) or ''}.", ""]
    ex = extrapolate(rows)
    if ex:
        measured = [r for r in rows if (r["layers"], r["tokens"], r.get("vocab", 50257)) == (
            12, 1024, 50257) and r.get("model", "gpt2") == "gpt2" and r.get(
            "dtype", "float64") == "float64" and "verdict" in r]
        md += ["## 12 layers at 1024 tokens, extrapolated" + (
            " (superseded by the measured rows)" if measured else ""), ""]
        if measured:
            last = measured[-1]
            md += [f"Superseded by the measured 12-layer float64 rows at 1024 tokens above "
                   f"({len(measured)}); the latest ({last.get('label', '').split(' (')[0]}): "
                   f"{last['user_s'] + last['sys_s']:,.0f} CPU s, max RSS "
                   f"{last['max_rss_gib']} GiB, "
                   f"{(last['user_s'] + last['sys_s']) / last['torch_cpu_s']:.0f}× torch's own "
                   f"step. The estimate below, from the last 1- and 2-layer pair, is kept as "
                   f"the record of what was expected before them.", ""]
        md += [f"Per layer (a 2-layer minus a 1-layer run at 1024 tokens, vocabulary "
               f"{ex['per_layer_vocab']:,}): {ex['cpu_s_per_layer']:.0f} CPU s, "
               f"{ex['max_rss_gib_per_layer']:.2f} GiB of peak RSS; torch's own step "
               f"{ex['torch_cpu_s_per_layer']:.2f} CPU s (no wall per layer: the two runs "
               f"ran at loads {ex['loads'][0]} and {ex['loads'][1]})."]
        if "cpu_s" in ex:
            md += ["", f"12 layers at GPT-2's vocabulary = the 1-layer run + 11 layers: "
                   f"≈ {ex['cpu_s']:.0f} CPU s ({ex['cpu_s'] / 60:.0f} min of one core; "
                   f"the issue's target: ≤ 15 min wall on 2 cores, i.e. ≤ 30 CPU min at "
                   f"best), max RSS ≈ {ex['max_rss_gib']:.1f} GiB (target ≤ 16 GB = "
                   f"{TARGET_GIB:.1f} GiB); torch's own step ≈ {ex['torch_cpu_s']:.1f} CPU s: "
                   f"{ex['cpu_s'] / ex['torch_cpu_s']:.0f}× it."]
        md.append("")
    md += [*_plan_table(list(plans)), *notes, ""]
    REPORT.write_text("\n".join(md))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="1", help="comma-separated layer counts")
    ap.add_argument("--tokens", default="128,256,512,1024", help="comma-separated")
    ap.add_argument("--cap-gib", type=float, default=9.0,
                    help="address-space cap of a run (prlimit --as); the spilled hi, lo and E "
                         "are file mappings inside it: 16 B an entry, 2.4 GiB at gpt2, 6.1 GiB "
                         "at gpt2_medium, beyond the resident set")
    ap.add_argument("--one", action="store_true", help="one run in this process")
    ap.add_argument("--result", default=None, help="write the (last) run's result JSON here")
    ap.add_argument("--append", action="store_true", help="add to the recorded rows")
    ap.add_argument("--render", action="store_true", help="only rewrite the report")
    ap.add_argument("--vocab", type=int, default=None,
                    help="a reduced vocabulary (default GPT-2's 50257; runs without the lock)")
    ap.add_argument("--label", default="", help="the runs' note in the table (e.g. a commit)")
    ap.add_argument("--model", default="gpt2", choices=["gpt2", "gpt2_medium"],
                    help="the zoo GPT to run (default gpt2; gpt2_medium: width 1024, 16 heads)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                    help="the backends' dtype (default float64; the oracle is exact either way)")
    ap.add_argument("--threads", default="",
                    help="comma-separated VerifyConfig.threads, each run in turn side by side "
                         "(default: its default, the machine's cores)")
    ap.add_argument("--plan", action="store_true",
                    help="count the walks' live entries on their plans (--layers, --tokens, "
                         "--vocab), plain and recomputed; no evaluation")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.layers), int(args.tokens), args.result, args.vocab,
                             args.model, args.dtype, int(args.threads) if args.threads
                             else None)), flush=True)
        return 0
    keep = args.append or args.render or args.plan  # --plan keeps the rows (it replaced them)
    kept = json.loads(DATA.read_text()) if DATA.exists() and keep else {}
    rows, notes = kept.get("rows", []), kept.get("notes", [])
    plans = kept.get("plans", [])
    if args.plan:  # run with PYTHONPATH=. (this tree's symgrad)
        for layers in [int(x) for x in args.layers.split(",")]:
            for tokens in [int(x) for x in args.tokens.split(",")]:
                got = plan_peaks(layers, tokens, args.vocab)
                plans = [p for p in plans if (p["layers"], p["tokens"], p["vocab"]) != (
                    got["layers"], got["tokens"], got["vocab"])] + [got]
                print(got, flush=True)
    elif not args.render:
        for layers in [int(x) for x in args.layers.split(",")]:
            for tokens in [int(x) for x in args.tokens.split(",")]:
                for threads in [int(x) for x in args.threads.split(",") if x] or [None]:
                    row = timed(layers, tokens, args.cap_gib, args.result, args.vocab,
                                args.model, args.dtype, threads)
                    row["label"] = (f"threads={threads}, " if threads else "") + args.label
                    rows.append(row)
                    DATA.write_text(json.dumps({"rows": rows, "notes": notes, "plans": plans},
                                               indent=1, sort_keys=True) + "\n")
    if args.plan:
        DATA.write_text(json.dumps({"rows": rows, "notes": notes, "plans": plans}, indent=1,
                                   sort_keys=True) + "\n")
    render(rows, notes, plans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
