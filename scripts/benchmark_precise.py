"""Benchmark the high-precision array tables (symgrad.precise) -> reports/benchmarks_precise.{md,json}.

Measured side by side in one run: DD einsum against float64 np.matmul (768^3 and GPT-2's head at
64 tokens, 64x768x50257), the DD product's error against the exact arb_mat product, arb_mat 768^3
at 128 bits, DD elementwise functions per million entries, and peak extra memory of the DD product
in float64 copies of the largest operand (tracemalloc sees numpy's buffers).

    python scripts/benchmark_precise.py [--quick]
    python scripts/benchmark_precise.py --sides BASE [--layers 1 --tokens 64]  # BASE: a worktree of main

--sides times, on gpt2 at GPT-2's width and vocabulary with fewer layers, BASE's tree and this one
(each in its own process) beside torch's own float64 forward+backward: the oracle and the bound
alone (CPU and wall, sha1 of hi, lo and E), then the whole sg.verify; CPU model and BLAS recorded.
--profile [TREE ...] profiles the oracle and the bound of that model (cProfile, process time).
--products BASE times the DD products of GPT-2's shapes (``PRODUCTS``) in BASE's tree and this
one, alternating, with the sha1 of each product's bits. --slices-bound prints the rigorous tail
bound of S = 2 and S = 3 products over |A||B| on simulated operands (why S stays 3).
--ozaki-ab REF times precise/ozaki.py at git REF against this tree's in one process, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import sympy as sp

from symgrad.precise import ARB_OPS, DD_OPS
from symgrad.precise.certify import CertifyConfig, certify

ROOT = Path(__file__).resolve().parents[1]
GPT2_FLOPS_64 = 50e9  # float64 FLOPs of GPT-2 124M (untied head) forward+backward at 64 tokens (issue 8)


def _best(f, repeat: int = 2, clock=time.perf_counter) -> float:
    """The least time of ``repeat`` calls of ``f`` on ``clock`` (wall, or ``time.process_time``)."""
    best = np.inf
    for _ in range(repeat):
        t = clock()
        f()
        best = min(best, clock() - t)
    return best


def _peak_extra(f) -> tuple[float, object]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = f()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, out


def bench_matmul(m: int, k: int, n: int, rng, spec: str, repeat: int) -> dict:
    a = rng.standard_normal((m, k))
    w = rng.standard_normal((n, k) if spec == "td,vd->tv" else (k, n)) * 0.02
    x = DD_OPS.asarray(a) / DD_OPS.asarray(np.array(3.0))  # genuine DD activations (lo != 0)
    wt = DD_OPS.asarray(w)  # float64 weights (lo is a zero view)
    t64 = _best(lambda: a @ (w.T if spec == "td,vd->tv" else w), repeat)
    tdd = _best(lambda: DD_OPS.einsum(spec, x, wt), repeat)
    peak, _ = _peak_extra(lambda: DD_OPS.einsum(spec, x, wt))
    flops = 2.0 * m * k * n
    return {"shape": f"{m}x{k}x{n}", "spec": spec, "float64_s": t64, "dd_s": tdd, "ratio": tdd / t64,
            "float64_gflops": flops / t64 / 1e9, "dd_gflops_f64_equiv": flops / tdd / 1e9,
            "peak_extra_bytes": peak, "largest_operand_bytes": w.nbytes,
            "peak_extra_copies": peak / w.nbytes}


def bench_arb(n: int, rng) -> dict:
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    ops = ARB_OPS.at(128)
    aa, bb = ops.asarray(a), ops.asarray(b)
    t = time.perf_counter()
    c = ops.einsum("ij,jk->ik", aa, bb)
    t_arb = time.perf_counter() - t
    dd = DD_OPS.einsum("ij,jk->ik", a, b)
    rad = ops.radius(c)
    absab = np.abs(a) @ np.abs(b)
    rel_only = certify(*DD_OPS.to_float64(dd), c, config=CertifyConfig(rel=1e-28))
    cert = certify(*DD_OPS.to_float64(dd), c, config=CertifyConfig(rel=1e-28), abs_allowance=1e-30 * absab)
    err = cert.error_bound / absab
    return {"shape": f"{n}^3", "prec_bits": 128, "arb_s": t_arb, "max_radius": float(rad.max()),
            "dd_certified": f"{cert.n_certified}/{cert.n}", "dd_max_rel_error": cert.max_rel_error,
            "dd_certified_rel_only": f"{rel_only.n_certified}/{rel_only.n}",
            "dd_max_error_over_absAabsB": float(err.max())}


def bench_elementwise(n: int, rng) -> list[dict]:
    x = sp.Symbol("x")
    xs = rng.standard_normal(n) * 3
    arg = DD_OPS.asarray(xs)
    rows = []
    gelu_tanh = x * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 10 ** 6) * x ** 3))) / 2
    for name, e, ref in (("exp", sp.exp(x), np.exp), ("tanh", sp.tanh(x), np.tanh),
                         ("erf", sp.erf(x), None), ("log", sp.log(sp.Abs(x)), None),
                         ("gelu (tanh form)", gelu_tanh, None)):
        t = _best(lambda: DD_OPS.map(e, {x: arg}), 1)
        t64 = _best(lambda: ref(xs), 2) if ref is not None else float("nan")
        rows.append({"function": name, "entries": n, "dd_s": t, "dd_s_per_million": t * 1e6 / n,
                     "float64_s_per_million": t64 * 1e6 / n})
    return rows


def accuracy(rng, n: int) -> list[dict]:
    """Max relative error of DD functions against mpmath at 60 digits on n points over wide ranges."""
    import mpmath as mp
    from symgrad.precise import DD, dderf, ddmath as M
    mp.mp.dps = 60
    xs = np.concatenate([rng.uniform(-30, 30, n // 2), rng.standard_normal(n // 4) * 3,
                         (10.0 ** rng.uniform(-200, 2, n - n // 2 - n // 4)) * rng.choice([-1, 1], n - n // 2 - n // 4)])
    pos = np.abs(xs) + 1e-300
    rows = []
    for name, f, mf, arg in (("exp", M.exp, mp.exp, xs), ("expm1", M.expm1, mp.expm1, xs),
                             ("log", M.log, mp.log, pos), ("sqrt", M.sqrt, mp.sqrt, pos),
                             ("tanh", M.tanh, mp.tanh, xs), ("erf", dderf.erf, mp.erf, xs), ("erfc", dderf.erfc, mp.erfc, xs),
                             ("x**(3/2)", lambda v: M.pow_rational(v, 3, 2), lambda v: v ** mp.mpf(1.5), pos)):
        with np.errstate(all="ignore"):
            y = f(DD(arg))
        worst = mp.mpf(0)
        for x, h, l in zip(arg, y.hi, y.lo):
            ex = mf(mp.mpf(float(x)))
            if abs(ex) < mp.mpf(2) ** -968 or abs(ex) > mp.mpf("1.7e308"):
                continue
            worst = max(worst, abs(mp.mpf(float(h)) + mp.mpf(float(l)) - ex) / abs(ex))
        rows.append({"function": name, "points": int(arg.size), "max_rel_error": float(worst)})
    return rows


# --- side by side: a base tree (main at the branch point) and this one, on one reduced GPT-2 ---

def _machine() -> dict:
    """CPU model, cores and both BLAS libraries (numpy's and torch's) of this process."""
    import torch
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), platform.processor())
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)),
            "numpy_blas": f"{blas['name']} {blas.get('version', '')}".strip(),
            "torch": f"torch {torch.__version__} ({'MKL' if torch.backends.mkl.is_available() else 'no MKL'}, "
                     f"{torch.get_num_threads()} threads)"}


def _clock(f):
    """(result, wall s, CPU s of the whole process: every thread, user + system)."""
    t, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - t, time.process_time() - c


def _sha(*arrays) -> str:
    import hashlib
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def side_child(layers: int, tokens: int) -> dict:
    """One tree's figures (run with PYTHONPATH at that tree): torch's own float64
    forward+backward of the native module, the oracle (spot-checked) and the bound alone with
    sha1 of hi, lo and E, then the whole sg.verify of the same model and sample."""
    import resource

    import torch

    import symgrad
    import symgrad as sg
    from symgrad.compare.tolerance import Tolerance
    from symgrad.config import VerifyConfig
    from symgrad.tensor.spotcheck import SpotCheck
    from symgrad.tensor.tables import oracle_ops
    from symgrad.tensor.verify import entry_bounds
    from symgrad.tensor.views import oracle_view
    from symgrad.zoo.gpt2 import gpt2

    model = gpt2({"n_layers": layers}, tokens=tokens)
    values = model.draw(1, np.random.default_rng(0), "float64")
    out = {"tree": str(Path(symgrad.__file__).resolve().parents[1]), "layers": layers,
           "tokens": tokens, "parameters": model.n_parameters, "machine": _machine(),
           "load_at_start": os.getloadavg()[0]}
    args = {b.name: (torch.tensor(values[b.name][0], dtype=torch.long) if b.domain.integer else
                     torch.tensor(values[b.name][0], dtype=torch.float64).requires_grad_(b.is_param))
            for b in model.blocks}
    model.reference(**args)  # builds the module
    runs = []
    for _ in range(3):
        for t in args.values():
            t.grad = None
        runs.append(_clock(lambda: model.reference(**args).backward())[1:])
    out["torch_wall_s"], out["torch_cpu_s"] = min(r[0] for r in runs), min(r[1] for r in runs)
    spot = SpotCheck()
    (hi, lo), out["oracle_wall_s"], out["oracle_cpu_s"] = _clock(
        lambda: oracle_view(model, values, oracle_ops(50), spot=spot))
    out["oracle_sha1"] = {"hi": _sha(hi), "lo": _sha(lo)}
    out["spot"] = spot.summary()
    del hi, lo
    E, out["bound_wall_s"], out["bound_cpu_s"] = _clock(
        lambda: entry_bounds(model, values, Tolerance(), 1, dtypes=("float64",)))
    out["bound_sha1"] = _sha(E[0] if isinstance(E, tuple) else E)
    del E
    cfg = VerifyConfig(samples=1, seed=0, dtype="float64", oracle_samples=1)
    result, out["verify_wall_s"], out["verify_cpu_s"] = _clock(
        lambda: sg.verify(model, torch_fn=model.reference, config=cfg))
    out["verify_phases_wall_s"] = {k: round(v, 2) for k, v in result.timings.items()}
    out["verdict"] = {"ok": result.ok, "counts": {b: result.counts(b) for b in result.comparisons},
                      "oracle": result.program_size.get("oracle_certified", "")}
    out["load_at_end"] = os.getloadavg()[0]
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def _in_tree(tree: str, child: str, layers: int, tokens: int, script: str = __file__) -> dict:
    """``script``'s (this one's by default) ``child`` mode run in its own process with
    ``symgrad`` imported from ``tree``; its JSON, with the tree's commit."""
    print(f"{child}: {tree}", flush=True)
    proc = subprocess.run([sys.executable, script, child, str(layers), str(tokens)],
                          stdout=subprocess.PIPE, check=True, text=True, cwd=tree,
                          env={**os.environ, "PYTHONPATH": tree})
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["commit"] = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                                   stdout=subprocess.PIPE, text=True).stdout.strip()
    print(json.dumps(row), flush=True)
    return row


