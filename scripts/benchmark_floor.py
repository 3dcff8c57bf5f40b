"""The measured floor of issue 19's ratio (gpt2, 64 tokens, float64, verify CPU s / torch's own
forward+backward CPU s): every GEMM a real ``sg.verify`` runs, recorded by phase, then replayed
alone beside torch's own step and a memory pass, in one process (floor19).

1. Record (``--record L``, one child process per layer count): ``sg.verify`` of
   ``gpt2({"n_layers": L}, tokens=T)`` (float64, 1 sample, seed 0, the native module as torch_fn,
   as ``benchmark_ratio.py`` runs it) with, for that run only, ``numpy.matmul`` / ``einsum`` /
   ``dot`` / ``tensordot`` wrapped (shape, strides, BLAS threads, phase: the oracle's Ozaki slice
   products are its ``np.matmul`` calls, the bound's |A||B| products its einsums), the DD
   products ``ddops.dd_matmul`` is asked for (Bt, M, K, N), and torch's GEMMs (aten mm, bmm,
   addmm, baddbmm under a ``TorchDispatchMode``) - symgrad's code paths unchanged: the wrappers
   call the same functions with the same arguments. The phase is ``tensor.verify._phase``'s key
   (as ``benchmark_ratio.cpu_by_phase`` reads it).
2. Scale: per layer = rec(2) - rec(1), fixed = rec(1) - per layer; L layers = fixed + L per layer
   (``--check L`` records L layers too and compares every count).
3. Time, in this one process: torch's own float64 forward+backward at L layers (min of 3); every
   recorded GEMM signature replayed alone (numpy on the recorded BLAS thread count, the same
   shapes, strides and einsum spec; torch's on torch's threads), min per call x its count; one
   fat float64 GEMM (the BLAS's rate); one read+write pass over the model's gradient entries.
   Floor = the oracle's and bound's GEMMs as run + the two torch backends' own steps (each
   torch's step) + N memory passes. Writes reports/benchmark_floor.json and .md.

Usage::

    python scripts/benchmark_floor.py --records-only --keep /tmp/floor   # 1 and 2 layers
    flock /tmp/gpt2.lock nice -n 10 python scripts/benchmark_floor.py --layers 12 --check \
        --keep /tmp/floor   # 12 layers recorded, then timed

>>> _flops_einsum("zik,zkj->zij", [(2, 3, 4), (2, 4, 5)])
(240, True)
>>> _flops_einsum("ij,ij->ij", [(3, 4), (3, 4)])[1]
False
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "reports" / "benchmark_floor.json"
TORCH_GEMMS = ("mm", "bmm", "addmm", "baddbmm", "addbmm", "mv", "addmv")


def _flops_einsum(spec: str, shapes: list) -> tuple[int, bool]:
    """(2 x multiply-adds, whether it contracts a letter: a GEMM) of a two-operand einsum."""
    ins, _, out = spec.replace(" ", "").partition("->")
    subs = ins.split(",")
    size = {c: d for s, sh in zip(subs, shapes) for c, d in zip(s, sh)}
    summed = (set(subs[0]) & set(subs[1])) - set(out) if len(subs) == 2 else set()
    return 2 * int(np.prod([size[c] for c in size], dtype=np.float64)), bool(summed)


def _flops_torch(op: str, shapes: list) -> int:
    s = [list(x) for x in shapes]
    if op in ("mm", "addmm"):
        a, b = s[-2], s[-1]
        return 2 * a[0] * a[1] * b[1]
    if op in ("bmm", "baddbmm", "addbmm"):
        a, b = s[-2], s[-1]
        return 2 * a[0] * a[1] * a[2] * b[2]
    a = s[-2]  # mv, addmv
    return 2 * a[0] * a[1]


class Recorder:
    """Counts of every GEMM signature by phase: ``counts[(phase, lib, op, shapes, strides,
    threads, extra)]``; ``dd[(phase, bt, m, k, n, lo_zero)]`` the DD products asked for."""

    def __init__(self) -> None:
        self.phase = "outside"
        self.counts: Counter = Counter()
        self.dd: Counter = Counter()
        self.lock = threading.Lock()
        self.local = threading.local()

    def add(self, key: tuple, into: Counter | None = None) -> None:
        with self.lock:
            (self.counts if into is None else into)[(self.phase,) + key] += 1

    def rows(self) -> dict:
        return {"gemms": [[list(k), n] for k, n in self.counts.items()],
                "dd": [[list(k), n] for k, n in self.dd.items()]}


def _layout(x) -> tuple:
    a = np.asarray(x)
    return tuple(a.shape), tuple(s // a.itemsize for s in a.strides)


@contextlib.contextmanager
def recording(rec: Recorder):
    """numpy's products, the DD products and torch's GEMMs recorded into ``rec`` while open;
    every patched name is put back on exit."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from symgrad.precise import blas_threads, ddops
    from symgrad.tensor import verify as tverify

    def wrap(name, real):
        def f(*args, **kw):
            depth = getattr(rec.local, "depth", 0)
            if depth == 0 and args:
                if name == "einsum" and isinstance(args[0], str) and len(args) == 3:
                    lay = [_layout(a) for a in args[1:]]
                    rec.add(("numpy", "einsum", tuple(x[0] for x in lay), tuple(x[1] for x in lay),
                             blas_threads.current(), (args[0], str(kw.get("optimize", False)))))
                elif name != "einsum" and len(args) >= 2:
                    lay = [_layout(a) for a in args[:2]]
                    rec.add(("numpy", name, tuple(x[0] for x in lay), tuple(x[1] for x in lay),
                             blas_threads.current(), ("out" if kw.get("out") is not None
                                                      else "", repr(args[2:]))))
            rec.local.depth = depth + 1
            try:
                return real(*args, **kw)
            finally:
                rec.local.depth = depth
        return f

    class TorchGemms(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in TORCH_GEMMS:
                ts = [a for a in args if isinstance(a, torch.Tensor)]
                rec.add(("torch", name, tuple(tuple(t.shape) for t in ts),
                         tuple(tuple(t.stride()) for t in ts), torch.get_num_threads(),
                         (str(ts[-1].dtype),)))
            return func(*args, **(kwargs or {}))

    real_phase, real_dd = tverify._phase, ddops.dd_matmul

    @contextlib.contextmanager
    def phase(what, cfg, timings, key, total=None):
        before, rec.phase = rec.phase, key.removesuffix("_s")
        try:
            with real_phase(what, cfg, timings, key, total) as tick, TorchGemms():
                yield tick
        finally:
            rec.phase = before

    def dd_matmul(a, b, cfg=ddops.OzakiConfig()):
        rec.add((a.shape[0], a.shape[1], a.shape[2], b.shape[2], bool(a.lo_is_zero_view),
                 bool(b.lo_is_zero_view), cfg.slices), into=rec.dd)
        return real_dd(a, b, cfg)

    names = ("matmul", "einsum", "dot", "tensordot")
    reals = {n: getattr(np, n) for n in names}
    for n in names:
        setattr(np, n, wrap(n, reals[n]))
    tverify._phase, ddops.dd_matmul = phase, dd_matmul
    try:
        yield rec
    finally:
        for n in names:
            setattr(np, n, reals[n])
        tverify._phase, ddops.dd_matmul = real_phase, real_dd


def predicted_calls(bt: int, m: int, k: int, n: int, slices: int = 3) -> int:
    """The BLAS calls ``ozaki.dd_matmul`` makes for one finite (Bt, M, K, N) product: S + 1 per
    output sub-tile per K-block (its tiling, ``_products``), from ``OzakiConfig``'s defaults.

    >>> predicted_calls(1, 64, 768, 768), predicted_calls(1, 300, 768, 768)  # 1, 2 x 3 sub-tiles
    (4, 24)
    """
    from symgrad.precise.ozaki import OzakiConfig, _sub_tiles
    cfg = OzakiConfig(slices=slices)
    if 0 in (bt, m, k, n):
        return 0
    kb = min(k, cfg.k_block)
    mb = max(1, min(m, cfg.tile_elems // max(1, bt * kb)))
    nb = max(1, min(n, cfg.tile_elems // max(1, bt * kb)))
    calls = 0
    for k0 in range(0, k, kb):
        for m0 in range(0, m, mb):
            for n0 in range(0, n, nb):
                calls += sum(1 for _ in _sub_tiles(bt, min(mb, m - m0), min(nb, n - n0),
                                                   cfg.chunk_elems))
    return calls * (slices + 1)


def _model_args(layers: int, tokens: int):
    import torch

    from symgrad.zoo.gpt2 import gpt2
    model = gpt2({"n_layers": layers}, tokens=tokens)
    values = model.draw(1, np.random.default_rng(0), "float64")
    args = {b.name: (torch.tensor(values[b.name][0], dtype=torch.long) if b.domain.integer else
                     torch.tensor(values[b.name][0], dtype=torch.float64)
                     .requires_grad_(b.is_param)) for b in model.blocks}
    model.reference(**args)  # builds the module
    return model, args


def torch_step(model, args, rounds: int = 3) -> tuple[float, float]:
    """torch's own forward+backward: (min CPU s, min wall s) of ``rounds``."""
    runs = []
    for _ in range(rounds):
        for t in args.values():
            t.grad = None
        w, c = time.perf_counter(), time.process_time()
        model.reference(**args).backward()
        runs.append((time.process_time() - c, time.perf_counter() - w))
    return min(r[0] for r in runs), min(r[1] for r in runs)


def record_child(layers: int, tokens: int) -> dict:
    """One verify recorded (run in its own process): GEMMs, DD products, CPU s by phase."""
    import torch  # noqa: F401

    import symgrad as sg
    from benchmark_ratio import cpu_by_phase
    from symgrad.config import VerifyConfig
    model, args = _model_args(layers, tokens)
    rec = Recorder()
    with recording(rec):  # torch's own step's GEMMs (its time is taken unrecorded, below)
        rec.phase = "torch_own"
        for t in args.values():
            t.grad = None
        model.reference(**args).backward()
        rec.phase = "outside"
    del args
    with cpu_by_phase() as cpu, recording(rec):
        c = time.process_time()
        result = sg.verify(model, torch_fn=model.reference,
                           config=VerifyConfig(samples=1, seed=0, dtype="float64"))
        total = time.process_time() - c
    return {"layers": layers, "tokens": tokens, "parameters": model.n_parameters,
            "verdict": result.verdict, "verify_cpu_s": total,
            "phase_cpu_s": {k.removesuffix("_s"): round(v, 2) for k, v in cpu.items()},
            "load": os.getloadavg()[0], **rec.rows()}


def _child(layers: int, tokens: int, keep: str | None = None) -> dict:
    """``record_child`` in its own process; ``keep``: a folder where its record is kept and
    read back by a later run (the records outside the 12-layer lock, the timing under it)."""
    kept = Path(keep) / f"record_{layers}_{tokens}.json" if keep else None
    if kept is not None and kept.exists():
        return json.loads(kept.read_text())
    print(f"recording {layers} layer(s), {tokens} tokens", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--record", str(layers), "--tokens",
                           str(tokens)], stdout=subprocess.PIPE, check=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}"})
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps(got))
    return got


def scaled(one: dict, two: dict, layers: int, what: str) -> dict:
    """``what``'s counts at ``layers`` layers from the 1- and 2-layer records: fixed + L per layer
    (a signature whose per-layer count is negative, or fixed count negative, is kept as found)."""
    c1 = {tuple(map(_tup, k)): n for k, n in one[what]}
    c2 = {tuple(map(_tup, k)): n for k, n in two[what]}
    out = {}
    for k in set(c1) | set(c2):
        per = c2.get(k, 0) - c1.get(k, 0)
        out[k] = c1.get(k, 0) - per + layers * per
    return {k: n for k, n in out.items() if n > 0}


def _tup(x):
    return tuple(_tup(v) for v in x) if isinstance(x, list) else x


def tail_bound(a: np.ndarray, b: np.ndarray, S: int, k_block: int = 1024) -> np.ndarray:
    """The rigorous tail error of ``ozaki.dd_matmul`` with S slices per entry, over float64
    |A||B| (oracle19's bound, ``benchmark_precise.slices_bound``), as the product runs: A's
    columns and B's rows equilibrated by ``ozaki._equilibration``, K in blocks of ``k_block``
    (each block's own row and column maxima), summed over the blocks. Entries with
    |A||B| = 0 (a zero row or column: no error) are dropped. a: (M, K), b: (K, N) float64.

    >>> r = tail_bound(np.ones((2, 64)), np.ones((64, 3)), 3)
    >>> r.shape, bool(r.max() < 1e-26)
    ((6,), True)
    """
    from symgrad.precise.dd import DD
    from symgrad.precise.ozaki import _equilibration, _tau
    u = 2.0 ** -53
    d = _equilibration(DD(a[None]), DD(b[None]))
    if d is not None:
        a, b = np.ldexp(a, d[None, :]), np.ldexp(b, -d[:, None])
    k = a.shape[1]
    kb = min(k, k_block)
    tau = _tau(kb, S)
    out = []
    rows = max(1, (1 << 20) // max(1, b.shape[1]))  # output rows at once (~8 MB a buffer)
    blocks = [(np.abs(b[k0:k0 + kb]), k0) for k0 in range(0, k, kb)]
    cols = [(np.ldexp(1.0, np.frexp(y.max(0))[1])[None, :], y.sum(0)[None, :]) for y, _ in blocks]
    for r0 in range(0, a.shape[0], rows):
        ar = a[r0:r0 + rows]
        bound = np.zeros((ar.shape[0], b.shape[1]))
        for (y, k0), (f, cs) in zip(blocks, cols):
            x = np.abs(ar[:, k0:k0 + kb])
            kk = x.shape[1]
            e = np.ldexp(1.0, np.frexp(x.max(1))[1])[:, None]  # rowmax < 2^e
            bound += (S + 1) * kk * u * 2.0 ** (-S * tau) * (
                x.sum(1)[:, None] * f + (S - 1) * kk * e * f / 2 + e * cs)
        scale = np.abs(ar) @ np.abs(b)  # (equilibration exact: the same |A||B|)
        keep = scale > 0
        out.append(bound[keep] / scale[keep])
    return np.concatenate(out)


def s2_child(layers: int, tokens: int) -> dict:
    """S = 2's and S = 3's tail bounds on the DD products a real verify's oracle runs (each
    (Bt, M, K, N) product, every batch entry; up to 2^26 output entries a product)."""
    import symgrad as sg
    from symgrad.config import VerifyConfig
    from symgrad.precise import ddops
    from symgrad.tensor import verify as tverify
    model, args = _model_args(layers, tokens)
    del args
    rows: list = []
    real_dd, real_phase, where = ddops.dd_matmul, tverify._phase, ["outside"]

    @contextlib.contextmanager
    def phase(what, cfg, timings, key, total=None):
        where[0] = key
        with real_phase(what, cfg, timings, key, total) as tick:
            yield tick

    def dd_matmul(a, b, cfg=ddops.OzakiConfig()):
        bt, m, k = a.shape
        n = b.shape[2]
        if where[0] == "oracle_s" and bt * m * n <= 1 << 26 and k > 1:
            got = {S: [tail_bound(a.hi[i], b.hi[i], S, cfg.k_block) for i in range(bt)]
                   for S in (2, 3)}
            row = {"shape": [bt, m, k, n]}
            for S, rs in got.items():
                r = np.concatenate(rs) if rs else np.zeros(0)
                row[f"S{S}"] = {"entries": int(r.size), "within_1e-26": float((r <= 1e-26).mean())
                                if r.size else 1.0, "median": float(np.median(r)) if r.size else 0.0,
                                "worst": float(r.max()) if r.size else 0.0}
            rows.append(row)
        return real_dd(a, b, cfg)
    ddops.dd_matmul, tverify._phase = dd_matmul, phase
    try:
        sg.verify(model, torch_fn=model.reference,
                  config=VerifyConfig(samples=1, seed=0, dtype="float64"))
    finally:
        ddops.dd_matmul, tverify._phase = real_dd, real_phase
    return {"layers": layers, "tokens": tokens, "products": rows}


@contextlib.contextmanager
def _blas_threads(n: int | None):
    """numpy's OpenBLAS on ``n`` threads inside (None: as it is); each library's count restored."""
    from symgrad.precise import blas_threads
    libs = blas_threads._found()
    before = [g() for g, _ in libs]
    try:
        if n is not None:
            for _, s in libs:
                s(n)
        yield
    finally:
        for (_, s), b in zip(libs, before):
            s(b)


def _operand(shape: tuple, strides: tuple, rng: np.random.Generator, lib: str):
    """A random float64 operand of ``shape`` laid out with ``strides`` (entries), as recorded."""
    if any(s < 0 for s in strides) or 0 in shape:
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    size = 1 + sum((d - 1) * s for d, s in zip(shape, strides))
    buf = rng.standard_normal(size)
    if lib == "torch":
        import torch
        return torch.from_numpy(buf).as_strided(shape, strides)
    return np.lib.stride_tricks.as_strided(buf, shape, tuple(8 * s for s in strides))


def _call(key: tuple, ops: list):
    _, lib, op, shapes, _, _, extra = key
    if lib == "torch":
        import torch
        return lambda: getattr(torch.ops.aten, op)(*ops)
    if op == "einsum":
        spec, opt = extra
        opt = {"True": True, "False": False}.get(opt, opt)
        return lambda: np.einsum(spec, *ops, optimize=opt)
    if op == "matmul" and extra[0] == "out":
        out = np.empty(np.broadcast_shapes(shapes[0][:-2], shapes[1][:-2])
                       + (shapes[0][-2], shapes[1][-1]))
        return lambda: np.matmul(*ops, out=out)
    return lambda: getattr(np, op)(*ops)


def flops_of(key: tuple) -> tuple[int, bool]:
    """(FLOPs = 2 x multiply-adds, whether a GEMM) of one recorded call."""
    _, lib, op, shapes, _, _, extra = key
    if lib == "torch":
        return _flops_torch(op, shapes), True
    if op == "einsum":
        return _flops_einsum(extra[0], shapes)
    a, b = shapes
    if op == "tensordot" or len(a) < 1 or len(b) < 1:
        return 2 * int(np.prod(a)) * int(np.prod(b)) // max(1, a[-1]), True  # axes=1 form
    batch = int(np.prod(np.broadcast_shapes(a[:-2], b[:-2]))) if len(a) > 2 or len(b) > 2 else 1
    m = a[-2] if len(a) > 1 else 1
    n = b[-1] if len(b) > 1 else 1
    return 2 * batch * m * a[-1] * n, True


def replay(counts: dict, seconds: float = 0.02) -> list[dict]:
    """Every recorded signature replayed alone (numpy on its recorded BLAS thread count, torch
    on torch's): CPU s per call, the min over 3 batches of about ``seconds`` each."""
    rng = np.random.default_rng(0)
    rows = []
    for key, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        fl, gemm = flops_of(key)
        if not gemm:
            rows.append({"key": key, "count": n, "flops": fl, "gemm": False, "cpu_s": None})
            continue
        ops = [_operand(s, st, rng, key[1]) for s, st in zip(key[3], key[4])]
        f = _call(key, ops)
        with _blas_threads(key[5] if key[1] == "numpy" else None):
            c = time.process_time()
            f()
            first = time.process_time() - c
            reps = max(1, min(64, int(seconds / max(first, 1e-6))))
            best = first
            for _ in range(3):
                c = time.process_time()
                for _ in range(reps):
                    f()
                best = min(best, (time.process_time() - c) / reps)
        rows.append({"key": key, "count": n, "flops": fl, "gemm": True, "cpu_s": best})
        del ops, f
    return rows


def fat_rate(n: int = 1536) -> float:
    """FLOP/s of one (n x n) @ (n x n) float64 GEMM on one BLAS thread (min of 3, CPU s)."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    out = np.empty((n, n))
    with _blas_threads(1):
        np.matmul(a, b, out=out)
        best = min(_cpu(lambda: np.matmul(a, b, out=out)) for _ in range(3))
    return 2 * n ** 3 / best


def _cpu(f) -> float:
    c = time.process_time()
    f()
    return time.process_time() - c


def memory_pass(entries: int) -> dict:
    """One read+write pass (x += 1 in place) over ``entries`` float64: min of 3, CPU and wall s."""
    x = np.empty(entries)
    x.fill(0.5)  # its pages faulted in first (not timed)
    runs = []
    for _ in range(3):
        w, c = time.perf_counter(), time.process_time()
        np.add(x, 1.0, out=x)
        runs.append((time.process_time() - c, time.perf_counter() - w))
    del x
    cpu, wall = min(r[0] for r in runs), min(r[1] for r in runs)
    return {"entries": entries, "cpu_s": cpu, "wall_s": wall, "gb_per_s": 16 * entries / wall / 1e9}


def by_phase(rows: list[dict]) -> dict:
    """Per phase: GEMM calls, GFLOP, replayed CPU s of its GEMMs as run."""
    out: dict = {}
    for r in rows:
        if not r["gemm"]:
            continue
        p = out.setdefault(r["key"][0], {"calls": 0, "gflop": 0.0, "gemm_cpu_s": 0.0, "ops": {}})
        p["calls"] += r["count"]
        p["ops"][r["key"][2]] = p["ops"].get(r["key"][2], 0) + r["count"]
        p["gflop"] += r["count"] * r["flops"] / 1e9
        p["gemm_cpu_s"] += r["count"] * r["cpu_s"]
    return out


def _phase_cost(one: dict, two: dict, layers: int) -> dict:
    keys = set(one["phase_cpu_s"]) | set(two["phase_cpu_s"])
    return {k: 2 * one["phase_cpu_s"].get(k, 0) - two["phase_cpu_s"].get(k, 0) + layers * (
        two["phase_cpu_s"].get(k, 0) - one["phase_cpu_s"].get(k, 0)) for k in keys}


def measure(layers: int, tokens: int, check: bool, keep: str | None = None,
            records_only: bool = False) -> dict | None:
    """The records (children), then the timings in this process (module docstring)."""
    import torch

    from benchmark_precise import _machine
    one, two = _child(1, tokens, keep), _child(2, tokens, keep)
    if records_only:
        return None
    full = _child(layers, tokens, keep) if check else None
    counts = scaled(one, two, layers, "gemms")
    dd = scaled(one, two, layers, "dd")
    res = {"layers": layers, "tokens": tokens, "machine": _machine(),
           "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                    stdout=subprocess.PIPE, text=True).stdout.strip(),
           "load_at_start": os.getloadavg()[0], "records": {"1": _summary(one), "2": _summary(two)}}
    if full is not None:
        real = {tuple(map(_tup, k)): n for k, n in full["gemms"]}
        res["records"][str(layers)] = _summary(full)
        res["scaling_check"] = {"signatures": len(real), "scaled_signatures": len(counts),
                                "differ": sum(counts.get(k, 0) != n for k, n in real.items())
                                + sum(k not in real for k in counts)}
        counts = real  # the recorded run's own counts
        dd = {tuple(map(_tup, k)): n for k, n in full["dd"]}
        res["phase_cpu_s"], res["verify_cpu_s"] = full["phase_cpu_s"], full["verify_cpu_s"]
        res["parameters"] = full["parameters"]
    else:
        res["phase_cpu_s"] = {k: round(v, 2) for k, v in _phase_cost(one, two, layers).items()}
        res["verify_cpu_s"] = 2 * one["verify_cpu_s"] - two["verify_cpu_s"] + layers * (
            two["verify_cpu_s"] - one["verify_cpu_s"])
        res["parameters"] = 2 * one["parameters"] - two["parameters"] + layers * (
            two["parameters"] - one["parameters"])
    print("timing torch's own step", flush=True)
    model, args = _model_args(layers, tokens)
    res["torch_cpu_s"], res["torch_wall_s"] = torch_step(model, args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res["torch_1thread_cpu_s"], res["torch_1thread_wall_s"] = torch_step(model, args)
    finally:
        torch.set_num_threads(threads)
    del model, args
    print(f"replaying {len(counts)} signatures", flush=True)
    rows = replay(counts)
    res["phases"] = by_phase(rows)
    res["non_gemm_calls"] = sum(r["count"] for r in rows if not r["gemm"])
    res["dd_products"] = {"count": sum(dd.values()), "gflop_plain": sum(
        2 * k[1] * k[2] * k[3] * k[4] * n for k, n in dd.items() if k[0] == "oracle") / 1e9,
        "blas_calls_predicted": sum(predicted_calls(*k[1:5], k[7]) * n for k, n in dd.items()
                                    if k[0] == "oracle")}
    res["fat_gflops_1thread"] = fat_rate() / 1e9
    res["memory_pass"] = memory_pass(int(res["parameters"]))
    res["load_at_end"] = os.getloadavg()[0]
    res["top"] = [{"key": [str(x) for x in r["key"]], "count": r["count"], "cpu_s": r["count"] *
                   r["cpu_s"], "gflop": r["count"] * r["flops"] / 1e9}
                  for r in sorted((r for r in rows if r["gemm"]), key=lambda r: -r["count"] *
                                  r["cpu_s"])[:12]]
    return res


def _summary(rec: dict) -> dict:
    return {k: rec[k] for k in ("layers", "verdict", "verify_cpu_s", "phase_cpu_s", "load",
                                "parameters")}


PASSES = 3  # the memory passes a compare's floor reads and writes: the oracle's hi, lo, E
#             written once (~1 pass of 16 B an entry), then both backends' values and hi, lo, E
#             read once (8 + 8 + 8 + 4 + 4 = 32 B an entry: 2 passes)
GPU_FLOPS = (50e12, 60e12)  # an H100's FP64 tensor-core rate, the brief's range (not measured)
S2 = 6 / 10  # the oracle's GEMM K-units at S = 2 (levels 1 + 2, tail 3) over S = 3's (1+2+3, 4)


def torch_ref(res: dict) -> float:
    """torch's own step, CPU s: the less of its 2-thread and 1-thread runs (under load MKL's
    OpenMP threads spin while they wait, and their spinning is CPU time the step does not need:
    at load 15 the 2-thread step took 5.6 CPU s, the 1-thread one 1.8, as the 2-thread one did
    on a quiet machine in ``benchmark_ratio.py``)."""
    return min(res["torch_cpu_s"], res["torch_1thread_cpu_s"])


def floors(res: dict) -> list[tuple[str, float]]:
    """(scenario, CPU s) of the design's floor and of what each change would bring."""
    T, P = torch_ref(res), max(res["memory_pass"]["cpu_s"], res["memory_pass"]["wall_s"])
    rate = res["fat_gflops_1thread"] * 1e9
    o = res["phases"].get("oracle", {"gemm_cpu_s": 0.0, "gflop": 0.0})
    b = res["phases"].get("bound", {"gemm_cpu_s": 0.0, "gflop": 0.0})
    base = 2 * T + PASSES * P
    gpu = (o["gflop"] + b["gflop"]) * 1e9
    return [
        ("today (verify, measured)", res["verify_cpu_s"]),
        ("floor: oracle + bound GEMMs as run today + 2 torch steps + 3 passes",
         o["gemm_cpu_s"] + b["gemm_cpu_s"] + base),
        ("the same GEMMs as fat GEMMs (FLOP / one-thread 1536^3 rate)", gpu / rate + base),
        ("S = 2 (oracle GEMMs x 0.6), as run", S2 * o["gemm_cpu_s"] + b["gemm_cpu_s"] + base),
        ("bound's GEMMs merged to fat GEMMs, oracle as run", o["gemm_cpu_s"] + b["gflop"] * 1e9 /
         rate + base),
        ("S = 2 and bound merged, both fat", (S2 * o["gflop"] + b["gflop"]) * 1e9 / rate + base),
        (f"GPU: oracle + bound GEMMs at {GPU_FLOPS[0] / 1e12:.0f} TFLOP/s FP64 "
         "(device seconds) + 2 torch steps + 3 passes on the CPU", gpu / GPU_FLOPS[0] + base),
        ("2 torch steps + 3 passes alone (nothing else)", base),
    ]


def render(res: dict) -> None:
    """reports/benchmark_floor.md's generated section (its hand-written conclusion stays)."""
    from symgrad.atomic import write_section
    m, T = res["machine"], torch_ref(res)
    rate = res["fat_gflops_1thread"]
    mp = res["memory_pass"]
    how = (f"recorded at {res['layers']} layers" if "scaling_check" in res else
           f"scaled from 1 and 2 layers to {res['layers']}")
    L = [f"gpt2 {res['layers']} layers, {res['tokens']} tokens, float64, 1 sample, seed 0, the "
         f"native module as torch_fn; commit {res['commit']}; CPU {m['cpu']}, {m['cores']} cores; "
         f"numpy on {m['numpy_blas']}; {m['torch']}; load {res['load_at_start']:.1f} at start, "
         f"{res['load_at_end']:.1f} at end. GEMM counts {how}"]
    if "scaling_check" in res:
        c = res["scaling_check"]
        L[-1] += (f" (scaled from 1 and 2 layers: {c['scaled_signatures']} signatures against "
                  f"{c['signatures']} recorded, {c['differ']} counts differ)")
    L[-1] += (f". torch's own step (min of 3, same process): {res['torch_cpu_s']:.2f} CPU s / "
              f"{res['torch_wall_s']:.2f} wall s on {m['torch'].split('(')[1].split(',')[1].strip(' )')}"
              f", {res['torch_1thread_cpu_s']:.2f} CPU s / {res['torch_1thread_wall_s']:.2f} wall "
              f"s on 1. One fat GEMM (1536^3, 1 thread): {rate:.1f} GFLOP/s. One read+write pass "
              f"over {mp['entries']:,} float64: {mp['cpu_s']:.2f} CPU s, {mp['wall_s']:.2f} wall s "
              f"({mp['gb_per_s']:.1f} GB/s by the wall)."
              f" DD products the oracle asked for: {res['dd_products']['count']:,} "
              f"({res['dd_products']['gflop_plain']:.1f} GFLOP as plain float64 GEMMs; BLAS "
              f"calls predicted from ozaki's tiling {res['dd_products']['blas_calls_predicted']:,}"
              f"; recorded: {res['phases'].get('oracle', {}).get('ops', {}).get('matmul', 0):,} "
              "np.matmul, besides the spot check's "
              f"{res['phases'].get('oracle', {}).get('ops', {}).get('einsum', 0):,} small einsums).")
    L += ["", "| phase | CPU s today | GEMM calls | GFLOP | GEMMs replayed alone, CPU s (as run) "
          "| GFLOP/s as run | as fat GEMMs, CPU s | today - GEMMs as run |", "|" + "---|" * 8]
    today = dict(res["phase_cpu_s"])
    today["torch_own"] = res["torch_cpu_s"]
    for p in sorted(set(today) | set(res["phases"]), key=lambda p: -today.get(p, 0)):
        g = res["phases"].get(p, {"calls": 0, "gflop": 0.0, "gemm_cpu_s": 0.0})
        t = today.get(p)
        rest = "" if t is None else f"{t - g['gemm_cpu_s']:.2f}"
        if (t or 0) < 0.05 and not g["calls"]:
            continue
        name = "torch's own step" if p == "torch_own" else p
        now = "" if t is None else f"{t:.2f}"
        L.append(f"| {name} | {now} | {g['calls']:,} | "
                 f"{g['gflop']:.1f} | {g['gemm_cpu_s']:.2f} | "
                 f"{g['gflop'] / g['gemm_cpu_s'] if g['gemm_cpu_s'] else 0:.1f} | "
                 f"{g['gflop'] / rate:.2f} | {rest} |")
    L += ["", f"The floors below take torch's step as {T:.2f} CPU s (``torch_ref``) and a memory "
          f"pass as {max(mp['cpu_s'], mp['wall_s']):.2f} s (its wall: a pass is bandwidth), "
          f"{PASSES} of them (``PASSES``).", "",
          "| scenario | CPU s | / torch's step |", "|---|---|---|"]
    L += [f"| {name} | {s:.1f} | {s / T:.1f}x |" for name, s in floors(res)]
    L += ["", "The largest GEMM signatures (count x CPU s per call):", "",
          "| phase | op | shapes | BLAS threads | count | CPU s | GFLOP |", "|---|---|---|---|---|---|---|"]
    L += [f"| {t['key'][0]} | {t['key'][2]} | {t['key'][3]} | {t['key'][5]} | {t['count']:,} | "
          f"{t['cpu_s']:.2f} | {t['gflop']:.1f} |" for t in res["top"]]
    L += s2_table(res.get("s2"))
    write_section(ROOT / "reports" / "benchmark_floor.md", "benchmark_floor", "\n".join(L),
                  head="# The floor of issue 19's ratio (floor19)\n\n"
                       "`python scripts/benchmark_floor.py` (module docstring: how).\n\n")


def s2_table(s2: dict | None) -> list[str]:
    """The S = 2 / S = 3 tail bounds of a verify's DD products (``--s2``), by product shape."""
    if not s2:
        return []
    groups: dict = {}
    for r in s2["products"]:
        g = groups.setdefault(tuple(r["shape"]), [])
        g.append(r)
    L = ["", f"The oracle's DD products of gpt2 {s2['layers']} layer(s), {s2['tokens']} tokens "
         "(`--s2`): the rigorous tail bound per entry over |A||B| (`tail_bound`: oracle19's, "
         "with the run's equilibration and K-blocks), at S = 2 and S = 3:", "",
         "| Bt x M x K x N | products | entries | S = 2 within 1e-26 | S = 2 median | S = 2 worst "
         "| S = 3 worst |", "|---|---|---|---|---|---|---|"]
    for shape, rs in sorted(groups.items(), key=lambda kv: -kv[1][0]["S2"]["worst"]):
        n = sum(r["S2"]["entries"] for r in rs)
        within = sum(r["S2"]["within_1e-26"] * r["S2"]["entries"] for r in rs) / max(n, 1)
        L.append(f"| {' x '.join(map(str, shape))} | {len(rs)} | {n:,} | {100 * within:.2f} % | "
                 f"{np.median([r['S2']['median'] for r in rs]):.2g} | "
                 f"{max(r['S2']['worst'] for r in rs):.2g} | {max(r['S3']['worst'] for r in rs):.2g} |")
    allr = s2["products"]
    n = sum(r["S2"]["entries"] for r in allr)
    L += ["", f"All {len(allr)} products, {n:,} entries: S = 2 within 1e-26 on "
          f"{100 * sum(r['S2']['within_1e-26'] * r['S2']['entries'] for r in allr) / max(n, 1):.2f} %"
          f", worst {max(r['S2']['worst'] for r in allr):.2g} (S = 3: worst "
          f"{max(r['S3']['worst'] for r in allr):.2g})."]
    return L


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--check", action="store_true", help="record at --layers too (use its counts)")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--keep", help="a folder where the records are kept and read back")
    ap.add_argument("--records-only", action="store_true", help="only the 1- and 2-layer "
                    "records (into --keep), no timing")
    ap.add_argument("--s2", type=int, metavar="L", help="S = 2's and S = 3's tail bounds on the "
                    "DD products of an L-layer verify, into the JSON (its own run)")
    ap.add_argument("--record", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.record:
        print(json.dumps(record_child(a.record, a.tokens)))
        return 0
    if a.s2:
        from symgrad.atomic import write_text
        res = json.loads(STORE.read_text()) if STORE.exists() else {}
        res["s2"] = s2_child(a.s2, a.tokens)
        write_text(STORE, json.dumps(res, indent=1, sort_keys=True) + "\n")
        return 0
    if a.render:
        res = json.loads(STORE.read_text())
    else:
        res = measure(a.layers, a.tokens, a.check, a.keep, a.records_only)
        if res is None:
            return 0
        if STORE.exists() and "s2" in (old := json.loads(STORE.read_text())):
            res["s2"] = old["s2"]  # its own run (--s2), kept
        from symgrad.atomic import write_text
        write_text(STORE, json.dumps(res, indent=1, sort_keys=True) + "\n")
    render(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
