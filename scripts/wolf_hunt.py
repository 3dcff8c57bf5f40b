"""Hunt false FAILs on torch's own (correct) ops: ``sg.gradcheck``'s capture path at adversarial
inputs (saturation, tiny magnitudes and subnormals, huge logit spreads, ties and equal rows),
in float64, float32 and bfloat16, several seeds each (explicit generators).

Every FAIL here is torch's own op judged "proven wrong": a bug in symgrad until shown
otherwise. Each case runs what ``sg.gradcheck`` runs (``capture`` → ``verify(torch_fn=...,
backends=("torch_fn",))``) and keeps the Result, so the table can show the counts per status of
the gradient entries (the value column is not judged, as in gradcheck), the worst error over
the fast allowance, and for a failing entry its error over the rigorous enclosure's radius.

Usage (results accumulate in ``reports/wolf_hunt.json``; the table is rebuilt from all of it):

    PYTHONPATH=$PWD python scripts/wolf_hunt.py --ops sigmoid,tanh --seeds 2
    PYTHONPATH=$PWD python scripts/wolf_hunt.py --report      # reports/wolf_hunt.md only

>>> x = _inputs("saturated", (6,), "float64", torch.Generator().manual_seed(0))
>>> bool((x.abs() >= 10).all())
True
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from symgrad.capture.captured import capture
from symgrad.capture.export import arg_names, display_name
from symgrad.compare import FAILING, STATUS_NAMES
from symgrad.config import dtype_name
from symgrad.backends.torch import TORCH_DTYPES
from symgrad.verify import verify

HERE = os.path.dirname(os.path.abspath(__file__))
JSON = os.path.join(HERE, "..", "reports", "wolf_hunt.json")
MD = os.path.join(HERE, "..", "reports", "wolf_hunt.md")
FINDINGS = "## Findings (root causes)"
FAILING_NAMES = tuple(STATUS_NAMES[k] for k in FAILING)
REGIMES = ("normal", "saturated", "tiny", "ties", "spread")
DTYPES = ("float64", "float32", "bfloat16")


def _inputs(regime: str, shape: tuple, dtype: str, gen: torch.Generator) -> torch.Tensor:
    """Adversarial float64 values of ``shape`` for one regime, then cast to ``dtype``.

    Arguments:
        regime: normal (N(0, 4)), saturated (|x| log-uniform in 10..1e4, random signs), tiny
            (|x| log-uniform from 1e-3 of the dtype's smallest normal (bfloat16: from it) to
            1e-2), ties (each row one value), spread (N(0, 1) with one entry per row at
            +-1e3).
        shape: the tensor's shape; a row is its last axis.
        dtype: float64, float32 or bfloat16.
        gen: the explicit generator every draw reads.
    Returns:
        A tensor of ``dtype``.
    """
    td = TORCH_DTYPES[dtype]
    f64 = dict(dtype=torch.float64, generator=gen)
    sign = torch.where(torch.rand(shape, **f64) < 0.5, -1.0, 1.0).to(torch.float64)
    if regime == "normal":
        x = 2 * torch.randn(shape, **f64)
    elif regime == "saturated":
        x = sign * 10 ** (1 + 3 * torch.rand(shape, **f64))
    elif regime == "tiny":
        low = math.log10(torch.finfo(td).smallest_normal) - (3 if dtype != "bfloat16" else 0)
        x = sign * 10 ** (low + (-2 - low) * torch.rand(shape, **f64))
    elif regime == "ties":
        row = 3 * torch.randn(shape[:-1] + (1,), **f64)
        x = row.expand(shape).clone()
    elif regime == "spread":
        x = torch.randn(shape, **f64)
        hot = torch.randint(0, shape[-1], shape[:-1] + (1,), generator=gen)
        x.scatter_(-1, hot, 1e3 * sign[..., :1])
    else:
        raise ValueError(f"regime {regime!r} is none of {REGIMES}")
    return x.to(td)


def _labels(shape: tuple, classes: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, classes, shape, generator=gen)


def _probs(shape: tuple, dtype: str, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, dtype=torch.float64, generator=gen).to(TORCH_DTYPES[dtype])


def _row_probs(shape: tuple, dtype: str, gen: torch.Generator) -> torch.Tensor:
    p = torch.rand(shape, dtype=torch.float64, generator=gen) + 0.05
    return (p / p.sum(-1, keepdim=True)).to(TORCH_DTYPES[dtype])


# op -> (its function of (x, *extra), the input shape, the extra non-differentiated arguments
# as a function of (dtype, generator)); each extra float argument is held at its value
def _none(dtype, gen):
    return ()


V = (6,)
R = (3, 5)
OPS: dict[str, tuple[Callable, tuple, Callable]] = {
    "sigmoid": (torch.sigmoid, V, _none),
    "tanh": (torch.tanh, V, _none),
    "silu": (F.silu, V, _none),
    "mish": (F.mish, V, _none),
    "gelu": (F.gelu, V, _none),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), V, _none),
    "softplus": (F.softplus, V, _none),
    "softplus_b2_t5": (lambda x: F.softplus(x, beta=2.0, threshold=5.0), V, _none),
    "elu": (F.elu, V, _none),
    "celu": (F.celu, V, _none),
    "selu": (F.selu, V, _none),
    "logsigmoid": (F.logsigmoid, V, _none),
    "softmax": (lambda x: F.softmax(x, -1), R, _none),
    "log_softmax": (lambda x: F.log_softmax(x, -1), R, _none),
    "logsumexp": (lambda x: torch.logsumexp(x, -1), R, _none),
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t), R,
                      lambda d, g: (_labels(R[:1], R[1], g),)),
    "cross_entropy_ls": (lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1), R,
                         lambda d, g: (_labels(R[:1], R[1], g),)),
    "nll": (lambda x, t: F.nll_loss(F.log_softmax(x, -1), t), R,
            lambda d, g: (_labels(R[:1], R[1], g),)),
    "layer_norm": (lambda x: F.layer_norm(x, (R[1],)), R, _none),
    "rms_norm": (lambda x: F.rms_norm(x, (R[1],)), R, _none),
    "batch_norm_train": (lambda x: F.batch_norm(x, None, None, training=True), R, _none),
    "group_norm": (lambda x: F.group_norm(x.reshape(1, 3, 5), 3), R, _none),
    "normalize": (lambda x: F.normalize(x, dim=-1), R, _none),
    "cosine_similarity": (lambda x: F.cosine_similarity(x[:2], x[1:], dim=-1), R, _none),
    "pdist": (lambda x: F.pdist(x), R, _none),
    "cdist": (lambda x: torch.cdist(x[:2], x[1:]), R, _none),
    "smooth_l1": (lambda x: F.smooth_l1_loss(x[:2], x[1:]), R, _none),
    "huber": (lambda x: F.huber_loss(x[:2], x[1:], delta=0.5), R, _none),
    "kl_div": (lambda x, t: F.kl_div(F.log_softmax(x, -1), t.log(), reduction="batchmean",
                                     log_target=True), R, lambda d, g: (_row_probs(R, d, g),)),
    "bce": (lambda x, t: F.binary_cross_entropy(torch.sigmoid(x), t), V,
            lambda d, g: (_probs(V, d, g),)),
    "bce_with_logits": (lambda x, t: F.binary_cross_entropy_with_logits(x, t), V,
                        lambda d, g: (_probs(V, d, g),)),
    "sdpa_causal": (lambda x: F.scaled_dot_product_attention(
        x[None, :, :4], x[None, :, 1:], x[None, :, :4], is_causal=True), R, _none),
}
MODULES = {  # name -> (module builder from a generator-seeded init, input shape)
    "gru_cell": (lambda: torch.nn.GRUCell(3, 2), (2, 3)),
    "lstm_cell": (lambda: torch.nn.LSTMCell(3, 2), (2, 3)),
}


def run_case(fn: Callable, args: tuple, dtype: str, *, samples: int = 3, seed: int = 0):
    """What ``sg.gradcheck(fn, args)`` runs, its Result kept (capture, then verify of the
    user's own torch code only).

    Arguments:
        fn: a torch function or module.
        args: its arguments; float tensors with requires_grad are differentiated.
        dtype: the dtype judged.
        samples: the given point and samples - 1 around it.
        seed: the capture's cotangent and the points around.
    Returns:
        The ``Result`` (backend "torch_fn").
    """
    captured = capture(fn, args, module_params="param" if isinstance(fn, torch.nn.Module)
                       else "input", seed=seed, names=arg_names(fn, len(args)),
                       name=display_name(fn), who="wolf_hunt")
    vary = [b.name for b in captured.model.param_blocks]
    return verify(captured.model, torch_fn=captured.torch_fn(None), dtype=dtype, seed=seed,
                  at=captured.at(samples, seed, vary), backends=("torch_fn",))


def judge(result) -> dict:
    """The gradient entries' counts per status, the worst error / allowance among them, and
    the worst failing entry's error / enclosure radius and message."""
    comp = result.comparisons["torch_fn"]
    grads = [k for k, out in enumerate(result.outputs) if out != "value"]
    status = comp.status[:, grads]
    counts = {STATUS_NAMES[s]: int((status == s).sum()) for s in np.unique(status)}
    with np.errstate(all="ignore"):
        ratio = comp.ulps[:, grads] / comp.allowed_ulps[:, grads]
    finite = ratio[np.isfinite(ratio)]
    out = {"counts": counts, "worst": float(finite.max()) if finite.size else None}
    failing = sum(counts.get(k, 0) for k in FAILING_NAMES)
    if failing:
        fails = [f for f in result.findings("failures") if f.output != "value"
                 and f.kind != "precision loss"]
        out["fail"] = fails[0].message() if fails else f"{failing} failing entries"
        if comp.rigorous is not None and comp.error is not None:
            with np.errstate(all="ignore"):
                over = (comp.error[:, grads] / comp.rigorous[:, grads])[
                    np.isin(status, list(FAILING))]
            if np.isfinite(over).any():
                out["worst_over_enclosure"] = float(np.nanmax(over))
    return out


def hunt(names: list[str], dtypes: list[str], regimes: list[str], seeds: int) -> list[dict]:
    """Every (op, dtype, regime, seed) case: its judgement, inputs and CPU seconds."""
    rows = []
    for name in names:
        for dtype in dtypes:
            for regime in regimes:
                for seed in range(seeds):
                    gen = torch.Generator().manual_seed(1000 * seed + 7)
                    t0 = time.process_time()
                    row = {"op": name, "dtype": dtype, "regime": regime, "seed": seed}
                    try:
                        fn, args = _build(name, dtype, regime, gen)
                        row["inputs"] = [float(v) for v in
                                         args[0].detach().double().reshape(-1)[:6]] if args \
                            else []
                        row.update(judge(run_case(fn, args, dtype, seed=seed)))
                    except Exception as exc:  # a case symgrad cannot run: recorded as such
                        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    row["cpu_s"] = round(time.process_time() - t0, 2)
                    rows.append(row)
                    print(_line(row), file=sys.stderr, flush=True)
    return rows


def _build(name: str, dtype: str, regime: str, gen: torch.Generator):
    td = TORCH_DTYPES[dtype]
    if name in MODULES:
        make, shape = MODULES[name]
        with torch.random.fork_rng():  # the module's own init reads the global generator
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
            mod = make().to(td)
        with torch.no_grad():  # its weights at the regime's magnitudes (saturating gates)
            for p in mod.parameters():
                p.copy_(_inputs(regime, tuple(p.shape), dtype, gen))
        x = _inputs("normal", shape, dtype, gen)
        return mod, (x,)
    fn, shape, extra = OPS[name]
    x = _inputs(regime, shape, dtype, gen).requires_grad_(True)
    return fn, (x, *extra(dtype, gen))


def _line(row: dict) -> str:
    what = row.get("error") or row.get("fail") or ""
    return (f"{row['op']:18s} {row['dtype']:8s} {row['regime']:9s} s{row['seed']} "
            f"{row.get('counts', '')} worst {row.get('worst')} {row['cpu_s']}s {what[:300]}")


def _merge(rows: list[dict]) -> list[dict]:
    old = json.load(open(JSON)) if os.path.exists(JSON) else {"rows": []}
    key = lambda r: (r["op"], r["dtype"], r["regime"], r["seed"])  # noqa: E731
    kept = {key(r): r for r in old["rows"]}
    kept.update({key(r): r for r in rows})
    return sorted(kept.values(), key=key)


def report(rows: list[dict], meta: dict) -> str:
    """The Markdown table: one line per (op, dtype, regime), seeds pooled."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["op"], r["dtype"], r["regime"]), []).append(r)
    fails = sum(1 for r in rows if "fail" in r)
    lines = ["# wolf_hunt: torch's own ops at adversarial inputs (sg.gradcheck's path)", "",
             "`PYTHONPATH=$PWD python scripts/wolf_hunt.py` (see its docstring). Each case is "
             "what `sg.gradcheck(op, inputs)` runs: 3 points (the given one and 2 around it), "
             "the gradient entries judged (the value column is not, as in gradcheck). "
             "Regimes: normal N(0, 4); saturated |x| in 10..1e4; tiny |x| from 1e-3 of the "
             "dtype's smallest normal (bfloat16: from it) to 1e-2; ties (each row one value); spread (one entry per row at "
             "+-1e3). Counts are over seeds; worst is the largest error / fast allowance of "
             "any gradient entry; a FAIL row gives the message of its worst failing entry.",
             "", "Runs (each a process; CPU = user + sys of its own clock; load: the 1-minute load "
             "average at its end, on the shared 2-core machine; a later run of the same "
             "cases replaces the earlier rows):", "", *[f"- {r.get('ops')}: {r['cases']} cases, {r['cpu_s']} s CPU, "
                                  f"{r['wall_s']} s wall at load {r['load']:.1f}, max RSS "
                                  f"{r['max_rss_gb']} GB, torch {r['torch']}"
                                  for r in meta.get("runs", [])], "",
             f"**{len(rows)} cases, {fails} with a failing gradient entry (each a false FAIL on "
             "torch's correct op unless shown otherwise).**", "",
             "| op | dtype | inputs | seeds | ok | loss | inconcl. | suspect | FAIL | errors | "
             "worst err/allow |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (op, dtype, regime), rs in sorted(groups.items()):
        c: dict = {}
        for r in rs:
            for k, n in r.get("counts", {}).items():
                c[k] = c.get(k, 0) + n
        failing = sum(c.get(k, 0) for k in FAILING_NAMES)
        worst = [r["worst"] for r in rs if r.get("worst") is not None]
        lines.append(f"| {op} | {dtype} | {regime} | {len(rs)} | {c.get('ok', 0)} | "
                     f"{c.get('precision loss', 0)} | {c.get('inconclusive', 0)} | "
                     f"{c.get('suspect', 0)} | {failing} | "
                     f"{sum(1 for r in rs if 'error' in r)} | "
                     f"{max(worst):.3g} |" if worst else
                     f"| {op} | {dtype} | {regime} | {len(rs)} | - | - | - | - | - | "
                     f"{sum(1 for r in rs if 'error' in r)} | - |")
    failing = [r for r in rows if "fail" in r]
    if failing:
        lines += ["", "## Failing cases", ""]
        for r in failing:
            over = r.get("worst_over_enclosure")
            lines.append(f"- {r['op']} {r['dtype']} {r['regime']} seed {r['seed']} (inputs "
                         f"{', '.join(f'{v:.4g}' for v in r.get('inputs', []))}): {r['fail']}"
                         + (f" (error / enclosure radius up to {over:.3g})" if over else ""))
    errors: dict = {}
    for r in rows:
        if "error" in r:
            errors.setdefault((r["op"], r["error"].split(" at /")[0]), []).append(r["dtype"])
    if errors:
        lines += ["", "## Cases that could not run", ""]
        for (op, err), dts in sorted(errors.items()):
            lines.append(f"- {op} ({len(dts)} cases: {', '.join(sorted(set(dts)))}): {err}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default=",".join([*OPS, *MODULES]))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--regimes", default=",".join(REGIMES))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--report", action="store_true", help="only rebuild the Markdown")
    a = p.parse_args(argv)
    rows = []
    t0, c0 = time.time(), time.process_time()
    if not a.report:
        rows = hunt(a.ops.split(","), [dtype_name(d) for d in a.dtypes.split(",")],
                    a.regimes.split(","), a.seeds)
    merged = _merge(rows)
    meta = json.load(open(JSON))["meta"] if os.path.exists(JSON) else {"runs": []}
    if not a.report:
        run = {"cases": len(rows), "wall_s": round(time.time() - t0, 1),
               "cpu_s": round(time.process_time() - c0, 1),
               "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                                   2), "load": os.getloadavg()[0], "torch": torch.__version__}
        run["ops"] = a.ops
        meta["runs"] = [r for r in meta.get("runs", []) if r.get("ops") != a.ops] + [run]
    with open(JSON, "w") as f:
        json.dump({"meta": meta, "rows": merged}, f, indent=1)
    kept = ""  # the hand-written findings (root causes) below the table survive a rebuild
    if os.path.exists(MD):
        old = open(MD).read()
        kept = old[old.index(FINDINGS):] if FINDINGS in old else ""
    with open(MD, "w") as f:
        f.write(report(merged, meta) + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    main()