def sides(base: str, layers: int, tokens: int) -> dict:
    """Each tree in its own process, base first, then this one (the same load window)."""
    rows = [_in_tree(tree, "--side-child", layers, tokens) for tree in (base, str(ROOT))]
    return {"rows": rows, "same_bits": rows[0]["oracle_sha1"] == rows[1]["oracle_sha1"]
            and rows[0]["bound_sha1"] == rows[1]["bound_sha1"],
            "same_verdict": rows[0]["verdict"] == rows[1]["verdict"]}


PRODUCTS = [  # (M, K, N, B's kind): GPT-2's DD products; A is DD activations (lo != 0)
    (768, 768, 768, "float64"), (64, 768, 50257, "float64"),  # 768^3; the logits at 64 tokens
    (50257, 64, 768, "dd"),  # the head's weight gradient dlogits^T h at 64 tokens (K = 64)
    (1024, 768, 3072, "float64"),  # an MLP product at 1024 tokens
    (1024, 64, 1024, "dd"),  # one head's Q K^T at 1024 tokens (K = 64)
    (768, 1024, 3072, "dd")]  # an MLP weight gradient at 1024 tokens (K = 1024)


def products_child(rounds: int, _unused: int) -> dict:
    """This tree's DD products (``DD_OPS.einsum``) of ``PRODUCTS`` beside float64 ``matmul`` on
    one BLAS thread (the oracle's GEMMs run on one): CPU s (process time), min of ``rounds``;
    sha1 of each product's hi and lo (the same operands in every tree: seed 0)."""
    import symgrad
    from symgrad.precise.blas_threads import one_thread

    def cpu(f, repeat):
        return _best(f, repeat, clock=time.process_time)
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n, kind in PRODUCTS:
        a, w = rng.standard_normal((m, k)), rng.standard_normal((k, n)) * 0.02
        x = DD_OPS.asarray(a) / DD_OPS.asarray(np.array(3.0))
        y = DD_OPS.asarray(w)
        y = y if kind == "float64" else y / DD_OPS.asarray(np.array(7.0))
        with one_thread():
            t64 = cpu(lambda: a @ w, 3)
        c = DD_OPS.einsum("ij,jk->ik", x, y)
        rows.append({"shape": f"{m}x{k}x{n}", "b": kind, "float64_cpu_s": t64,
                     "dd_cpu_s": cpu(lambda: DD_OPS.einsum("ij,jk->ik", x, y), rounds),
                     "sha1": _sha(c.hi, c.lo)})
    return {"tree": str(Path(symgrad.__file__).resolve().parents[1]), "rows": rows,
            "load": os.getloadavg()[0], "machine": _machine()}


