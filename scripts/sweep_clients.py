"""False-alarm sweep of issue 18's real clients: every client is correct, so any "fail" is a
false alarm. Writes reports/sweep_clients.md and reports/sweep_clients.json (atomically, as one
set, after every client so an interrupted sweep leaves the last complete table).

Clients, each at small shapes, per seed x {float64, float32}, through the public API:
* nanoGPT and Hugging Face GPT2LMHeadModel built from a config (no weights downloaded), on the
  layout path (``sg.verify(tiny_gpt, module=m)``: parameters and tokens are symgrad's draws at
  the seed, loaded into the module, so both layouts see the same draws and differ in their GELU,
  erf vs tanh) and captured whole with no layout table (the module's own weights at the seed)
  (``sg.verify(module=loss_wrapper, inputs=(ids, targets))``);
* a CNN with BatchNorm and max-pool (train and eval mode), an LLaMA-style block (RMSNorm, RoPE,
  SwiGLU, grouped-query causal SDPA), ``nn.LSTM``, a top-2 mixture of experts and a module with
  a custom ``autograd.Function``, through ``sg.verify(module=..., inputs=...)``; the custom
  Function also through ``sg.gradcheck`` (its bool / raised verdict only).

Per seed, a module is constructed at that seed (``tests.clients.seeded``: torch's global
generator forked and restored) and its inputs drawn from an explicit ``torch.Generator``; the
seed is also ``sg.verify``'s (the points around the example, the cotangents). The builders live
in ``tests/clients.py`` (shared with the tests). Run niced:

    nice -n 5 python scripts/sweep_clients.py [--seeds 20] [--only cnn-train,moe] [--out reports]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad.atomic import write_set  # noqa: E402
from tests import clients as C  # noqa: E402
from tests.gptmodels import nanogpt  # noqa: E402

DTYPES = ("float64", "float32")
GPT = {"vocab_size": 8, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
       "drop_rate": 0.0}
NANO = {**GPT, "qkv_bias": True, "tie_weights": True, "gelu": "erf"}
HF = {**GPT, "qkv_bias": True, "tie_weights": True}
SAMPLES = 4  # points per run: the example and 3 around it (the module path's default)
UNDECIDED = ("inconclusive", "suspect")
# a planted control's relative error in one parameter's gradient, per dtype: far below what a
# loose check sees (float32's ULP is 1.2e-7, float64's 2.2e-16), far above rounding
DELTA = {"float64": 1e-6, "float32": 1e-3}


class Client(NamedTuple):
    """A correct real client: ``run(seed, dtype)`` verifies it once and returns a Result, or
    (gradcheck) a verdict string."""

    name: str
    path: str  # how it is verified, in words
    run: Callable


def _gen(seed: int) -> torch.Generator:
    """The inputs' generator of a seed (apart from the construction's stream at ``seed``)."""
    return torch.Generator().manual_seed(1_000_003 * (seed + 1))


def _x(seed: int, dtype: str, *shape: int, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=getattr(torch, dtype)) \
        .requires_grad_(grad)


def _tokens(seed: int, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and next-token targets, (1, context_length) each."""
    ids = torch.randint(cfg["vocab_size"], (1, cfg["context_length"] + 1), generator=_gen(seed))
    return ids[:, :-1], ids[:, 1:]


def _nano(seed: int, dtype: str) -> nn.Module:
    with C.seeded(seed):
        return nanogpt.from_book_config(NANO).to(getattr(torch, dtype)).eval()


