"""What str(result) and the JSON (``as_dict``) of a large result that is not streamed cost
after the run (issue 19: "the text output must not lag the JSON"): CPU seconds
(``time.process_time``) and the process's peak resident set before and after each, on
gpt2 {n_layers 1, vocab_size 4096} at 16 tokens, one sample (14,164,993 entries a backend,
below STREAM_FROM). Each figure is asked of a fresh copy of the result (nothing memoised).

Usage: PYTHONPATH=. python scripts/benchmark_text_cost.py [OUT.json]

>>> callable(main)
True
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time

import symgrad as sg
from symgrad.zoo.gpt2 import gpt2


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    t = time.process_time()
    r = sg.verify(gpt2({"n_layers": 1, "vocab_size": 4096}, tokens=16), samples=1)
    doc = {"entries": {n: int(c.status.size) for n, c in r.comparisons.items()},
           "verify_cpu_s": time.process_time() - t, "peak_gib_after_verify": _peak_gib(),
           "load_start": os.getloadavg()[0]}
    for what, ask in (("str", str), ("as_dict", lambda x: x.as_dict())):
        fresh = dataclasses.replace(r)  # nothing memoised
        t = time.process_time()
        ask(fresh)
        doc[f"{what}_cpu_s"] = time.process_time() - t
        doc[f"peak_gib_after_{what}"] = _peak_gib()
        del fresh
    doc["load_end"] = os.getloadavg()[0]
    text = json.dumps(doc, indent=1)
    print(text)
    if argv:
        with open(argv[0], "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