def products(base: str, rounds: int = 2) -> dict:
    """``products_child`` in BASE's tree and this one, alternating (base first), ``rounds`` times."""
    runs = [_in_tree(tree, "--products-child", 1, 0) for _ in range(rounds)
            for tree in (base, str(ROOT))]
    return {"runs": runs}


def render_products(res: dict) -> list[str]:
    """The products section of reports/benchmarks_precise.md: each tree's best DD CPU s."""
    runs = res["runs"]
    trees = list(dict.fromkeys(r["tree"] for r in runs))
    best = {t: {} for t in trees}
    for r in runs:
        for row in r["rows"]:
            b = best[r["tree"]].setdefault(row["shape"], dict(row))
            b["dd_cpu_s"] = min(b["dd_cpu_s"], row["dd_cpu_s"])
            b["float64_cpu_s"] = min(b["float64_cpu_s"], row["float64_cpu_s"])
            b.setdefault("shas", set()).add(row["sha1"])
    commits = {r["tree"]: r.get("commit", "") for r in runs}
    base, this = trees[0], trees[-1]
    loads = ", ".join(f"{r['load']:.1f}" for r in runs)
    L = ["## DD products, two trees side by side (CPU s, process time)", "",
         f"`python scripts/benchmark_precise.py --products BASE`: BASE {commits[base]} ({base}) "
         f"and {commits[this]} ({this}), each in its own process, alternating, "
         f"{len(runs) // len(trees)} rounds; loads {loads}; "
         f"{runs[0]['machine']}. float64: np.matmul on one BLAS thread (the oracle's GEMMs run on "
         "one); DD: `DD_OPS.einsum` (A DD activations, B float64 weights or DD); each the best "
         "of its rounds.", "",
         "| M x K x N | B | float64 CPU s | DD CPU s base | DD CPU s this | base / float64 | "
         "this / float64 | this / base | hi, lo bits |", "|---|---|---|---|---|---|---|---|---|"]
    for shape, b in best[base].items():
        t = best[this][shape]
        f64 = min(b["float64_cpu_s"], t["float64_cpu_s"])
        same = "identical" if b["shas"] == t["shas"] and len(b["shas"]) == 1 else "DIFFER"
        L.append(f"| {shape} | {b['b']} | {f64:.4f} | {b['dd_cpu_s']:.3f} | {t['dd_cpu_s']:.3f} | "
                 f"{b['dd_cpu_s'] / f64:.1f}x | {t['dd_cpu_s'] / f64:.1f}x | "
                 f"{t['dd_cpu_s'] / b['dd_cpu_s']:.2f} | {same} |")
    return L + [""]