def _hf(seed: int, dtype: str) -> nn.Module:
    import transformers
    hc = transformers.GPT2Config(
        vocab_size=HF["vocab_size"], n_positions=HF["context_length"], n_embd=HF["emb_dim"],
        n_layer=HF["n_layers"], n_head=HF["n_heads"], resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
    with C.seeded(seed):
        return transformers.GPT2LMHeadModel(hc).to(getattr(torch, dtype)).eval()


def _planted(m: nn.Module, param: str | None, dtype: str) -> nn.Module:
    """``m`` with ``param``'s gradient x (1 + DELTA[dtype]) by a hook; None: ``m`` as is."""
    return m if param is None else C.planted_hook(m, param, 1 + DELTA[dtype])


def _built(build: Callable, seed: int, dtype: str, plant: str | None = None) -> nn.Module:
    with C.seeded(seed):
        return _planted(build().to(getattr(torch, dtype)), plant, dtype)


def _cnn(train: bool, wrong: float | None = 1.0) -> Callable:
    """``wrong``: conv1.weight's gradient factor (None: 1 + DELTA[dtype])."""
    def run(seed, dtype):
        m = C.cnn(getattr(torch, dtype), 1 + DELTA[dtype] if wrong is None else wrong,
                  seed=seed)
        y = torch.randint(3, (2,), generator=_gen(seed + 7919))
        return sg.verify(module=m, inputs=_x(seed, dtype, 2, 2, 4, 4), targets=y,
                         loss=F.cross_entropy, train=train, samples=SAMPLES, seed=seed,
                         dtype=dtype)
    return run


def _module(build: Callable, *shape: int, grad: bool = False,
            plant: str | None = None) -> Callable:
    """A module of one input, no loss (a random cotangent on a non-scalar output)."""
    def run(seed, dtype):
        return sg.verify(module=_built(build, seed, dtype, plant),
                         inputs=_x(seed, dtype, *shape, grad=grad), samples=SAMPLES,
                         seed=seed, dtype=dtype)
    return run


def _custom(planted: bool = False) -> Callable:
    """Scaled (its gain through Gain.apply); ``planted``: Gain's backward x (1 + DELTA)."""
    def run(seed, dtype):
        with C.gain_factor(1 + DELTA[dtype] if planted else 1.0):
            return sg.verify(module=_built(C.Scaled, seed, dtype),
                             inputs=_x(seed, dtype, 4, 3), targets=_x(seed + 7919, dtype, 4, 3),
                             loss=F.mse_loss, samples=SAMPLES, seed=seed, dtype=dtype)
    return run


def _custom_gradcheck(planted: bool = False) -> Callable:
    """sg.gradcheck on Gain.apply itself: its verdict read from what it returns or raises."""
    def run(seed, dtype):
        x, g = _x(seed, dtype, 4, 3, grad=True), _x(seed + 7919, dtype, 3, grad=True)
        with C.gain_factor(1 + DELTA[dtype] if planted else 1.0):
            try:
                return "pass" if sg.gradcheck(C.Gain.apply, (x, g), seed=seed) else "fail"
            except sg.GradcheckError as e:
                return ("inconclusive" if "inconclusive for" in str(e).split("\n")[0]
                        else "fail")
    return run


def _gpt_layout(build: Callable, cfg: dict, plant: str | None = None) -> Callable:
    def run(seed, dtype):
        return sg.verify(C.tiny_gpt(cfg), module=_planted(build(seed, dtype), plant, dtype),
                         samples=SAMPLES, seed=seed, dtype=dtype)
    return run


def _gpt_captured(build: Callable, wrap: Callable, cfg: dict,
                  plant: str | None = None) -> Callable:
    def run(seed, dtype):
        return sg.verify(module=wrap(_planted(build(seed, dtype), plant, dtype)),
                         inputs=_tokens(seed, cfg), samples=SAMPLES, seed=seed, dtype=dtype)
    return run


CLIENTS = {c.name: c for c in (
    Client("nanogpt-layout", "sg.verify(tiny_gpt, module=nanoGPT): parameters and "
           "tokens drawn by symgrad at the seed", _gpt_layout(_nano, NANO)),
    Client("nanogpt-captured", "sg.verify(module=NanoLoss(nanoGPT), inputs=(ids, targets))",
           _gpt_captured(_nano, C.NanoLoss, NANO)),
    Client("hf-gpt2-layout", "sg.verify(tiny_gpt, module=GPT2LMHeadModel): the same draws as "
           "nanoGPT's at a seed (GELU tanh, not erf)",
           _gpt_layout(_hf, HF)),
    Client("hf-gpt2-captured", "sg.verify(module=HFLoss(GPT2LMHeadModel), inputs=(ids, "
           "targets))", _gpt_captured(_hf, C.HFLoss, HF)),
    Client("cnn-train", "sg.verify(module=cnn, inputs=x (2,2,4,4), loss=cross_entropy, "
           "train=True)", _cnn(True)),
    Client("cnn-eval", "sg.verify(module=cnn, inputs=x (2,2,4,4), loss=cross_entropy)",
           _cnn(False)),
    Client("llama-block", "sg.verify(module=LlamaBlock, inputs=x (1,4,8))",
           _module(C.LlamaBlock, 1, 4, 8)),
    Client("lstm", "sg.verify(module=LSTMOut(nn.LSTM(3, 4)), inputs=x (1,3,3) requires_grad)",
           _module(C.LSTMOut, 1, 3, 3, grad=True)),
    Client("moe-top2", "sg.verify(module=MoE, inputs=x (5,4))", _module(C.MoE, 5, 4)),
    Client("custom-function", "sg.verify(module=Scaled (Gain.apply), inputs=x (4,3), "
           "loss=mse_loss)", _custom()),
    Client("custom-function-gradcheck", "sg.gradcheck(Gain.apply, (x (4,3), g (3,)))",
           _custom_gradcheck()),
)}

_D = "x (1 + δ)"
_QKV, _FC = "transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_proj.weight"
# every client again with a wrong backward: what the sweep must see fail (its controls); δ is
# DELTA[dtype]; "by a hook": a tensor hook on the parameter, the forward untouched
PLANTED = {c.name: c for c in (
    Client("nanogpt-layout", f"{_QKV}'s gradient {_D} by a hook", _gpt_layout(_nano, NANO, _QKV)),
    Client("nanogpt-captured", f"{_QKV}'s gradient {_D} by a hook",
           _gpt_captured(_nano, C.NanoLoss, NANO, _QKV)),
    Client("hf-gpt2-layout", f"{_FC}'s gradient {_D} by a hook", _gpt_layout(_hf, HF, _FC)),
    Client("hf-gpt2-captured", f"{_FC}'s gradient {_D} by a hook",
           _gpt_captured(_hf, C.HFLoss, HF, _FC)),
    Client("cnn-train", "conv1.weight's gradient x1.5 (behind the max-pool)", _cnn(True, 1.5)),
    Client("cnn-eval", f"conv1.weight's gradient {_D} (behind the max-pool)", _cnn(False, None)),
    Client("llama-block", f"q.weight's gradient {_D} by a hook (through RoPE and SDPA)",
           _module(C.LlamaBlock, 1, 4, 8, plant="q.weight")),
    Client("lstm", f"lstm.weight_hh_l0's gradient {_D} by a hook",
           _module(C.LSTMOut, 1, 3, 3, grad=True, plant="lstm.weight_hh_l0")),
    Client("moe-top2", "the router's gradient dropped (x0)",
           _module(lambda: C.MoE(router_grad=0.0), 5, 4)),
    Client("custom-function", f"Gain's backward for the gain {_D}", _custom(True)),
    Client("custom-function-gradcheck", f"Gain's backward for the gain {_D}",
           _custom_gradcheck(True)),
)}


def measure(result) -> dict:
    """One run's verdict, worst error / allowance and undecided entries over the deciding
    backends (a gradcheck's bool: the verdict alone)."""
    if isinstance(result, str):
        return {"verdict": result}
    ratios, undecided, total = [], 0, 0
    for b in result.deciding:
        s = result.summary(b)
        ratios.append(float(s["worst_error_over_allowance"]))
        undecided += sum(s["counts"].get(k, 0) for k in UNDECIDED)
        total += sum(s["counts"].values())
    out = {"verdict": result.verdict, "ratio": max(ratios, default=float("nan")),
           "undecided": undecided, "entries": total}
    if result.verdict == "fail":
        out["findings"] = [f.message() for f in result.findings("failures")[:3]]
    undecided = [f for f in result.undecided if f.backend in result.deciding]
    if undecided:  # why the run is inconclusive: its first undecided entry, in words
        out["undecided_example"] = undecided[0].message()[:400]
    return out


def sweep(client: Client, dtype: str, seeds: range) -> dict:
    """``client`` at every seed in ``dtype``: verdict counts, worst ratio, undecided share."""
    counts, runs, t0 = Counter(), [], time.perf_counter()
    for seed in seeds:
        t = time.perf_counter()
        try:
            m = measure(client.run(seed, dtype))
        except sg.SymgradError as e:  # a refusal: reported, never counted as a pass
            m = {"verdict": "error", "error": str(e)[:300]}
        m.update(seed=seed, seconds=round(time.perf_counter() - t, 2))
        counts[m["verdict"]] += 1
        runs.append(m)
    ratios = [(r["ratio"], r["seed"]) for r in runs if np.isfinite(r.get("ratio", np.nan))]
    worst = max(ratios, default=(float("nan"), None))
    entries = sum(r.get("entries", 0) for r in runs)
    return {"client": client.name, "path": client.path, "dtype": dtype, "seeds": len(runs),
            "pass": counts["pass"], "inconclusive": counts["inconclusive"],
            "fail": counts["fail"], "error": counts["error"], "worst_ratio": worst[0],
            "worst_seed": worst[1],
            "undecided_share": (sum(r.get("undecided", 0) for r in runs) / entries
                                if entries else None),
            "seconds": round(time.perf_counter() - t0, 1), "runs": runs}


def _fmt(v, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def markdown(doc: dict) -> str:
    run = doc["run"]
    more = f", the controls {run['planted_seconds']} s more" if run.get("planted_seconds") else ""
    if run.get("cpu_seconds") is not None:
        more += (f"; {run['cpu_seconds']} CPU s (user + sys, the sweep's own) at a 1-minute "
                 f"load of {run['load'][0]:.1f} -> {run['load'][1]:.1f}")
    lines = ["# Real clients over many seeds: the false-alarm sweep (scripts/sweep_clients.py)",
             "", f"Every client is correct code, so every `fail` is a false alarm. {run['seeds']} "
             f"seeds (from {run['first_seed']}) x {', '.join(run['dtypes'])}, {SAMPLES} points "
             f"per run (the example and {SAMPLES - 1} around it); torch {run['torch']}; "
             f"{run['seconds']} s in all{more} (2 shared cores, niced). Rerun: `nice -n 5 python "
             f"scripts/sweep_clients.py --seeds {run['seeds']}"
             f"{' --first-seed ' + str(run['first_seed']) if run['first_seed'] else ''}`.", "",
             "worst ratio: the worst error / allowance over the seeds' decided entries (1 is "
             "the limit; seed in brackets). undecided: the share of compared entries that were "
             "inconclusive or suspect (a gradcheck row gives its verdict only).", "",
             "| client | dtype | seeds | pass | inconclusive | fail | worst ratio | undecided "
             "| time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        share = r["undecided_share"]
        fail = r["fail"] + r["error"]
        lines.append(f"| {r['client']} | {r['dtype']} | {r['seeds']} | {r['pass']} | "
                     f"{r['inconclusive']} | {'**' + str(fail) + '**' if fail else 0} | "
                     f"{_fmt(r['worst_ratio'], '.3g')} [{_fmt(r['worst_seed'], 'd')}] | "
                     f"{_fmt(None if share is None else 100 * share, '.2f')}"
                     f"{'' if share is None else ' %'} | {r['seconds']} |")
    if doc.get("planted"):
        missed = [(r, x) for r in doc["planted"] for x in r["runs"] if x["verdict"] != "fail"]
        lines += ["", "## Controls: the same clients with a planted wrong backward", "",
                  "The sweep must see these fail at every seed (else a clean table above means "
                  "nothing). δ, a planted relative error in one parameter's gradient: "
                  + ", ".join(f"{v:g} in {k}" for k, v in DELTA.items()) + " (far above "
                  "rounding, far below what a loose check sees).", "",
                  "| client | planted bug | dtype | seeds | pass | inconclusive | fail |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['client']} | {r['path']} | {r['dtype']} | {r['seeds']} | "
                  f"{'**' + str(r['pass']) + '**' if r['pass'] else 0} | {r['inconclusive']} "
                  f"| {r['fail']} |" for r in doc["planted"]]
        lines += ["", "Missed (a planted control not failed): " + (
            "none." if not missed else "; ".join(
                f"{r['client']} {r['dtype']} seed {x['seed']}: {x['verdict']}"
                for r, x in missed))]
    lines += ["", "## How each client is verified", ""]
    lines += [f"* `{c}`: {p}" for c, p in doc["paths"].items()]
    why = [(r, x) for r in doc["rows"] for x in r["runs"] if x.get("undecided_example")]
    if why:
        lines += ["", "## Why runs are inconclusive (each row's first such run)", ""]
        seen = set()
        for r, x in why:
            if (r["client"], r["dtype"]) not in seen:
                seen.add((r["client"], r["dtype"]))
                lines.append(f"* {r['client']} {r['dtype']} seed {x['seed']} "
                             f"({x['undecided']} of {x['entries']} entries): "
                             f"{x['undecided_example'].replace('|', '/')}")
    fails = [(r, x) for r in doc["rows"] for x in r["runs"] if x["verdict"] in ("fail", "error")]
    lines += ["", "## False alarms", ""]
    if not fails:
        lines.append("None: no correct client failed at any seed or dtype.")
    for r, x in fails:
        why = "; ".join(x.get("findings", [])) or x.get("error", "")
        lines.append(f"* {r['client']} {r['dtype']} seed {x['seed']}: {x['verdict']}: "
                     f"{why.replace('|', '/')}")
    return "\n".join(lines) + "\n"


def write(out: Path, doc: dict) -> None:
    write_set(out, {"sweep_clients.json": json.dumps(doc, indent=1, default=str) + "\n",
                    "sweep_clients.md": markdown(doc)})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds per client and dtype")
    ap.add_argument("--first-seed", type=int, default=0, help="the first seed (more seeds "
                    "beyond an earlier sweep: --first-seed 20)")
    ap.add_argument("--only", default=None, help=f"comma-separated clients of {list(CLIENTS)}")
    ap.add_argument("--planted-seeds", type=int, default=2,
                    help=f"seeds per planted control {list(PLANTED)} and dtype (0: none)")
    ap.add_argument("--planted-only", action="store_true",
                    help="rerun the controls only, keeping the rows of the sweep_clients.json "
                    "already in --out")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--out", default=str(ROOT / "reports"))
    a = ap.parse_args(argv)
    names = a.only.split(",") if a.only else list(CLIENTS)
    unknown = [n for n in names if n not in CLIENTS]
    if unknown:
        ap.error(f"--only: unknown client(s) {unknown}; choose from {list(CLIENTS)}")
    dtypes = a.dtypes.split(",")
    if set(dtypes) - set(DTYPES):
        ap.error(f"--dtypes: {sorted(set(dtypes) - set(DTYPES))} not swept; choose from {DTYPES}")
    t0, c0, first = time.perf_counter(), time.process_time(), a.first_seed
    load0 = os.getloadavg()[0]
    doc = {"run": {"seeds": a.seeds, "first_seed": first, "dtypes": dtypes, "samples": SAMPLES,
                   "torch": torch.__version__, "seconds": 0.0},
           "paths": {n: CLIENTS[n].path for n in names}, "rows": [], "planted": []}
    jobs = [("rows", CLIENTS[n], range(first, first + a.seeds)) for n in names]
    if a.planted_only:
        kept = Path(a.out) / "sweep_clients.json"
        if not kept.exists():
            ap.error(f"--planted-only: no {kept} to keep the rows of; run the sweep first")
        doc = {**json.loads(kept.read_text()), "planted": []}
        jobs = []
    jobs += [("planted", PLANTED[n], range(first, first + a.planted_seeds)) for n in names
             if n in PLANTED and a.planted_seeds]
    for key, client, seeds in jobs:
        for dtype in dtypes:
            row = sweep(client, dtype, seeds)
            doc[key].append(row)
            doc["run"]["planted_seconds" if a.planted_only else "seconds"] = round(
                time.perf_counter() - t0, 1)
            if not a.planted_only:
                doc["run"].update(cpu_seconds=round(time.process_time() - c0, 1),
                                  load=[load0, os.getloadavg()[0]])
            write(Path(a.out), doc)
            print(f"{'planted ' if key == 'planted' else ''}{client.name:26s} {dtype}: pass "
                  f"{row['pass']} inconclusive {row['inconclusive']} fail {row['fail']} error "
                  f"{row['error']} worst {row['worst_ratio']:.3g} ({row['seconds']} s)",
                  flush=True)
    print(f"wrote {a.out}/sweep_clients.md ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
