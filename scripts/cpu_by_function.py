"""CPU seconds spent inside named functions during a workload, without a profiler's overhead.

cProfile charges every Python call (sympy's differentiation and assumptions are deep trees of
tiny calls), so it inflates sympy-heavy functions many times over: on the op catalogue's fast
subset it showed ``derive.gradient`` at 30.6 profiled s where the function takes ~2 CPU s.
Here each named function is wrapped with a ``time.process_time`` clock (rebound in every
``symgrad`` module that imported it by name); nested targets are each counted in full.

Usage::

    python scripts/cpu_by_function.py ops|fuzz [module:function ...]

>>> "derive:gradient" in " ".join(TARGETS)
True
"""

from __future__ import annotations

import collections
import importlib
import sys
import time
import warnings
from typing import Callable

TARGETS = ["symgrad.tensor.derive:gradient", "symgrad.tensor.bound:evaluate_bound",
           "symgrad.tensor.limits:check_rewrite", "symgrad.tensor.views:_touching",
           "symgrad.tensor.views:oracle_view", "symgrad.tensor.kinks:oracle_program",
           "symgrad.tensor.sides:kink_sides", "symgrad.tensor.sided:sided",
           "symgrad.tensor.verify:verify_tensor"]


def _clocked(name: str, f: Callable, spent: collections.Counter,
             calls: collections.Counter) -> Callable:
    def clocked(*args, **kwargs):
        t = time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] += time.process_time() - t
            calls[name] += 1
    return clocked


def main(argv: list[str]) -> int:
    """Run ``argv[0]`` (``ops``: the op catalogue's fast subset as tests/test_opcatalog runs it;
    ``fuzz``: ``fuzz(1000, seed=0)``) and print each target's CPU seconds and calls."""
    warnings.simplefilter("ignore")
    if not argv or argv[0] not in ("ops", "fuzz"):
        raise SystemExit("cpu_by_function: the workload must be 'ops' or 'fuzz', e.g. "
                         "python scripts/cpu_by_function.py fuzz")
    importlib.import_module("symgrad.tensor.verify")
    spent: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for target in argv[1:] or TARGETS:
        module, name = target.split(":")
        f = getattr(importlib.import_module(module), name)
        g = _clocked(name, f, spent, calls)
        for m in list(sys.modules.values()):
            if getattr(m, "__name__", "").startswith("symgrad") and getattr(m, name, None) is f:
                setattr(m, name, g)
    t0 = time.process_time()
    if argv[0] == "ops":
        from symgrad.opcatalog.run import OpsConfig, run_ops
        sys.path.insert(0, "tests")
        from test_opcatalog import FAST
        run_ops(OpsConfig(ops=FAST, dtypes=("float64", "float32"), budget=10, gradcheck=False))
    else:
        from symgrad.fuzz import fuzz
        fuzz(1000, seed=0)
    print(f"total {time.process_time() - t0:.2f} CPU s")
    for name, s in spent.most_common():
        print(f"{name:20s} {s:7.2f} s  {calls[name]} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