def slices_bound() -> list[str]:
    """The rigorous tail bound of an Ozaki product with S slices, per entry over float64
    |A||B|: (S+1) K u 2^(-S tau) [rowsum_i|A| 2^f_j + (S-1) K 2^(e_i+f_j) / 2 + 2^e_i colsum_j|B|]
    (rowmax_i < 2^e_i, colmax_j < 2^f_j), on simulated operands (seed 0): which share of the
    entries it keeps within the spot check's claim 1e-26 at S = 2 and S = 3 (oracle19)."""
    from symgrad.precise.ozaki import _tau
    rng = np.random.default_rng(0)
    u = 2.0 ** -53
    cases = [("Gaussian 2000x64 @ 64x768", rng.standard_normal((2000, 64)),
              rng.standard_normal((64, 768))),
             ("head-gradient-like rows exp(3 N(0,1)) 2000x64 @ Gaussian 64x768",
              np.exp(3 * rng.standard_normal((2000, 64))) / 1e4, rng.standard_normal((64, 768))),
             ("Gaussian 500x1024 @ 1024x300", rng.standard_normal((500, 1024)),
              rng.standard_normal((1024, 300)))]
    L = ["| operands | S | tau | entries within 1e-26 | median bound / (abs A abs B) | worst |",
         "|---|---|---|---|---|---|"]
    for name, a, b in cases:
        k = a.shape[1]
        e = 2.0 ** np.frexp(np.abs(a).max(1))[1][:, None]
        f = 2.0 ** np.frexp(np.abs(b).max(0))[1][None, :]
        rs, cs = np.abs(a).sum(1)[:, None], np.abs(b).sum(0)[None, :]
        scale = np.abs(a) @ np.abs(b)
        for S in (2, 3):
            tau = _tau(k, S)
            r = ((S + 1) * k * u * 2.0 ** (-S * tau) * (rs * f + (S - 1) * k * e * f / 2 + e * cs)
                 / scale)
            L.append(f"| {name} | {S} | {tau} | {100 * (r <= 1e-26).mean():.2f} % | "
                     f"{np.median(r):.2g} | {r.max():.2g} |")
    return L


