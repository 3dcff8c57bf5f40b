"""Benchmarks, measured side by side in one run; writes reports/benchmarks_blocks.md and .json
(the GPT cost-against-size table is scripts/benchmark_tensor.py -> reports/benchmarks.md).

For each model: program size; derive + compile time of symgrad vs naive ``sympy.diff`` per
parameter on the expanded tree (in a subprocess, capped); gradient throughput of the numpy
program vs torch ``vmap(grad)`` of the native reference and symgrad's batched-autograd torch
program on the same batch; cost per verified sample vs ``torch.autograd.gradcheck`` per sample.

    python scripts/benchmark.py                 # every model below (tiny_gpt takes minutes)
    python scripts/benchmark.py --quick         # without tiny_gpt
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import symgrad as sg
from symgrad import zoo
from symgrad.backends import numpy as np_backend
from symgrad.backends import torch as torch_backend
from symgrad.report.atomic import write_text
from symgrad.verify import draw, derive

MODELS = ["neuron", "simplenet", "gpt_embedding", "gpt_layer_norm", "gpt_gelu_tanh",
          "gpt_gelu_erf", "gpt_softmax", "gpt_attention", "gpt_dropout", "gpt_feed_forward",
          "gpt_cross_entropy", "tiny_gpt"]
BATCH = 1000


def scalar_model(name: str):
    """The scalar program of a model (this benchmark measures the scalar pipeline; the zoo's
    tiny_gpt is a tensor program, benchmarked by scripts/benchmark_tensor.py): tiny_gpt from
    its independent scalar builder."""
    from symgrad.zoo import gpt
    return gpt.tiny_gpt() if name == "tiny_gpt" else zoo.get(name)


def _naive(name: str, q) -> None:
    from symgrad.derive import naive_gradient
    t0 = time.perf_counter()
    naive_gradient(scalar_model(name))
    q.put(time.perf_counter() - t0)


def naive_seconds(name: str, cap: float) -> float | None:
    """Naive sympy.diff of the expanded loss per parameter; None when it passes ``cap`` s."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_naive, args=(name, q))
    p.start()
    p.join(cap)
    if p.is_alive():
        p.kill()
        p.join()
        return None
    return q.get() if not q.empty() else None


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def vmap_seconds(model, values) -> tuple[float | None, str]:
    ref = model.reference
    try:
        _, mode = torch_backend.run_torch_fn(ref, model.blocks, values, device="cpu",
                                             dtype="float64", batching="vmap")
        return best_of(lambda: torch_backend.run_torch_fn(
            ref, model.blocks, values, device="cpu", dtype="float64", batching="vmap")), mode
    except Exception as exc:  # pragma: no cover - reported, not hidden
        return None, f"vmap failed: {type(exc).__name__}"


def gradcheck_seconds(model, values, fast: bool) -> float:
    params = [b.name for b in model.param_blocks]
    one = {b.name: v[:1] for b, v in zip(model.blocks, values.values())}
    inputs = {}
    for b in model.input_blocks:
        t = torch.tensor(one[b.name][0])
        inputs[b.name] = t.long() if b.domain.integer else t
    args = tuple(torch.tensor(one[p][0], requires_grad=True) for p in params)

    def f(*ps):
        return model.reference(**dict(zip(params, ps)), **inputs)
    t0 = time.perf_counter()
    torch.autograd.gradcheck(f, args, raise_exception=False, fast_mode=fast)
    return time.perf_counter() - t0


