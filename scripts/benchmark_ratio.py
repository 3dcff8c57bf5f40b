"""verify / torch's own forward+backward, in the same run: ``sg.verify`` of GPT-2 (float64, 1
sample, seed 0, the native module as torch_fn) and torch's own float64 forward+backward of the
same native module at the same sample (min of 3), each tree in its own process; CPU seconds of
the whole process per phase (``time.process_time`` around each of ``tensor.verify``'s phases:
every thread, user + system), the result JSON without its timings (to compare trees byte for
byte). Writes reports/benchmark_ratio.json and the "verify / torch" section of
reports/benchmarks.md. ``--heap kept``: each child keeps freed arrays for reuse
(``symgrad.heap.keep_freed``, as the ``symgrad`` program does for its own process; default
``system``: glibc's own thresholds, as a library call runs).

Usage::

    python scripts/benchmark_ratio.py --trees BASE_TREE . --layers 1 --tokens 64
    python scripts/benchmark_ratio.py --trees BASE_TREE . --layers 1 --tokens 64 --heap kept
    python scripts/benchmark_ratio.py --trees . --layers 12 --tokens 64 --merge  # under flock

>>> _ratio({"verify_cpu_s": 90.0, "torch_cpu_s": 1.5})
'60x'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

from benchmark_precise import _in_tree as run_in_tree  # a tree's child run, its commit
from benchmark_precise import _machine  # CPU model, cores, numpy's and torch's BLAS (one place)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## verify / torch's own forward+backward, same run (issue 19)"


def child(layers: int, tokens: int, json_out: str | None, heap: str = "system") -> dict:
    """One tree's row (run with PYTHONPATH at that tree); ``heap`` "kept": freed arrays kept
    for reuse first (``symgrad.heap.keep_freed``, the ``symgrad`` program's setting)."""
    import numpy as np
    import torch

    import symgrad
    import symgrad as sg
    from symgrad import heap as sg_heap
    from symgrad.config import VerifyConfig
    from symgrad.zoo.gpt2 import gpt2

    kept = heap == "kept" and sg_heap.keep_freed()

    model = gpt2({"n_layers": layers}, tokens=tokens)
    row = {"tree": str(Path(symgrad.__file__).resolve().parents[1]), "layers": layers,
           "tokens": tokens, "parameters": model.n_parameters, "machine": _machine(),
           "load_at_start": os.getloadavg()[0], "heap": "kept" if kept else "system"}
    values = model.draw(1, np.random.default_rng(0), "float64")
    args = {b.name: (torch.tensor(values[b.name][0], dtype=torch.long) if b.domain.integer else
                     torch.tensor(values[b.name][0], dtype=torch.float64)
                     .requires_grad_(b.is_param)) for b in model.blocks}
    model.reference(**args)  # builds the module
    runs = []
    for _ in range(3):
        for t in args.values():
            t.grad = None
        w, c = time.perf_counter(), time.process_time()
        model.reference(**args).backward()
        runs.append((time.perf_counter() - w, time.process_time() - c))
    row["torch_wall_s"], row["torch_cpu_s"] = min(r[0] for r in runs), min(r[1] for r in runs)
    del args, runs
    with cpu_by_phase() as cpu:
        w, c = time.perf_counter(), time.process_time()
        result = sg.verify(model, torch_fn=model.reference,
                           config=VerifyConfig(samples=1, seed=0, dtype="float64"))
        row["verify_wall_s"] = time.perf_counter() - w
        row["verify_cpu_s"] = time.process_time() - c
    row["phase_cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
    row["phase_wall_s"] = {k: round(v, 2) for k, v in result.timings.items()}
    # the part two trees must share byte for byte: the result's JSON holds no timings
    doc = json.dumps(result.as_dict(), indent=2, sort_keys=True)
    row["json_sha1"] = hashlib.sha1(doc.encode()).hexdigest()[:12]
    if json_out:
        Path(json_out).write_text(doc)
    row["verdict"] = result.verdict
    row["load_at_end"] = os.getloadavg()[0]
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


@contextlib.contextmanager
def cpu_by_phase():
    """While open, each of ``tensor.verify``'s phases adds this process's CPU seconds to the
    yielded dict under its timings key; the verify's own phase hook is put back on exit (one
    place: ``gate_summary.py`` records its phases with it too)."""
    from symgrad.tensor import verify as tverify  # the symgrad of the tree this process runs
    cpu: dict[str, float] = {}
    real = tverify._phase

    @contextlib.contextmanager
    def phase(what, cfg, timings, key, total=None):
        c = time.process_time()
        with real(what, cfg, timings, key, total) as tick:
            try:
                yield tick
            finally:
                cpu[key] = cpu.get(key, 0.0) + time.process_time() - c
    tverify._phase = phase
    try:
        yield cpu
    finally:
        tverify._phase = real


def _in_tree(tree: str, layers: int, tokens: int) -> dict:
    return run_in_tree(str(Path(tree).resolve()), "--child", layers, tokens, script=__file__)


def _ratio(r: dict) -> str:
    return f"{r['verify_cpu_s'] / r['torch_cpu_s']:.0f}x"


def render(rows: list[dict]) -> None:
    """Rewrite this script's section of reports/benchmarks.md from ``rows``."""
    m = rows[0]["machine"]
    md = [SECTION, "",
          f"`sg.verify` of `gpt2({{\"n_layers\": L}}, tokens=T)`, float64, 1 sample, seed 0, "
          "the native module as torch_fn (torch and torch_fn compared: numpy's view is off at "
          "GPT-2's width), beside torch's own float64 "
          "forward+backward of the same native module at the same sample (min of 3), in the "
          "same process (`scripts/benchmark_ratio.py`). CPU s: the whole process's "
          "(`time.process_time`: every thread, user + system). CPU "
          f"{m['cpu']}, {m['cores']} cores; numpy on {m['numpy_blas']}; {m['torch']}. The "
          "machine is shared (load average at start / end): walls are upper bounds; system time "
          "(page faults of fresh arrays) is a large share under load.", "",
          "| tree | layers | tokens | load | torch fwd+bwd CPU s / wall s | verify CPU s / wall s "
          "| verify CPU / torch CPU | CPU s by phase | peak GB | verdict | JSON sha1 |",
          "|" + "---|" * 11]
    for r in rows:
        phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in r["phase_cpu_s"].items()
                           if v >= 0.05)
        heap = " (heap kept)" if r.get("heap") == "kept" else ""
        md.append(f"| {r['commit']}{heap} | {r['layers']} | {r['tokens']} | "
                  f"{r['load_at_start']:.1f} / {r['load_at_end']:.1f} | "
                  f"{r['torch_cpu_s']:.2f} / {r['torch_wall_s']:.2f} | "
                  f"{r['verify_cpu_s']:.1f} / {r['verify_wall_s']:.1f} | {_ratio(r)} | {phases} | "
                  f"{r['peak_rss_gb']:.2f} | {r['verdict']} | {r['json_sha1']} |")
    notes = [r["note"] for r in rows if r.get("note")]
    md += [""] + [f"- {n}" for n in notes]
    bench = ROOT / "reports" / "benchmarks.md"
    text = bench.read_text()
    before, _, rest = text.partition("\n" + SECTION)
    after = rest[rest.find("\n## "):] if "\n## " in rest else ""  # the sections after it stay
    bench.write_text(before.rstrip("\n") + "\n\n" + "\n".join(md).rstrip("\n") + "\n" + after)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", nargs="+", default=[str(ROOT)], help="trees, one process each")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--merge", action="store_true", help="keep the rows already recorded")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", default=os.environ.get("RATIO_JSON_OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--heap", choices=("system", "kept"), default=os.environ.get(
        "RATIO_HEAP", "system"), help="kept: freed arrays reused, as the symgrad program runs")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child, a.json_out, a.heap)))
        return 0
    os.environ["RATIO_HEAP"] = a.heap  # the children's (run by benchmark_precise._in_tree)
    store = ROOT / "reports" / "benchmark_ratio.json"
    rows = json.loads(store.read_text())["rows"] if (a.merge or a.render) and store.exists() else []
    if not a.render:
        rows += [_in_tree(t, a.layers, a.tokens) for t in a.trees]
        store.write_text(json.dumps({"rows": rows}, indent=2, sort_keys=True) + "\n")
    render(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
