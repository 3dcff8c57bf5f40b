"""The summary and compare gate (issue 19): each case's result JSON (timings removed) and its text
table (``str(result)``) written to a folder, with the CPU seconds of the compare and summary
phases, so that two trees' answers can be compared byte for byte (``cmp -r``) and their costs
side by side.

Usage::

    PYTHONPATH=TREE python scripts/gate_summary.py --out /tmp/gate-TREE [--cases tiny64 ...]

>>> sorted(CASES)[:2]
['gpt2_16k', 'gpt2_16k_planted']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmark_ratio import _strip, cpu_by_phase  # one phase-CPU recorder, one JSON strip

CASES = {  # name -> (zoo model, config, tokens, samples, dtype, planted factor on h0_Wq)
    "tiny64": ("tiny_gpt", None, None, 8, "float64", None),
    "tiny32": ("tiny_gpt", None, None, 8, "float32", None),
    "gpt2_16k": ("gpt2", {"n_layers": 1, "vocab_size": 16384}, 16, 1, "float64", None),
    "gpt2_16k_planted": ("gpt2", {"n_layers": 1, "vocab_size": 16384}, 16, 1, "float64",
                         1 + 1e-10),
}




def run_case(name: str, out: Path) -> dict:
    """Run one case; write NAME.json and NAME.txt under ``out``; return its CPU seconds."""
    from symgrad import testing, zoo
    import symgrad as sg
    from symgrad.config import VerifyConfig

    model_name, config, tokens, samples, dtype, factor = CASES[name]
    kw = {"tokens": tokens} if tokens is not None else {}
    model = zoo.get(model_name, config=config, **kw) if config else zoo.get(model_name, **kw)
    ref = model.reference
    if factor is not None:
        ref = testing.scale_block_backward(ref, "h0_Wq", factor)
    with cpu_by_phase() as cpu:
        c = time.process_time()
        result = sg.verify(model, torch_fn=ref,
                           config=VerifyConfig(samples=samples, seed=0, dtype=dtype))
        total = time.process_time() - c
    (out / f"{name}.json").write_text(json.dumps(_strip(result.as_dict()), indent=2,
                                                 sort_keys=True))
    c = time.process_time()
    text = str(result)
    text_s = time.process_time() - c
    (out / f"{name}.txt").write_text(text)
    return {"case": name, "verdict": result.verdict, "verify_cpu_s": round(total, 2),
            "text_cpu_s": round(text_s, 2), "load": os.getloadavg()[0],
            "phase_cpu_s": {k: round(v, 2) for k, v in cpu.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in a.cases:
        row = run_case(name, out)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
