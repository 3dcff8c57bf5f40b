"""The bound phase alone: ``entry_bounds`` of a GPT (as ``sg.verify``'s bound phase forms it:
float64 samples, seed 0, the default tolerance, the float64 tie band) in this process; prints
one JSON line: the sha1 of E (12 hex digits: two trees agree bit for bit when these do), the
phase's user and system CPU seconds and minor page faults, the load average, the process's max
RSS. ``--heap kept`` (the default, as the ``symgrad`` program runs: ``symgrad.heap``) keeps
freed arrays in the heap for reuse; ``--heap system`` leaves glibc's defaults.

Run it in each tree, alternating, to compare them in one load window (reports/benchmarks.md,
"The bound's cost")::

    PYTHONPATH=TREE python scripts/benchmark_bound.py gpt2 '{"n_layers": 2, "vocab_size": 4096}' 64
    PYTHONPATH=TREE python scripts/benchmark_bound.py tiny_gpt '{}' 0 --samples 8

>>> sorted(measure("tiny_gpt", {"n_layers": 1}, None, samples=1))[:3]
['E_sha1', 'entries', 'load']
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import time

import numpy as np

try:
    from symgrad import heap
except ImportError:  # a tree from before symgrad.heap (run against it for a comparison)
    heap = None
from symgrad.config import VerifyConfig
from symgrad.tensor.verify import entry_bounds
from symgrad.zoo import get


def measure(name: str, config: dict, tokens: int | None, *, samples: int = 1) -> dict:
    """E of zoo model ``name`` (``config``, ``tokens``) at ``samples`` drawn samples.

    Arguments:
        name: a zoo tensor model ("gpt2", "tiny_gpt").
        config: its config overrides.
        tokens: its sequence length (None: the model's default).
        samples: samples drawn (seed 0).
    Returns:
        {"E_sha1", "entries", "load", "user_s", "sys_s", "minflt", "wall_s", "maxrss_gib"}."""
    model = get(name, config=config or None, tokens=tokens)
    values = model.draw(samples, np.random.default_rng(0), "float64")
    tol = VerifyConfig().tolerance
    _ = model.gradient  # derived before the clock starts
    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    E = entry_bounds(model, values, tol, samples, dtypes=("float64",))
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - w0
    return {"E_sha1": hashlib.sha1(np.ascontiguousarray(E).tobytes()).hexdigest()[:12],
            "entries": int(E.size), "load": os.getloadavg()[0],
            "user_s": round(r1.ru_utime - r0.ru_utime, 2),
            "sys_s": round(r1.ru_stime - r0.ru_stime, 2),
            "minflt": r1.ru_minflt - r0.ru_minflt, "wall_s": round(wall, 2),
            "maxrss_gib": round(r1.ru_maxrss / 2**20, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=["gpt2", "tiny_gpt"])
    ap.add_argument("config", nargs="?", default="{}", help="config overrides as JSON")
    ap.add_argument("tokens", nargs="?", type=int, default=0, help="0: the model's default")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--heap", choices=["kept", "system"], default="kept",
                    help="kept: freed arrays reused (as the symgrad program); system: glibc's")
    a = ap.parse_args()
    kept = heap.keep_freed() if a.heap == "kept" and heap is not None else False
    print(json.dumps({**measure(a.model, json.loads(a.config), a.tokens or None,
                                samples=a.samples), "heap": "kept" if kept else "system"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