def ozaki_ab(ref: str, rounds: int = 4) -> list[str]:
    """``precise/ozaki.py`` at git ``ref`` (loaded beside this tree's, the rest of symgrad this
    tree's) against this tree's, in one process, alternating ``rounds`` times on the same DD x DD
    operands: CPU s (process time) of ``dd_matmul``, min and all rounds, and whether the bits agree."""
    import importlib.util
    import tempfile

    from symgrad.precise import ozaki as new
    from symgrad.precise.dd import DD
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:symgrad/precise/ozaki.py"],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("symgrad.precise._ozaki_ref", f.name)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    os.unlink(f.name)
    rng = np.random.default_rng(0)

    def dd(shape):
        h = rng.standard_normal(shape)
        return DD(h, h * rng.standard_normal(shape) * 2.0 ** -54)
    L = [f"| Bt x M x K x N (DD x DD) | {ref} CPU s | this CPU s | this / {ref} | rounds "
         f"({ref}; this) | bits | load |", "|---|---|---|---|---|---|---|"]
    for bt, m, k, n in [(1, 50257, 64, 768), (12, 1024, 64, 1024), (1, 768, 1024, 3072)]:
        a, b = dd((bt, m, k)), dd((bt, k, n))
        t: dict = {"old": [], "new": []}
        outs = {}
        for _ in range(rounds):
            for name, mod in (("old", old), ("new", new)):
                c = time.process_time()
                outs[name] = mod.dd_matmul(a, b)
                t[name].append(time.process_time() - c)
        same = _sha(outs["old"].hi, outs["old"].lo) == _sha(outs["new"].hi, outs["new"].lo)
        L.append(f"| {bt}x{m}x{k}x{n} | {min(t['old']):.3f} | {min(t['new']):.3f} | "
                 f"{min(t['new']) / min(t['old']):.2f} | {', '.join(f'{x:.2f}' for x in t['old'])}; "
                 f"{', '.join(f'{x:.2f}' for x in t['new'])} | {'identical' if same else 'DIFFER'} | "
                 f"{os.getloadavg()[0]:.1f} |")
        print(L[-1], flush=True)
    return L


def render_sides(res: dict) -> list[str]:
    """The side-by-side section of reports/benchmarks_precise.md."""
    r0 = res["rows"][0]
    m = r0["machine"]
    L = ["## Side by side: the oracle and the bound, main's tree and this one, beside torch", "",
         f"`gpt2({{\"n_layers\": {r0['layers']}}}, tokens={r0['tokens']})` (GPT-2's width 768 and "
         f"vocabulary 50257; {r0['parameters']:,} parameters), 1 sample, seed 0, float64; each tree "
         "in its own process, one after the other (`scripts/benchmark_precise.py --sides BASE`). "
         f"CPU {m['cpu']}, {m['cores']} cores; numpy on {m['numpy_blas']}; {m['torch']}. "
         "CPU s: the whole process's (every thread, user + system) over the step; torch: its own "
         "forward+backward of the native module, min of 3. The machine is shared: walls are upper "
         "bounds, CPU s include BLAS threads spinning for a core.", "",
         "| tree | load start / end | torch fwd+bwd CPU s / wall s | oracle CPU s / wall s | "
         "bound CPU s / wall s | (oracle + bound) CPU / torch CPU | sg.verify CPU s / wall s | "
         "verify CPU / torch CPU | verify wall / torch wall | peak GB |",
         "|" + "---|" * 10]
    for r in res["rows"]:
        ob = r["oracle_cpu_s"] + r["bound_cpu_s"]
        L.append(f"| {r['commit']} ({r['tree']}) | {r['load_at_start']:.1f} / {r['load_at_end']:.1f} "
                 f"| {r['torch_cpu_s']:.2f} / {r['torch_wall_s']:.2f} "
                 f"| {r['oracle_cpu_s']:.1f} / {r['oracle_wall_s']:.1f} "
                 f"| {r['bound_cpu_s']:.1f} / {r['bound_wall_s']:.1f} | {ob / r['torch_cpu_s']:.0f}x "
                 f"| {r['verify_cpu_s']:.1f} / {r['verify_wall_s']:.1f} "
                 f"| {r['verify_cpu_s'] / r['torch_cpu_s']:.0f}x "
                 f"| {r['verify_wall_s'] / r['torch_wall_s']:.0f}x | {r['peak_rss_gb']:.2f} |")
    a, b = res["rows"]
    L += ["", f"- Bits: oracle hi/lo sha1 {a['oracle_sha1']['hi']}/{a['oracle_sha1']['lo']} vs "
          f"{b['oracle_sha1']['hi']}/{b['oracle_sha1']['lo']}, bound E sha1 {a['bound_sha1']} vs "
          f"{b['bound_sha1']}: {'identical' if res['same_bits'] else 'DIFFERENT'}; verdicts and "
          f"counts per backend {'identical' if res['same_verdict'] else 'DIFFERENT'} "
          f"(ok={b['verdict']['ok']}); spot check: {b['spot']}",
          "- sg.verify phase walls (s), base: " + ", ".join(f"{k} {v}" for k, v in a["verify_phases_wall_s"].items()),
          "- sg.verify phase walls (s), this tree: " + ", ".join(f"{k} {v}" for k, v in b["verify_phases_wall_s"].items()),
          "- What changed (`symgrad/precise/ozaki.py`): each DD product's operands are sliced in "
          "chunks of whole rows (columns) and its output summed in sub-tiles of <= 256 rows and "
          "~2^16 entries, so the ~33 elementwise passes per tile run in cache (GPT-2's head "
          "gradient had made them over 309 MB tiles), every GEMM one sub-tile's on one OpenBLAS "
          "thread (two threads on GEMMs that size spin for a core on a loaded machine), and "
          "max |x| for the equilibration without an |x| copy. Same slices, same GEMMs, same "
          "DD additions in the same order: the bits above are equal.",
          "- What is left toward 10x torch: the DD products now run at the Ozaki S = 3 floor (3 "
          "exact level GEMMs and 1 rounded, 10 float64 GEMM-equivalents per product); fewer "
          "needs fewer slices (a new error bound, not attempted here). The bound: numpy "
          "einsum's matmul path (transposed copies of the 50257 x 768 operands), its plain "
          "c_einsum calls, and the token-embedding scatter's elementwise passes over all "
          "50257 x 768 entries of which only the sample's token rows are nonzero. Outside "
          "these files: the summary and compare phases (the phase walls above), and the "
          "oracle's rows written into hi / lo (`views._oracle_rows.put`, in the profile below).",
          ""]
    return L


