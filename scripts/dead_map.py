"""Which symgrad functions each public entry runs: the dynamic half of the scalar side's
deletion plan (issue 17).

Every public entry (``sg.verify`` on plain models, a tensor model, ``at=``, ``order=2``,
``module=`` by parameter name and with ``inputs=``; ``sg.explain``; ``sg.exact_at``;
``exact_steps``; ``sg.gradcheck``; ``symgrad.testing``; the pytest fixture; the CLI's verify,
report, ops, fuzz and explain) is called once on small models (neuron, simplenet, a scalar GPT
block, tiny_gpt at a one-layer config) under a ``sys.settrace`` hook that records every symgrad
code object that starts (the hook returns None: no line tracing, one call per new frame). Run it
once per pipeline and compare:

    SYMGRAD_PIPELINE=program python scripts/dead_map.py --out /tmp/program.json
    SYMGRAD_PIPELINE=scalar  python scripts/dead_map.py --out /tmp/scalar.json
    python scripts/dead_map_table.py /tmp/program.json /tmp/scalar.json

Arguments (command line):
    --out: JSON file: {"pipeline", "entries": {entry: {"seconds", "error", "functions":
        ["path:firstline:qualname", ...]}}, "imported": [modules loaded by ``import symgrad``
        and the tools]}.
    --only: entry names separated by ";" (default: all).
    --fresh: each entry in its own process (no cache of an earlier entry hides a call).
Returns:
    exit 0; entries that raise are recorded with their error, not fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import sympy as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PKG = str(ROOT / "symgrad") + os.sep

import symgrad as sg  # noqa: E402
import symgrad.cli  # noqa: E402,F401
import symgrad.pytest_plugin  # noqa: E402,F401
import symgrad.testing  # noqa: E402,F401
from symgrad import zoo  # noqa: E402
from symgrad.cli import main as cli  # noqa: E402
from symgrad.verify import exact_steps  # noqa: E402

NEURON_AT = {"x": 1.1, "w": 2.2, "b": 0.0, "y": 1.0}
SMALL_GPT = {"vocab_size": 6, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
             "drop_rate": 0.1, "qkv_bias": False}
TMP = Path(tempfile.mkdtemp(prefix="dead_map_"))


def _quiet(fn):
    """Run ``fn`` with stdout/stderr swallowed (the CLI prints pages)."""
    def run():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return fn()
    return run


def _tiny():
    return zoo.get("tiny_gpt", config=SMALL_GPT)


def _module_gpt():
    from tests.gptmodels import book
    torch.manual_seed(0)
    module = book.GPTModel(SMALL_GPT).double()
    return sg.verify(_tiny(), module=module, samples=2, seed=0)


def _module_scalar_gpt():
    from tests.gptmodels import book
    from symgrad.zoo import gpt
    torch.manual_seed(0)
    module = book.GPTModel(SMALL_GPT).double()
    return sg.verify(gpt.tiny_gpt(SMALL_GPT), module=module, samples=2, seed=0)


def _any_module():
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 2, (4,), generator=gen)
    return sg.verify(module=lin, inputs=x, targets=y,
                     loss=torch.nn.functional.cross_entropy)


def _neuron_fn():
    m = zoo.get("neuron")
    return sg.verify(m, torch_fn=m.reference, samples=30, seed=0) if m.reference else \
        sg.verify(m, samples=30, seed=0)


def _explain(name, at=None, **kw):
    def run():
        e = sg.explain(zoo.get(name, **kw), at=at)
        return e.markdown(), e.latex(), e.html()
    return run


def _gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, dtype=torch.float64, generator=gen, requires_grad=True)
    return sg.gradcheck(lambda t: torch.tanh(t).sum(), (x,)), \
        sg.gradgradcheck(lambda t: torch.tanh(t).sum(), (x,))


def _testing():
    w, x = sp.symbols("w x")
    model = sg.Model("tanh", sp.tanh(w * x), params=[w], inputs={x: sg.Uniform(-2, 2)})
    symgrad.testing.assert_gradients_match(model, torch_fn=lambda w, x: torch.tanh(w * x),
                                           max_examples=5)
    return True


def _fixture():
    fixture = symgrad.pytest_plugin.AssertGradients()
    w, x = sp.symbols("w x")
    model = sg.Model("sin", sp.sin(w * x), params=[w], inputs={x: sg.Uniform(-2, 2)})
    fixture(model, torch_fn=lambda w, x: torch.sin(w * x), max_examples=3)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, dtype=torch.float64, generator=gen, requires_grad=True)
    return fixture.gradcheck(lambda t: (t * t).sum(), (x0,))


ENTRIES = {
    "verify neuron": lambda: sg.verify(zoo.get("neuron"), samples=30, seed=0),
    "verify neuron torch_fn": _neuron_fn,
    "verify neuron at=": lambda: sg.verify(zoo.get("neuron"),
                                           at={k: np.array([v]) for k, v in NEURON_AT.items()}),
    "verify simplenet": lambda: sg.verify(zoo.get("simplenet"),
                                          torch_fn=zoo.get("simplenet").reference,
                                          samples=20, seed=0),
    "verify gpt_softmax (scalar GPT block)": lambda: sg.verify(zoo.get("gpt_softmax"),
                                                               samples=10, seed=0),
    "verify tiny_gpt": lambda: sg.verify(_tiny(), samples=2, seed=0),
    "verify neuron order=2": lambda: sg.verify(zoo.get("neuron"), samples=10, seed=0, order=2),
    "verify simplenet order=2": lambda: sg.verify(zoo.get("simplenet"), samples=5, seed=0,
                                                  order=2),
    "verify tiny_gpt module= (book)": _module_gpt,
    "verify scalar tiny_gpt module= (book)": _module_scalar_gpt,
    "verify module= inputs= (Linear)": _any_module,
    "explain neuron": _explain("neuron"),
    "explain neuron at=": _explain("neuron", at=NEURON_AT),
    "explain simplenet": _explain("simplenet"),
    "explain tiny_gpt": _explain("tiny_gpt", config=SMALL_GPT),
    "exact_at neuron": lambda: sg.exact_at(zoo.get("neuron"), NEURON_AT),
    "exact_steps neuron": lambda: exact_steps(zoo.get("neuron"), NEURON_AT),
    "gradcheck": _gradcheck,
    "testing.assert_gradients_match": _testing,
    "pytest fixture": _fixture,
    "cli verify simplenet": _quiet(lambda: cli(["verify", "simplenet", "--samples", "20"])),
    "cli report neuron": _quiet(lambda: cli(["report", "neuron", "--samples", "20",
                                             "--out", str(TMP / "report")])),
    "cli ops relu exp": _quiet(lambda: cli(["ops", "--ops", "relu,exp", "--budget", "4",
                                            "--out", str(TMP / "ops")])),
    "cli fuzz": _quiet(lambda: cli(["fuzz", "--budget", "8", "--samples", "5"])),
    "cli explain neuron --at": _quiet(lambda: cli(["explain", "neuron", "--at",
                                                   "x=1.1,w=2.2,b=0,y=1"])),
}


def trace(fn) -> tuple[set[str], float, str | None]:
    """The symgrad code objects ``fn`` starts, its wall time and its error (or None)."""
    seen: dict = {}

    def hook(frame, event, arg):
        code = frame.f_code
        if code not in seen:
            seen[code] = code.co_filename.startswith(PKG)
        return None

    sys.settrace(hook)
    threading.settrace(hook)
    t0, error = time.perf_counter(), None
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - recorded, the map goes on
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        sys.settrace(None)
        threading.settrace(None)
    names = {f"{Path(c.co_filename).relative_to(ROOT)}:{c.co_firstlineno}:{c.co_qualname}"
             for c, ours in seen.items() if ours}
    return names, time.perf_counter() - t0, error


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--only", default=None)
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args()
    chosen = args.only.split(";") if args.only else list(ENTRIES)
    out = {"pipeline": os.environ.get("SYMGRAD_PIPELINE", "(default)"), "entries": {},
           "imported": sorted(m for m in sys.modules if m.split(".")[0] == "symgrad")}
    if args.fresh:
        for name in chosen:
            one = TMP / "one.json"
            subprocess.run([sys.executable, __file__, "--out", str(one), "--only", name],
                           check=True)
            out["entries"].update(json.loads(one.read_text())["entries"])
            Path(args.out).write_text(json.dumps(out, indent=1))
        return 0
    for name in chosen:
        names, seconds, error = trace(ENTRIES[name])
        out["entries"][name] = {"seconds": round(seconds, 2), "error": error,
                                "functions": sorted(names)}
        print(f"{name:45s} {seconds:7.1f} s {len(names):5d} functions"
              f"{'  ERROR ' + error if error else ''}", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