def bench(name: str, naive_cap: float) -> dict:
    print(f"benchmark: {name}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    model = scalar_model(name)
    build_s = time.perf_counter() - t0
    cfg = sg.VerifyConfig(samples=BATCH, seed=0)
    timings: dict = {}
    compiled = derive(model, cfg, timings)
    batch = draw(model, cfg)
    np_s = best_of(lambda: np_backend.run(compiled.numpy, batch.X, "float64"))
    n_params = len(compiled.program.gradient)
    torch_s = best_of(lambda: torch_backend.run_program(compiled.torch, batch.X, n_params,
                                                        device="cpu", dtype="float64"))
    vmap_s, vmap_mode = vmap_seconds(model, batch.values)
    t0 = time.perf_counter()
    result = sg.verify(model, torch_fn=model.reference, config=sg.VerifyConfig(samples=200))
    verify_s = time.perf_counter() - t0  # derive/compile cached: the per-run cost
    per_sample = verify_s / len(result.oracle_samples)
    gc_s = gradcheck_seconds(model, batch.values, fast=False)
    gcf_s = gradcheck_seconds(model, batch.values, fast=True)
    naive = naive_seconds(name, naive_cap)
    size = model.graph.size() if len(model.graph.nodes) < 2000 else {
        "intermediates": len(model.graph.nodes)}
    return {
        "model": name, "params": len(model.params),
        "intermediates": size["intermediates"],
        "program_operations": compiled.program.size["operations"],
        "build_s": build_s, "derive_s": timings["derive_s"], "compile_s": timings["compile_s"],
        "naive_sympy_diff_s": naive, "naive_cap_s": naive_cap,
        "numpy_us_per_sample": 1e6 * np_s / BATCH,
        "torch_program_us_per_sample": 1e6 * torch_s / BATCH,
        "torch_vmap_grad_us_per_sample": None if vmap_s is None else 1e6 * vmap_s / BATCH,
        "vmap_mode": vmap_mode,
        "verify_s_200_samples": verify_s, "oracle_samples": len(result.oracle_samples),
        "verified_ok": result.ok,
        "symgrad_s_per_verified_sample": per_sample,
        "gradcheck_s_per_sample": gc_s, "gradcheck_fast_s_per_sample": gcf_s,
    }


def _f(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{v:.3g}{unit}"


def markdown(rows: list[dict], env: dict) -> str:
    from tabulate import tabulate
    size = [{"model": r["model"], "params": r["params"], "intermediates": r["intermediates"],
             "operations": r["program_operations"]} for r in rows]
    speed = []
    for r in rows:
        naive = (f"did not finish in {r['naive_cap_s']:g} s" if r["naive_sympy_diff_s"] is None
                 else _f(r["naive_sympy_diff_s"], " s"))
        ratio = (r["naive_sympy_diff_s"] / r["derive_s"]) if r["naive_sympy_diff_s"] else None
        speed.append({"model": r["model"], "build": _f(r["build_s"], " s"),
                      "derive": _f(r["derive_s"], " s"), "compile": _f(r["compile_s"], " s"),
                      "naive sympy.diff": naive,
                      "naive / derive": _f(ratio, "x") if ratio else "—"})
    thr = []
    for r in rows:
        v = r["torch_vmap_grad_us_per_sample"]
        thr.append({"model": r["model"], "numpy µs/sample": _f(r["numpy_us_per_sample"]),
                    "torch vmap(grad) µs/sample": _f(v), "torch batching": r["vmap_mode"],
                    "numpy vs vmap": _f(v / r["numpy_us_per_sample"], "x") if v else "—",
                    "symgrad torch program µs/sample": _f(r["torch_program_us_per_sample"])})
    cost = [{"model": r["model"], "verified": r["verified_ok"],
             "symgrad s/verified sample": _f(r["symgrad_s_per_verified_sample"]),
             "oracle samples": r["oracle_samples"],
             "gradcheck s/sample": _f(r["gradcheck_s_per_sample"]),
             "gradcheck fast s/sample": _f(r["gradcheck_fast_s_per_sample"]),
             "symgrad / gradcheck": _f(r["symgrad_s_per_verified_sample"]
                                       / r["gradcheck_s_per_sample"], "x")} for r in rows]
    return "\n".join([
        "# symgrad benchmarks", "",
        f"Measured side by side in one run of `scripts/benchmark.py` ({env['machine']}, "
        f"{env['cores']} cores, float64, batch {BATCH}). Ratios compare columns of the same "
        "run; absolute times depend on the machine.", "",
        "## Program size", "", tabulate(size, headers="keys", tablefmt="github"), "",
        "## Derive and compile vs naive sympy.diff per parameter", "",
        tabulate(speed, headers="keys", tablefmt="github"), "",
        "## Gradient throughput on the same batch", "",
        tabulate(thr, headers="keys", tablefmt="github"), "",
        "## Cost per verified sample vs torch.autograd.gradcheck", "",
        "symgrad: one `verify` of 200 samples (numpy, torch program, native torch_fn, bound) "
        "divided by the samples the mpmath oracle checked; derive and compile excluded "
        "(cached, reported above).", "",
        tabulate(cost, headers="keys", tablefmt="github"), ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip tiny_gpt")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--naive-cap", type=float, default=60.0)
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    names = args.models or [m for m in MODELS if not (args.quick and m == "tiny_gpt")]
    rows = [bench(n, args.naive_cap) for n in names]
    env = {"machine": platform.machine(), "cores": __import__("os").cpu_count(),
           "python": platform.python_version(), "torch": torch.__version__,
           "symgrad": sg.__version__}
    out = Path(args.out)
    write_text(out / "benchmarks_blocks.json", json.dumps({"environment": env, "batch": BATCH,
                                                    "rows": rows}, indent=2) + "\n")
    write_text(out / "benchmarks_blocks.md", markdown(rows, env))
    print(f"wrote {out / 'benchmarks_blocks.md'} and {out / 'benchmarks_blocks.json'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