def profile_child(layers: int, tokens: int, top: int = 12) -> dict:
    """Where the CPU seconds of the oracle and of the bound go: cProfile on the process-time
    clock (every thread), each part alone, the ``top`` functions by own time."""
    import cProfile
    import pstats

    import symgrad
    from symgrad.compare.tolerance import Tolerance
    from symgrad.tensor.spotcheck import SpotCheck
    from symgrad.tensor.tables import oracle_ops
    from symgrad.tensor.verify import entry_bounds
    from symgrad.tensor.views import oracle_view
    from symgrad.zoo.gpt2 import gpt2

    model = gpt2({"n_layers": layers}, tokens=tokens)
    values = model.draw(1, np.random.default_rng(0), "float64")
    out = {"tree": str(Path(symgrad.__file__).resolve().parents[1]), "layers": layers,
           "tokens": tokens, "load_at_start": os.getloadavg()[0]}
    parts = {"oracle": lambda: oracle_view(model, values, oracle_ops(50), spot=SpotCheck()),
             "bound": lambda: entry_bounds(model, values, Tolerance(), 1, dtypes=("float64",))}
    for name, f in parts.items():
        prof = cProfile.Profile(time.process_time)
        c = time.process_time()
        prof.runcall(f)
        total = time.process_time() - c
        stats = pstats.Stats(prof).stats  # (file, line, func) -> (cc, nc, tottime, cumtime, ..)
        rows = sorted(((v[2], v[3], v[1], f"{Path(k[0]).name}:{k[1]}({k[2]})")
                       for k, v in stats.items()), reverse=True)[:top]
        out[name] = {"cpu_s": total, "top": [{"function": fn, "own_s": own, "cum_s": cum,
                                               "calls": n} for own, cum, n, fn in rows]}
    out["load_at_end"] = os.getloadavg()[0]
    return out


