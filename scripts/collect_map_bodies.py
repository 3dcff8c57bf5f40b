"""Every map body whose local derivative ``tensor/derive`` takes, over the fuzz, the op
catalogue's fast subset and the zoo: the data of ``tests/test_localdiff.py``.

Each body is written once, as ``sympy.srepr``, with the arguments it is differentiated by
(``derive._local``'s ``i``), one line each: ``i,j,...<TAB>srepr``, gzip-compressed. The
workloads are the ones ``scripts/cpu_by_function.py`` times: ``fuzz(1000, seed=0)`` (as
``tests/test_fuzz.py``), the op catalogue's fast subset at float64 and float32 (as
``tests/test_opcatalog.py``), and every zoo model's program (its textbook and written
programs too), their sided programs, and their HVP programs (``tiny_gpt``: first order only).

Usage::

    python scripts/collect_map_bodies.py [--out tests/data/map_bodies.txt.gz] [fuzz ops zoo]

>>> _line("Symbol('x0', real=True)", {2, 0}).split(SEP)
['0,2', "Symbol('x0', real=True)"]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import warnings
from pathlib import Path

import sympy as sp

import symgrad.tensor.derive as derive
from symgrad import zoo
from symgrad.hvp import _tensor_hvp
from symgrad.tensor.sided import has_sites, sided
from symgrad.verify import as_program

SEP = "\t"  # between a line's argument indices and its body
FOUND: dict = {}  # body -> the argument indices it is differentiated by


def _recording(local):
    def recorded(expr, i, k):
        FOUND.setdefault(expr, set()).add(i)
        return local(expr, i, k)
    return recorded


def _zoo() -> None:
    for name in zoo.names():
        m = as_program(zoo.get(name))
        programs = [m, getattr(m, "textbook_program", None), getattr(m, "written_program", None)]
        if name != "tiny_gpt":
            programs.append(_tensor_hvp(m)[0])
        for p in programs:
            if p is None:
                continue
            p.gradient
            if has_sites(p):
                sided(p).gradient


def _workload(name: str) -> None:
    if name == "fuzz":
        from symgrad.fuzz import fuzz
        fuzz(1000, seed=0)
    elif name == "ops":
        from symgrad.opcatalog.run import OpsConfig, run_ops
        sys.path.insert(0, "tests")
        from test_opcatalog import FAST
        run_ops(OpsConfig(ops=FAST, dtypes=("float64", "float32"), budget=10, gradcheck=False))
    elif name == "zoo":
        _zoo()
    else:
        raise SystemExit(f"collect_map_bodies: unknown workload {name!r}; give fuzz, ops or zoo")


def _line(srepr: str, args: set) -> str:
    return ",".join(str(i) for i in sorted(args)) + SEP + srepr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", default=["fuzz", "ops", "zoo"])
    ap.add_argument("--out", default="tests/data/map_bodies.txt.gz")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    derive._local = _recording(derive._local)
    for w in args.workloads:
        _workload(w)
        derive._LOCAL.clear()  # the next workload's bodies are each asked for again
        print(f"{w}: {len(FOUND)} bodies so far", flush=True)
    lines = sorted(_line(sp.srepr(e), a) for e, a in FOUND.items())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.out, "wb", mtime=0) as f:  # the same bodies, the same bytes
        f.write(("\n".join(lines) + "\n").encode())
    print(f"{len(lines)} bodies, {sum(len(a) for a in FOUND.values())} derivatives -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
