"""The bound's fused passes (``symgrad/tensor/fused.py``) against the numpy steps they replace,
side by side in one process at GPT-2's 64-token shapes: CPU ms per call (min of ``--repeat``,
the two alternating), and whether the bits agree. Prints one JSON line per case.

    PYTHONPATH=. python scripts/benchmark_fused_bound.py --repeat 20

The numpy sigma steps here copy each quadrature first (``root_or_linear`` roots it in place;
the rule's is a fresh GEMM output): ``copies_ms`` is those copies alone.

>>> sorted(measure("E, 2 terms", (1, 8, 8), 2)[0])
['fused_ms', 'numpy_ms', 'same_bits']
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from symgrad.tensor import fused
from symgrad.tensor.mapbound import _quadrature
from symgrad.tensor.operands import plus, times
from symgrad.tensor.ownround import with_value
from symgrad.tensor.quadrature import root_or_linear


def _e_numpy(A, a, terms, v, b):
    total = times(A, a)
    for t in terms:
        total = plus(total, t)
    return with_value(total, b, v)


def _s_numpy(A, a, quads, v, b):
    total = times(A, a)
    for quad in quads:
        total = plus(total, root_or_linear(quad.copy(), lambda: None))
    return with_value(total, b, v)


def _pair_numpy(out, m, extra, E, S):
    np.add(out[0], extra, out=E)
    np.add(_quadrature(out[1], (out[q] - out[1] for q in range(2, m + 2))), extra, out=S)
    for x in (E, S):
        np.copyto(x, np.inf, where=np.isnan(x))


def _cpu_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1e3


def measure(case: str, shape: tuple, repeat: int) -> tuple[dict, dict]:
    """(``{"numpy_ms", "fused_ms", "same_bits"}``, the case's description) of one case."""
    rng = np.random.default_rng(0)
    pos = lambda: np.abs(rng.standard_normal(shape))  # noqa: E731
    v = rng.standard_normal(shape)
    extra: dict = {}
    if case.startswith("E"):
        A, terms = pos(), [pos(), pos()]
        old = lambda: _e_numpy(A, 31.0, terms, v, 0.0)  # noqa: E731
        new = lambda: fused.einsum_total(A, 31.0, terms, v, 0.0)  # noqa: E731
    elif case.startswith("sigma"):
        A, quads = pos(), [pos(), pos()]
        old = lambda: _s_numpy(A, 5.7, quads, v, 0.0)  # noqa: E731
        extra["copies_ms"] = round(_cpu_ms(lambda: [q.copy() for q in quads], repeat), 3)
        new = lambda: fused.einsum_total(A, 5.7, quads, v, 0.0, quads=True)  # noqa: E731
    elif case.startswith("map"):
        m = 3
        out = np.abs(rng.standard_normal((m + 2,) + shape))
        extra = pos()
        E1, S1, E2, S2 = (np.empty(shape) for _ in range(4))

        def old():
            _pair_numpy(out, m, extra, E1, S1)
            return S1

        def new():
            fused.map_pair(out, m, extra, E2, S2)
            return S2
    else:  # "live": a leaf's broadcast zero E
        z = np.broadcast_to(np.zeros(()), shape)
        old = lambda: np.any(z)  # noqa: E731
        new = lambda: fused.live(z)  # noqa: E731
    new()  # compiled / loaded before the clock
    same = np.asarray(old()).tobytes() == np.asarray(new()).tobytes()
    o = n = float("inf")
    for _ in range(2):  # alternating
        o = min(o, _cpu_ms(old, repeat))
        n = min(n, _cpu_ms(new, repeat))
    return {"numpy_ms": round(o, 3), "fused_ms": round(n, 3), "same_bits": same, **extra}, {
        "case": case, "shape": list(shape)}


CASES = [("E, 2 terms", (1, 768, 3072)), ("sigma, 2 terms", (1, 768, 3072)),
         ("E, 2 terms", (1, 768, 768)), ("sigma, 2 terms", (1, 768, 768)),
         ("map block, 3 sigmas", (1, 64, 3072)), ("live, broadcast 0", (1, 50257, 768))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    for case, shape in CASES:
        got, about = measure(case, shape, a.repeat)
        print(json.dumps({**about, **got}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