def render_profile(res: list) -> list[str]:
    """The profile section of reports/benchmarks_precise.md (one entry per tree)."""
    L = ["## Where the CPU seconds go: the oracle and the bound, profiled", ""]
    for r in res:
        L.append(f"`gpt2({{\"n_layers\": {r['layers']}}}, tokens={r['tokens']})`, tree "
                 f"{r.get('commit', '')} ({r['tree']}), cProfile on the process-time clock, load "
                 f"{r['load_at_start']:.1f} / {r['load_at_end']:.1f}:")
        L.append("")
        for part in ("oracle", "bound"):
            p = r[part]
            top = "; ".join(f"{t['function']} {t['own_s']:.2f} s own ({t['calls']} calls)"
                            for t in p["top"][:8])
            L.append(f"- {part}: {p['cpu_s']:.1f} CPU s; {top}")
        L.append("")
    return L


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller shapes (smoke run)")
    ap.add_argument("--sides", metavar="BASE", help="only the side-by-side section: BASE (a "
                    "worktree of main) and this tree on gpt2 of --layers layers at --tokens")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--side-child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile", nargs="*", metavar="TREE", help="only the profile section: "
                    "each TREE (default this one) on gpt2 of --layers layers at --tokens")
    ap.add_argument("--profile-child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--products", metavar="BASE", help="only the products section: the DD "
                    "products of GPT-2's shapes in BASE's tree and this one, alternating")
    ap.add_argument("--products-child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ozaki-ab", metavar="REF", help="only time precise/ozaki.py at git REF "
                    "against this tree's, in one process, alternating, on GPT-2's DD x DD shapes")
    ap.add_argument("--slices-bound", action="store_true", help="only print the rigorous tail "
                    "bound of S = 2 and S = 3 products over |A||B| on simulated operands")
    args = ap.parse_args()
    out = ROOT / "reports"
    if args.ozaki_ab:
        print("\n".join(ozaki_ab(args.ozaki_ab)))
        return
    if args.slices_bound:
        print("\n".join(slices_bound()))
        return
    if args.products_child:
        print(json.dumps(products_child(*args.products_child), default=float))
        return
    if args.products:
        res = products(args.products)
        (out / "benchmarks_precise_products.json").write_text(json.dumps(res, indent=2) + "\n")
        (out / "benchmarks_precise.md").write_text(render(json.loads(
            (out / "benchmarks_precise.json").read_text())))
        print("\n".join(render_products(res)))
        return
    if args.profile_child:
        print(json.dumps(profile_child(*args.profile_child), default=float))
        return
    if args.profile is not None:
        res = [_in_tree(tree, "--profile-child", args.layers, args.tokens)
               for tree in (args.profile or [str(ROOT)])]
        (out / "benchmarks_precise_profile.json").write_text(json.dumps(res, indent=2) + "\n")
        (out / "benchmarks_precise.md").write_text(render(json.loads(
            (out / "benchmarks_precise.json").read_text())))
        print("\n".join(render_profile(res)))
        return
    if args.side_child:
        print(json.dumps(side_child(*args.side_child), default=float))
        return
    if args.sides:
        res = sides(args.sides, args.layers, args.tokens)
        (out / "benchmarks_precise_sides.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
        old = json.loads((out / "benchmarks_precise.json").read_text())
        (out / "benchmarks_precise.md").write_text(render(old))
        print("\n".join(render_sides(res)))
        return
    rng = np.random.default_rng(0)
    big = not args.quick
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
        "load_average_at_start": os.getloadavg()[0],
        "matmul": [bench_matmul(768, 768, 768, rng, "ij,jk->ik", 2) if big else bench_matmul(128, 128, 128, rng, "ij,jk->ik", 2),
                   bench_matmul(64, 768, 50257, rng, "td,vd->tv", 1) if big else bench_matmul(16, 128, 2048, rng, "td,vd->tv", 1)],
        "arb": bench_arb(768 if big else 96, rng),
        "elementwise": bench_elementwise(1_000_000 if big else 50_000, rng),
        "accuracy": accuracy(rng, 2000 if big else 200),
    }
    rates = [r["dd_gflops_f64_equiv"] for r in res["matmul"]]
    res["gpt2_64_tokens_projection"] = {
        "float64_gflops": GPT2_FLOPS_64 / 1e9,
        "dd_matmul_s_range": [GPT2_FLOPS_64 / (max(rates) * 1e9), GPT2_FLOPS_64 / (min(rates) * 1e9)],
        "ratios_to_float64": [r["ratio"] for r in res["matmul"]],
    }
    (out / "benchmarks_precise.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    (out / "benchmarks_precise.md").write_text(render(res))
    print(render(res))


def render(res: dict) -> str:
    L = ["# symgrad.precise benchmarks", "",
         f"Machine: {res['machine']}; load average at start {res['load_average_at_start']:.1f} "
         "(the machine is shared: absolute times vary, the DD/float64 ratios measured in the same run are the result).", "",
         "## DD einsum (Ozaki split: 3 exact level GEMMs + 1 rounded, the slices concatenated along K, per K-block) vs float64 np.matmul", "",
         "| product | float64 s | DD s | DD / float64 | float64 GFLOP/s | DD GFLOP/s (f64-equiv.) | peak extra memory |",
         "|---|---|---|---|---|---|---|"]
    for r in res["matmul"]:
        L.append(f"| {r['shape']} `{r['spec']}` | {r['float64_s']:.3f} | {r['dd_s']:.3f} | {r['ratio']:.1f}x | "
                 f"{r['float64_gflops']:.1f} | {r['dd_gflops_f64_equiv']:.2f} | "
                 f"{r['peak_extra_bytes'] / 2**20:.0f} MiB = {r['peak_extra_copies']:.2f} copies of the largest operand |")
    a = res["arb"]
    L += ["", "## arb_mat (python-flint) and the certified error of the DD product", "",
          f"- arb_mat {a['shape']} at {a['prec_bits']} bits: {a['arb_s']:.2f} s (incl. conversion), max radius {a['max_radius']:.2g} "
          "(rigorous enclosure of the exact product of the float64 data).",
          f"- DD product certified against it: {a['dd_certified']} entries within 1e-28 relative + 1e-30 (|A||B|)_ij "
          f"({a['dd_certified_rel_only']} within 1e-28 relative alone: the rest are entries that cancel far below their terms); "
          f"max certified error / (|A||B|)_ij {a['dd_max_error_over_absAabsB']:.2g}; max certified relative error {a['dd_max_rel_error']:.2g}.",
          "", "## DD elementwise maps (sympy expression walked on chunked DD arrays)", "",
          "| function | entries | DD s | DD s per million | float64 s per million |", "|---|---|---|---|---|"]
    for r in res["elementwise"]:
        L.append(f"| {r['function']} | {r['entries']} | {r['dd_s']:.2f} | {r['dd_s_per_million']:.2f} | "
                 f"{r['float64_s_per_million']:.4f} |")
    L += ["", "## DD accuracy against mpmath (60 digits), wide ranges incl. tiny/huge arguments", "",
          "| function | points | max relative error |", "|---|---|---|"]
    for r in res["accuracy"]:
        L.append(f"| {r['function']} | {r['points']} | {r['max_rel_error']:.2g} |")
    g = res["gpt2_64_tokens_projection"]
    L += ["", "## What this means for the GPT-2 oracle at 64 tokens", "",
          f"~{g['float64_gflops']:.0f} GFLOP (float64 terms) of contractions at the DD rates measured above: "
          f"**{g['dd_matmul_s_range'][0]:.0f}-{g['dd_matmul_s_range'][1]:.0f} s** of DD matmul on this (shared) machine "
          f"(DD/float64 = {', '.join(f'{r:.0f}x' for r in g['ratios_to_float64'])} in the same run). "
          "Elementwise maps (GELU on 64x3072 per layer, softmax exp on 12x64x64 per layer, LayerNorm) are a few million "
          "entries per pass at the per-million costs above. Memory: DD of float64 weights adds no copy (lo is a zero view); "
          "the product's working set is per tile (at most 2^22 entries per operand tile, ~16 reused buffers) plus the DD "
          "result, independent of the operands' size (hence many 'copies' of a small operand, ~1 of GPT-2's head).", "",
          "## Limits", "",
          "- DD is not rigorous by itself: its accuracy is measured (tables above, tests) and certified per run by ARB "
          "(`symgrad.precise.certify`).",
          "- The product error is bounded relative to rowmax_i(|A|) colmax_j(|B|) after the power-of-two equilibration "
          "along K; rows whose entries span many orders of magnitude *and* meet columns that do the same can exceed "
          "1e-30 of (|A||B|)_ij (random +-2^40 scalings stay at ~1e-31 in the tests).",
          "- Below ~1e-292 DD keeps fewer than 106 bits (lo is subnormal).",
          "- ARB arrays are Python objects (~100 B and ~0.5 us per entry to create): certify on a reduced subset "
          "(fewer tokens, sampled entries), not on all 163M parameters.",
          "- ARB divides by an exact 0 to NaN where DD gives inf: such entries are reported uncertified, not wrong.",
          "- erf is the slowest DD function (series / continued fraction of 13-72 DD terms): the GELU-erf variant costs "
          "~5x the tanh form.", ""]
    side = ROOT / "reports" / "benchmarks_precise_sides.json"
    if side.exists():
        L += render_sides(json.loads(side.read_text()))
    prof = ROOT / "reports" / "benchmarks_precise_profile.json"
    if prof.exists():
        L += render_profile(json.loads(prof.read_text()))
    prod = ROOT / "reports" / "benchmarks_precise_products.json"
    if prod.exists():
        L += render_products(json.loads(prod.read_text()))
    notes = ROOT / "reports" / "benchmarks_precise_notes.md"  # dated hand-written sections
    if notes.exists():
        L += ["", notes.read_text().rstrip("\n")]
    return "\n".join(L)


if __name__ == "__main__":
    main()
