"""The compare phase of a gpt2 verify replayed on saved arrays, old and new tree side by side:
``--dump DIR`` runs ``sg.verify`` of gpt2 (float64, 1 sample, seed 0, the native module as
torch_fn) once and saves what each backend's compare reads (the oracle's hi and lo, each
backend's gradient and E, its statuses before the block tests, the blocks); ``--replay DIR
--trees A B`` then runs, in one process per tree and in turn, each backend's
``compare_compact`` (deferred, the summary's scan fed), ``block_tests``, the finding lists'
entries (``worst_entries`` per status) and ``Scan.finish``, with CPU seconds (user + system,
every thread) and system seconds per step, and a digest of every status, block finding, list
and figure: two trees must print the same digest. No oracle or bound is run again, so an
iteration costs the compare's seconds only (GPT-2 at 1 layer: ~20 CPU s, ~2.1 GB on disk).

Usage::

    PYTHONPATH=. python scripts/replay_compare.py --dump /tmp/d1 --layers 1 --tokens 64
    python scripts/replay_compare.py --replay /tmp/d1 --trees /work/main . --repeat 2

>>> _row({"compare": 1.0, "blocks": 0.5}, {"compare": 0.2, "blocks": 0.1}, "abc")
'compare 1.00 (sys 0.20), blocks 0.50 (sys 0.10), total 1.50 CPU s, digest abc'
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def dump(out: str, layers: int, tokens: int) -> None:
    """Run the verify once, saving each compare's inputs into ``out``."""
    import pickle

    import numpy as np

    import symgrad as sg
    import symgrad.tensor.verify as tv
    from symgrad.config import VerifyConfig
    from symgrad.zoo.gpt2 import gpt2

    os.makedirs(out, exist_ok=True)
    real_compare, real_blocks, k = tv.compare_compact, tv.block_tests, [0]

    def compare(hi, lo, got, E, **kw):
        if k[0] == 0:
            np.save(f"{out}/hi.npy", np.asarray(hi))
            np.save(f"{out}/lo.npy", np.asarray(lo))
        np.save(f"{out}/got{k[0]}.npy", np.asarray(got))
        np.save(f"{out}/E{k[0]}.npy", np.asarray(E))
        return real_compare(hi, lo, got, E, **kw)

    def blocks(comp, hi, lo, E, blocks, tol, **kw):
        np.save(f"{out}/status{k[0]}.npy", np.asarray(comp.status))
        with open(f"{out}/blocks{k[0]}.pkl", "wb") as f:
            pickle.dump((blocks, tol, kw, comp.backend, comp.dtype), f)
        k[0] += 1
        return real_blocks(comp, hi, lo, E, blocks, tol, **kw)
    tv.compare_compact, tv.block_tests = compare, blocks
    model = gpt2({"n_layers": layers}, tokens=tokens)
    sg.verify(model, torch_fn=model.reference,
              config=VerifyConfig(samples=1, seed=0, dtype="float64"))
    print(f"{k[0]} backends saved in {out}")


def replay(data: str, threads: int) -> str:
    """One replay of every saved backend in this process (the tree on ``PYTHONPATH``)."""
    import glob
    import hashlib
    import pickle
    import resource
    import time

    import numpy as np

    from symgrad.compare import FAILING, INCONCLUSIVE, KINK, LOSS
    from symgrad.measures import summary_scan
    from symgrad.figure_scan import deferred_reader
    from symgrad.parallel import using
    from symgrad.tensor.comparing import block_tests, compare_compact
    from symgrad.tensor.streaming import worst_entries

    hi = np.load(f"{data}/hi.npy", mmap_mode="r")
    lo = np.load(f"{data}/lo.npy", mmap_mode="r")
    digest, cpu, system = hashlib.sha1(), {}, {}

    def timed(key, f):
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        out = f()
        cpu[key] = cpu.get(key, 0.0) + time.process_time() - c0
        system[key] = (system.get(key, 0.0)
                       + resource.getrusage(resource.RUSAGE_SELF).ru_stime - r0.ru_stime)
        return out
    lists = (((KINK,), 10), (FAILING, 10), ((LOSS,), 10), ((INCONCLUSIVE,), 3))
    with using(threads):
        for i in range(len(glob.glob(f"{data}/got*.npy"))):
            got = np.load(f"{data}/got{i}.npy")
            E = np.load(f"{data}/E{i}.npy", mmap_mode="r")
            with open(f"{data}/blocks{i}.pkl", "rb") as f:
                blocks, tol, kw, backend, dtype = pickle.load(f)
            comp = timed("compare", lambda: compare_compact(
                hi, lo, got, E, backend=backend, dtype=dtype, tol=tol, deferred=True,
                scan=summary_scan(got.shape, blocks)))
            if not np.array_equal(comp.status, np.load(f"{data}/status{i}.npy")):
                raise SystemExit("the statuses differ from the run's before its block tests")
            comp = timed("blocks", lambda: block_tests(comp, hi, lo, E, blocks, tol, **kw))
            digest.update(comp.status.tobytes())
            digest.update(repr(comp.systematic).encode())
            found = timed("findings", lambda: [worst_entries(comp, c, n) for c, n in lists])
            digest.update(repr([f.tolist() for f in found]).encode())
            figures = timed("finish", lambda: comp.figures.scan.finish(
                comp.status, deferred_reader(comp, tol)))
            digest.update(repr(sorted((repr(k), repr(v)) for k, v in figures.items())).encode())
            del got, E, comp
    return _row(cpu, system, digest.hexdigest()[:12])


def _row(cpu: dict, system: dict, digest: str) -> str:
    """One replay's line: CPU and system seconds per step, their total, the digest."""
    steps = ", ".join(f"{k} {v:.2f} (sys {system[k]:.2f})" for k, v in cpu.items())
    return f"{steps}, total {sum(cpu.values()):.2f} CPU s, digest {digest}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", help="save a run's compare inputs here")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--replay", help="replay the inputs saved here")
    ap.add_argument("--trees", nargs="+", default=["."], help="trees, one process each")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the trees in turn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.dump:
        dump(a.dump, a.layers, a.tokens)
    elif a.child:
        print(replay(a.replay, a.threads))
    elif a.replay:
        for _ in range(a.repeat):
            for tree in a.trees:
                load = os.getloadavg()[0]
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--replay", a.replay, "--threads",
                     str(a.threads)], stdout=subprocess.PIPE, text=True, check=True,
                    env={**os.environ, "PYTHONPATH": os.path.abspath(tree)}).stdout
                print(f"{tree} (load {load:.1f}): {out.strip().splitlines()[-1]}", flush=True)
    else:
        ap.error("give --dump DIR or --replay DIR")


if __name__ == "__main__":
    main()
