"""Second-order table: planted double-backward bugs and correct code on the neuron, simplenet
and tiny_gpt, checked by ``sg.verify(model, order=2)`` (exact Hessian-vector products against
torch's double backward) and by ``torch.autograd.gradgradcheck`` (finite differences of the
backward, its defaults), side by side in one run. Writes reports/second_order.md and .json.

    python scripts/second_order.py [--samples 40] [--out reports]

gradgradcheck runs per sample on the function of the parameters with that sample's inputs
fixed (the first ``--gg-samples`` samples symgrad checked; any failure is a fail), in float64
and in float32 (where it runs at all: float32 finite differences at its default eps = 1e-6).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad import hvp_mutants, zoo  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402
from tests.test_hvp import (MUTANTS, _gelu_mutant, _log1p_mutant, _near_zero,  # noqa: E402
                            _relu_max, neuron_fn, neuron_prod_fn, simplenet_fn)

GPT = {"vocab_size": 8, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1}
# gradgradcheck's cost grows with the square of its inputs: on tiny_gpt it differentiates
# with respect to these blocks only (the rest held fixed; symgrad checks every block)
GG_PARAMS = {"tiny_gpt": ["h0_b1", "lnf_g", "out_head"]}
PROD_LINEAR = (F, "linear", lambda orig, *a: hvp_mutants.prod_linear(*a))


def cases(samples: int) -> list[dict]:
    """Each case: model, torch_fn (None: symgrad's own torch program), what is expected
    (``bug``: a planted or known-wrong double backward; ``ok``: correct code), at= (None:
    ``samples`` random draws)."""
    neuron, net = zoo.get("neuron"), zoo.get("simplenet")
    gpt = zoo.get("tiny_gpt", config=GPT, tokens=4)
    relu, relu_fn = _relu_max()
    kink = {"w": np.array([1.0, 0.5, 0.0]), "b": np.array([-1.0, 0.5, 0.0]),
            "x": np.array([1.0, 1.5, 0.25])}
    out = []
    for name, model, fn, mutate in (("neuron", neuron, neuron_fn, _log1p_mutant),
                                    ("simplenet", net, simplenet_fn, _log1p_mutant),
                                    ("tiny_gpt", gpt, gpt.reference, _gelu_mutant)):
        n = 2 if name == "tiny_gpt" else samples
        out.append(dict(model=model, case="symgrad's own torch program", fn=None, expect="ok",
                        n=n))
        out.append(dict(model=model, case="correct torch code", fn=fn, expect="ok", n=n))
        out.append(dict(model=model, case="detached f' in a custom Function's backward",
                        fn=mutate(fn, MUTANTS["detached"]), expect="bug", n=n))
        out.append(dict(model=model, case="f'' x (1 + 1e-10) (f' through ScaleBackward)",
                        fn=mutate(fn, MUTANTS["scaled"]), expect="bug", n=n))
        prod = (neuron_prod_fn if name == "neuron" else hvp_mutants.patched(fn, *PROD_LINEAR))
        near = _near_zero(model, min(n, 10), 0)
        out.append(dict(model=model, case="torch.prod near a zero entry", fn=prod,
                        expect="bug", at=near))
        out.append(dict(model=model, case="plain product at the same near-zero points", fn=fn,
                        expect="ok", at=near))
    out.append(dict(model=neuron, case="nn.BCELoss (the native reference)",
                    fn=neuron.reference, expect="bug", n=samples))
    out.append(dict(model=relu, case="relu / max away from kinks", fn=relu_fn, expect="ok",
                    n=samples))
    out.append(dict(model=relu, case="relu / max at kinks (z = 0, w = b, w = 0)", fn=relu_fn,
                    expect="ok", at=kink))
    return out


def symgrad_check(c: dict, dtype: str) -> dict:
    t0 = time.perf_counter()
    r = sg.verify(c["model"], torch_fn=c["fn"], order=2, samples=c.get("n", 1), seed=0,
                  dtype=dtype, at=c.get("at"))
    seconds = time.perf_counter() - t0
    first = r.failures[0].message() if r.failures else ""
    return {"verdict": r.verdict, "seconds": round(seconds, 2), "first": first[:300],
            "samples": len(r.oracle_samples)}


def _points(c: dict, k: int) -> list[dict]:
    """The first k samples symgrad checks (the same seeded draw, or the given at=)."""
    model = c["model"]
    if c.get("at") is not None:
        values = {k2: np.asarray(v) for k2, v in c["at"].items()}
    else:
        values = model.draw(c.get("n", 1), np.random.default_rng(0), "float64")
    n = next(iter(values.values())).shape[0]
    return [{b: values[b][i] for b in values} for i in range(min(k, n))]


def gradgradcheck(c: dict, dtype: str, k: int) -> dict:
    """torch.autograd.gradgradcheck (defaults) of the torch code on each of k samples."""
    model = c["model"]
    fn = c["fn"] or _own(model)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    params = GG_PARAMS.get(model.name) or [b.name for b in model.param_blocks]
    t0 = time.perf_counter()
    verdict = "pass"
    try:
        for point in _points(c, k):
            fixed = {b.name: torch.tensor(point[b.name], dtype=torch.long
                                          if b.domain.integer else tdtype)
                     for b in model.blocks if b.name not in params}
            ps = tuple(torch.tensor(point[p], dtype=tdtype, requires_grad=True)
                       for p in params)

            def loss(*args, fixed=fixed):
                return fn(**dict(zip(params, args)), **fixed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ok = torch.autograd.gradgradcheck(loss, ps, raise_exception=False)
            if not ok:
                verdict = "fail"
                break
    except Exception as exc:  # gradgradcheck refuses some inputs (e.g. float32 precision)
        verdict = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return {"verdict": verdict, "seconds": round(time.perf_counter() - t0, 2)}


def _own(model):
    """symgrad's own torch program of a model (a plain model as its tensor program) as a
    per-sample torch function, through the tensor interpreter."""
    from symgrad.tensor.interpret import evaluate
    from symgrad.tensor.tables import TorchOps
    from symgrad.verify import as_program
    program = as_program(model)

    def tensor_fn(**blocks):
        leaves = {k: v[None] for k, v in blocks.items()}
        table = TorchOps("float64" if next(iter(blocks.values())).dtype == torch.float64
                         else "float32", "cpu")
        return evaluate([program.loss], table, leaves)[0][0]
    return tensor_fn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--gg-samples", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite second_order.md from the existing second_order.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.markdown_only:
        write_text(out / "second_order.md",
                   markdown(json.loads((out / "second_order.json").read_text())))
        return 0
    rows = []
    for c in cases(args.samples):
        row = {"model": c["model"].name, "case": c["case"], "expected": c["expect"]}
        for dtype in ("float64", "float32"):
            row[f"symgrad {dtype}"] = symgrad_check(c, dtype)
            k = 1 if c["model"].name == "tiny_gpt" else args.gg_samples
            row[f"gradgradcheck {dtype}"] = gradgradcheck(c, dtype, k)
        rows.append(row)
        print(f"{row['model']:10s} {row['case'][:50]:50s} "
              + " ".join(f"{k}={v['verdict'][:12]}" for k, v in row.items()
                         if isinstance(v, dict)), file=sys.stderr)
    doc = {"torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "samples": args.samples,
           "gradgradcheck_samples": args.gg_samples, "rows": rows}
    write_text(out / "second_order.json", json.dumps(doc, indent=2) + "\n")
    write_text(out / "second_order.md", markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    lines = [
        "# Second order: symgrad `order=2` against `torch.autograd.gradgradcheck`", "",
        f"torch {doc['torch']}, Python {doc['python']}, {doc['machine']}; written by "
        "`python scripts/second_order.py`. symgrad compares torch's double backward "
        "(a Hessian-vector product along a random v per sample) with the exact HVP in ULPs "
        f"({doc['samples']} samples; tiny_gpt {json.dumps(GPT)} at 4 tokens: 2; "
        "the near-zero prod rows at most 10, every "
        "fourth parameter entry scaled by 1e-7); gradgradcheck (its defaults) runs on the first "
        f"{doc['gradgradcheck_samples']} of the same samples (tiny_gpt: 1, with respect to "
        f"{', '.join(GG_PARAMS['tiny_gpt'])} only: its cost grows with the square of the "
        "entries). `bug`: the torch "
        "code's double backward is wrong (planted, or a torch finding); `ok`: correct code. "
        "A verdict in **bold** misses: a bug not failed, or correct code failed. A scale of "
        "1e-10 is far below float32's resolution (~1e-6 relative): no float32 check can see "
        "it; gradgradcheck's float32 finite differences fail correct code too.", "",
        "| model | case | expected | symgrad f64 | s | symgrad f32 | s | gradgradcheck f64 | s "
        "| gradgradcheck f32 | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        cells = []
        for key in ("symgrad float64", "symgrad float32", "gradgradcheck float64",
                    "gradgradcheck float32"):
            v = r[key]["verdict"]
            miss = (r["expected"] == "bug" and v != "fail") or (r["expected"] == "ok"
                                                                 and v == "fail")
            cells += [f"**{v}**" if miss else v, f"{r[key]['seconds']:.2f}"]
        lines.append(f"| {r['model']} | {r['case']} | {r['expected']} | " + " | ".join(cells)
                     + " |")
    lines += ["", "First symgrad message per failing float64 row:", ""]
    for r in doc["rows"]:
        first = r["symgrad float64"]["first"]
        if first:
            lines.append(f"- {r['model']}, {r['case']}: {first}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
