"""One phase of the pipeline timed (``timings[key]``), run on the configured threads, its freed
heap and spilled pages given back at its end; with ``cfg.progress``, a bar or a line on stderr.
``symgrad.tensor.verify`` runs every phase in it (benchmarks time phases by patching its name
there, ``tensor.verify._phase``)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from .. import heap
from ..config import VerifyConfig
from ..parallel import default_threads, using
from . import device_gemm, spill


@contextmanager
def phase(what: str, cfg: VerifyConfig, timings: dict, key: str, total: int | None = None):
    """Time a phase; with ``cfg.progress``, a tqdm bar (or a line) on stderr."""
    t0 = time.perf_counter()
    bar = None
    if cfg.progress and total is not None and total > 1:
        from tqdm import tqdm
        bar = tqdm(total=total, desc=f"  {what}", file=sys.stderr, leave=False, mininterval=1.0)
    elif cfg.progress:
        print(f"  {what}…", file=sys.stderr, flush=True)

    def tick(done: int) -> None:
        if bar is not None and done > bar.n:
            bar.update(done - bar.n)  # redraws at most once a second
    try:
        with using(cfg.threads or default_threads()), device_gemm.using(cfg.oracle_products):
            yield tick
    finally:
        heap.give_back()  # the phase's freed heap blocks (a backend's gradient blocks: 0.8 GiB)
        spill.release()  # and the pages of spilled hi, lo, E it read (``tensor.spill``)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
        if bar is not None:
            bar.close()
        if cfg.progress:
            print(f"  {what}: {timings[key]:.2f} s", file=sys.stderr, flush=True)
