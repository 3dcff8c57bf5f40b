"""CPU seconds spent inside named functions during a workload, without a profiler's overhead.

cProfile charges every Python call (sympy's differentiation and assumptions are deep trees of
tiny calls), so it inflates sympy-heavy functions many times over: on the op catalogue's fast
subset it showed ``derive.gradient`` at 30.6 profiled s where the function takes ~2 CPU s.
Here each named function is wrapped with a ``time.process_time`` clock (rebound in every
``symgrad`` module that imported it by name); nested targets are each counted in full.

Usage::

    python scripts/cpu_by_function.py ops|fuzz|cnn [module:function ...]

``cnn``: a small CNN's eval-mode ``sg.verify(module=, inputs=)`` (conv, batch norm, ReLU,
max-pool: ReLU's zeros tie in the pool, ~100 reached kinks a sample), where
``tensor/sides.kink_sides`` takes most of the time.

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
    ``fuzz``: ``fuzz(1000, seed=0)``; ``cnn``: ``_cnn``) and print each target's CPU seconds
    and calls."""
    warnings.simplefilter("ignore")
    if not argv or argv[0] not in ("ops", "fuzz", "cnn"):
        raise SystemExit("cpu_by_function: the workload must be 'ops', 'fuzz' or 'cnn', e.g. "
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
    elif argv[0] == "cnn":
        print(f"verdict {_cnn()}")
    else:
        from symgrad.fuzz import fuzz
        fuzz(1000, seed=0)
    print(f"total {time.process_time() - t0:.2f} CPU s")
    for name, s in spent.most_common():
        print(f"{name:20s} {s:7.2f} s  {calls[name]} calls")
    return 0


def cnn_case() -> dict:
    """A small CNN (conv 3->8, batch norm, ReLU, 2x2 max-pool, linear) in eval mode, 4 samples
    of 3x16x16 (float64): the keywords of its ``sg.verify(module=, inputs=, targets=,
    loss=cross_entropy)`` (also ``scripts/benchmark_constant_ties.py``'s workload)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    with torch.random.fork_rng():  # torch's own initialization, seeded; the global state kept
        torch.manual_seed(0)
        cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(8 * 7 * 7, 3)).double()
        with torch.no_grad():
            cnn[1].running_mean.uniform_(-0.1, 0.1)
            cnn[1].running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64)
    return dict(module=cnn.eval(), inputs=x, targets=torch.tensor([0, 1, 2, 0]),
                loss=F.cross_entropy)


def _cnn() -> str:
    """``cnn_case`` verified; its verdict."""
    import symgrad as sg
    return sg.verify(**cnn_case()).verdict

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
