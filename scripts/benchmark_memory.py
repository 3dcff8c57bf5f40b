"""Where the memory of a GPT's verify goes: the resident set at the start, peak and end of each
phase of ``symgrad.tensor.verify`` (sampled every 10 ms from /proc/self/statm), the process's
peak (``resource.getrusage``) and the wall time, for one config in this process. Writes the
result's JSON to ``--result`` (to compare two trees byte for byte) and, with ``--record``, adds
the run to the "Memory by phase" section of reports/benchmarks.md (and
reports/benchmark_memory.json).

    python scripts/benchmark_memory.py --layers 2 --tokens 8            # 2-layer GPT-2, 768 wide
    python scripts/benchmark_memory.py --tokens 8 --record --label after  # gpt2 (12 layers)
    python scripts/benchmark_memory.py --layers 1 --vocab 4096 --tokens 16  # seconds, not minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import symgrad as sg
import symgrad.tensor.verify as tensor_verify
from symgrad.config import VerifyConfig
from symgrad.zoo.gpt2 import gpt2

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
SECTION = "## Memory by phase (streaming compare)"


class Sampler:
    """The resident set of this process, its peak since ``reset``, sampled in a thread."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.now()
        threading.Thread(target=self._run, daemon=True).start()

    def now(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page / GIB

    def reset(self) -> float:
        self.peak = self.now()
        return self.peak

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            time.sleep(0.01)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@contextmanager
def recording_phases(sampler: Sampler, phases: list, *, cpu: bool = False, echo: bool = False):
    """While open, each of ``tensor.verify``'s phases appends its resident set (GiB) at start,
    peak and end to ``phases`` (``cpu``: and this process's CPU seconds; ``echo``: printed to
    stderr as it ends); the verify's own phase hook is put back on exit."""
    right = tensor_verify._phase

    @contextmanager
    def phase(what, cfg, timings, key, total=None):
        start, c0, w0 = sampler.reset(), time.process_time(), time.perf_counter()
        with right(what, cfg, timings, key, total) as tick:
            yield tick
        row = {"phase": what, "start_gib": round(start, 2),
               "peak_gib": round(max(sampler.peak, sampler.now()), 2),
               "end_gib": round(sampler.now(), 2)}
        if cpu:  # and the wall beside it: CPU / wall is the phase's cores busy
            row["cpu_s"] = round(time.process_time() - c0, 1)
            row["wall_s"] = round(time.perf_counter() - w0, 1)
        phases.append(row)
        if echo:
            print(f"  {row}", file=sys.stderr, flush=True)
        sampler.reset()
    tensor_verify._phase = phase
    try:
        yield
    finally:
        tensor_verify._phase = right



def run(layers: int, tokens: int, result_path: str | None, vocab: int | None = None,
        echo: bool = False) -> dict:
    """Verify gpt2 at ``layers`` layers and ``tokens`` tokens (``vocab``: its vocabulary, None:
    GPT-2's 50257), 1 sample, float64, seed 0 (``echo``: each phase printed to stderr as it
    ends, so that a run killed for memory leaves its phases)."""
    sampler, phases = Sampler(), []
    with recording_phases(sampler, phases, echo=echo):
        model = gpt2({"n_layers": layers, **({"vocab_size": vocab} if vocab else {})},
                     tokens=tokens)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = sg.verify(model, torch_fn=model.reference,
                           config=VerifyConfig(samples=1, seed=0, progress=False))
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        text = str(result)  # the text table (issue 19: it once hung for 26 minutes at gpt2)
        text_s = time.perf_counter() - t0
    doc = json.dumps(result.as_dict(), sort_keys=True)
    if result_path:
        Path(result_path).write_text(doc)
    return {"layers": layers, "tokens": tokens, "parameters": model.n_parameters,
            "verdict": result.verdict, "wall_s": round(wall, 1),
            "text_s": round(text_s, 2), "text_lines": text.count("\n") + 1,
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
            "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "cpu_model": cpu_model(), "phases": phases}


def record(row: dict, label: str) -> None:
    """Add ``row`` to reports/benchmark_memory.json and rewrite the section of benchmarks.md."""
    path = ROOT / "reports" / "benchmark_memory.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows.append({**row, "label": label})
    path.write_text(json.dumps({"rows": rows}, indent=2, sort_keys=True) + "\n")
    render(rows)


def render(rows: list[dict]) -> None:
    """Rewrite the "Memory by phase" section at the end of reports/benchmarks.md from ``rows``
    (``--render``: from reports/benchmark_memory.json)."""
    md = [SECTION, "",
          "Resident set per phase of `sg.verify` (GPT-2's width 768, 1 sample, float64, seed 0, "
          "with the native module as torch_fn), measured by `scripts/benchmark_memory.py` on a "
          "shared 2-core machine: wall times are upper bounds (load average at start / end).",
          "",
          "What is held, per parameter entry, from the bound to the last backend's summary: the "
          "samples (8 B), the oracle's hi and lo (12 B: lo in float32 from 50M entries), the "
          "bound E (4 B: float32 rounded away from zero from 50M entries, still a bound, "
          "`symgrad/tensor/upward.py`, since mem19c; 8 B before), the backend's gradient (8 B) "
          "and its statuses (1 B; 1 B for each earlier backend) - about 34 B, 5.2 GiB at "
          "GPT-2's 163M entries (38 B, 5.8 GiB before mem19c). A large "
          "comparison's ULPs and allowances (8 B an entry) are no longer held: they are "
          "elementwise functions of hi, lo, E and the gradient, recomputed where the findings, "
          "figures and histogram read them (`symgrad/tensor/streaming_figures.py`, the same "
          "numbers: JSON byte-identical). A backend's gradient is written into the flat array "
          "leaf by leaf as autograd accumulates it (`symgrad/backends/torch_grads.py`, "
          "`backward_into`: torch's own bits), never held twice, and freed heap blocks "
          "(GPT-2's per-layer arrays sit below glibc's mmap threshold) are handed back after "
          "each block and phase (`give_back`). The peak is set by whichever phase adds the "
          "most transient memory on top of that base: the bound's walk, torch's backward or "
          "the oracle's (see the phase peaks). Since mem20 (`symgrad/tensor/spill.py`), from "
          "50M entries hi, lo and E live in unlinked temporary-file mappings whose pages are "
          "dropped from the resident set between the chunks that read or write them "
          "(madvise DONTNEED on a shared file mapping: the data stays in the file, reads are "
          "bit-identical): they leave the resident set (2.43 GiB at GPT-2) and sit in the "
          "kernel's page cache instead, written back to disk and evicted under memory "
          "pressure; the resident base from the bound on is the process, the samples, one "
          "backend's gradient and the statuses (~3 GiB at GPT-2).",
          "", "| run | layers | tokens | parameters | peak RSS GiB | wall s | CPU s | load | "
          "verdict | text s | phase peaks GiB (start → peak) | CPU |", "|" + "---|" * 12]
    for r in rows:
        peaks = "; ".join(f"{p['phase']} {p['start_gib']}→{p['peak_gib']}" for p in r["phases"]
                          if p["peak_gib"] - p["start_gib"] > 0.05 or p["peak_gib"] > 1)
        md.append(f"| {r['label']} | {r['layers']} | {r['tokens']} | {r['parameters']:,} | "
                  f"{r['peak_rss_gib']} | {r['wall_s']} | {r['cpu_s']} | "
                  f"{r['load_avg_1min'][0]} / {r['load_avg_1min'][1]} | {r['verdict']} | "
                  f"{r.get('text_s', '-')} | {peaks} | {r['cpu_model']} |")
    md += ["", *[f"- {r['label']}: {r['note']}" for r in rows if r.get("note")],
           "- The order: the oracle and the bound first, then each backend run, compared and "
           "reduced before the next. Running the backends first would hold both gradients "
           "(2 x 8 B an entry) through the oracle and the bound. Whole-model hi, lo and E can "
           "only go once the compare runs inside the walks' block hand-over (``emit``): the "
           "per-sample block test's common mode is a median over every block of the sample "
           "(``compare.systematic_blocks``) and a flagged block is re-read, so it needs its "
           "per-block projections kept and a flagged block's columns recomputed; the findings "
           "(worst entries: already candidates per chunk) and the figures (stats folded per "
           "group, medians by ``order_stats.ChunkMedian``) per block. Each backend's gradient "
           "comes whole from one backward pass, and every oracle block needs the whole forward "
           "and the backward down to it, so re-walking the oracle per backend costs a whole "
           "oracle each time (32% of the run) - keeping the backends' gradients (8 B an entry "
           "each) while one oracle walk streams is the lower cost.",
           "- What <= 5 GB (4.66 GiB) at GPT-2 needs, by array sizes (1.21 GiB per float64 "
           "array of 163M entries, 0.61 float32, 0.15 int8): the process before any array "
           "(Python, numpy, torch, the program) is 0.28 GiB, and the samples, hi, lo and E are "
           "4.25 GiB, so any order that holds those four whole at once starts at 4.53 GiB and "
           "leaves 0.13 GiB for everything else - less than one output-head block (50257 x 768: "
           "0.29 GiB). Way (b) (each backend's gradient compared per parameter against "
           "whole hi, lo and E) therefore cannot reach 5 GB at GPT-2, however small its "
           "transients; it ends near 4.53 + the largest block's transient (~5.0 GiB). Only way "
           "(a) can: the backends first (0.28 + samples + 2 gradients: 3.92 GiB), then the "
           "oracle and the bound handing each parameter block to the compare (hi/lo and E never "
           "whole), which leaves 0.74 GiB for the walks' transients, the compare of a block and "
           "the statuses (0.15 GiB a backend) - and needs the walks' transients at the output "
           "head cut from today's +2.3 / +1.6 GiB to a vocabulary chunk's (the head's gradient "
           "and |A||B| in row blocks: issue 19 item 3), the two walks run in lockstep (each "
           "block's hi/lo and E together; today two walks, so one of hi/lo or E would be whole: "
           "+1.8 or +1.2 GiB), and every summary made per block: statuses, the block tests' "
           "per-block projections (the common mode is a median over a sample's blocks, so a "
           "flagged block's marks need its columns again: keep its e.g-sign bits, 2 bits an "
           "entry, or recompute), worst-entry candidates with their values, per-block stats and "
           "exact block medians, the ULP histogram; the whole model's median ULP is the one "
           "global order statistic (``order_stats.ChunkMedian`` reads the ULPs twice): it needs "
           "the float32 ULPs kept (0.61 GiB) or a key histogram plus a second pass. The current "
           "order's floor, for the record: the last backend's run holds 0.28 + samples + hi + "
           "lo + E + the earlier backend's statuses (4.68 GiB) + its gradient (1.21) + "
           "autograd's output-head block (~0.3): ~6.2-6.5 GiB at GPT-2. Transients measured "
           "before mem23 (gpt2 at 64 tokens, over each phase's start): the oracle's walk +4.2 "
           "GiB (+2.3 over its hi and lo: the double-double products of the two 50257 x 768 "
           "blocks; +0.7 at 1 layer), the bound's +2.8 (+1.6 over E: at the output-head "
           "gradient its stacked |A||B| and error term (2 x 0.29 GiB), E, sigma and their "
           "temporaries; the same +1.6 at 1 layer, where it sets the peak), each compare's +0.7 "
           "(profiled by mem23 on GPT-2's block layout with synthetic values: the new statuses "
           "0.15 and 1M-entry compare chunks 0.1, then in the block test a whole-size kink mask "
           "held through every block (0.15, none at a kink: dropped since 7f0afde) and the "
           "4M-entry column chunks' arrays (0.33 -> 0.17 GiB since 589920b: the previous "
           "chunk's scaled error, exact value and allowance were still held while the next "
           "chunk's were formed); block_tests' peak over its start 0.32 GiB at 589920b, 0.17 "
           "at 7f0afde (about 0.48 before both, by the parts), the phase 4.53 -> 5.02 and "
           "4.53 -> 4.87 GiB; the rest of the real run's +0.7 is likely freed heap; "
           "mark_doubt and mark_open do nothing at GPT-2), torch's backward +1.5 (the gradient "
           "1.21 and one block)."]
    bench = ROOT / "reports" / "benchmarks.md"
    text = bench.read_text()
    before, _, rest = text.partition("\n" + SECTION)
    after = rest[rest.find("\n## "):] if "\n## " in rest else ""  # the sections after it stay
    bench.write_text(before.rstrip("\n") + "\n\n" + "\n".join(md) + "\n" + after)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary size (default GPT-2's)")
    ap.add_argument("--result", default=None, help="write the result's JSON here")
    ap.add_argument("--record", action="store_true", help="add to reports/benchmarks.md")
    ap.add_argument("--label", default="", help="the run's name in the table")
    ap.add_argument("--echo", action="store_true", help="print each phase as it ends")
    ap.add_argument("--render", action="store_true", help="only rewrite the section")
    args = ap.parse_args()
    if args.render:
        render(json.loads((ROOT / "reports" / "benchmark_memory.json").read_text())["rows"])
        return 0
    row = run(args.layers, args.tokens, args.result, args.vocab, echo=args.echo)
    for p in row["phases"]:
        print(f"{p['phase']:<28} start {p['start_gib']:5.2f}  peak {p['peak_gib']:5.2f}  "
              f"end {p['end_gib']:5.2f} GiB")
    print(json.dumps({k: v for k, v in row.items() if k != "phases"}))
    if args.record:
        record(row, args.label)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
