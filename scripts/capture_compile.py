"""Eager against ``torch.compile`` on a ResNet-18-shaped network, float32: capture the network
once (``sg.capture``), then verify each path's autograd gradient (the paths of
``symgrad.modules.paths``: "eager" and "compile") against the exact derivative of the captured
forward, and write each path's worst error over its allowance side by side. Writes
reports/capture_compile.md and .json.

ResNet-18's layers (torchvision's ``resnet18`` topology: 7x7/2 stem conv, BatchNorm, ReLU,
3x3/2 max-pool, four stages of two BasicBlocks with 1x1/2 downsample shortcuts, adaptive
average pool, linear) at a chosen width (64 is torchvision's; narrower keeps the exact check
within the 2-core budget), in train mode (batch statistics) or eval mode (running statistics), with a cross-entropy
loss.

    python scripts/capture_compile.py [--mode train] [--width 8] [--batch 2] [--size 64] [--samples 1]
        [--max-keys N] [--name width64]

``--max-keys`` sets ``symgrad.tensor.sides.MAX_KEYS`` in this process only (reached kinks per
sample evaluated side by side; beyond it the base, the proven enclosure and a search of that
many kinks' single changes, ``sides._lean``; until kinkcap every entry they reach was
inconclusive): at width 64 train mode reaches 1,361 kinks (1,220 once the max-pool's ties
between ReLU zeros are dropped, ``tensor.constant_ties``), eval mode 336 (188). ``--name`` writes
capture_compile_<name>.md and capture_compile_<name>_<mode>.json instead (another width's page
beside the width-4 one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad.modules.paths import PATHS, skip_reason, wrapper  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402
import symgrad.tensor.sides as sides  # noqa: E402


TARGET_SECONDS = 120  # issue 18: one path's verification at batch 2, 64x64, float32, 2 cores


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18 layers at width ``w`` (64: the original)."""

    def __init__(self, w: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin, layers = [w, 2 * w, 4 * w, 8 * w], w, []
        for i, c in enumerate(widths):
            layers.append(nn.Sequential(BasicBlock(cin, c, 1 if i == 0 else 2),
                                        BasicBlock(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w, classes)

    def forward(self, x, y):
        h = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return F.cross_entropy(self.fc(torch.flatten(self.avgpool(h), 1)), y)


def path_fn(captured, name: str):
    """The torch_fn of one path: eager, or the user's call compiled (inductor)."""
    fn = captured.torch_fn()
    wrap = wrapper(name)
    return fn if wrap is None else _compiled(fn, wrap)


def _compiled(fn, wrap):
    compiled = wrap(lambda blocks: fn(**blocks))

    def run(**blocks):
        return compiled(blocks)
    run.__name__ = fn.__name__
    return run


def worst(result, backend: str = "torch_fn") -> dict:
    """The worst error over its allowance (symgrad's own summary), its entry, the counts, and
    why the first undecided entry could not be decided."""
    summary = result.summary(backend)
    rows = [f for f in result.worst if f.backend == backend]
    top = max(rows, key=lambda f: result.measure(f)["error_over_allowance"], default=None)
    undecided = [f for f in result.undecided if f.backend == backend]
    m = result.measures(backend)
    with np.errstate(invalid="ignore", divide="ignore"):
        every = np.where(m.allowed > 0, m.error / m.allowed, np.where(m.error == 0, 0, np.inf))
    return {"verdict": result.verdict,
            "worst_over_allowance": summary["worst_error_over_allowance_decided"],
            "worst_over_allowance_every_entry": float(np.nanmax(every)) if every.size else 0.0,
            "worst_relative_error": summary["worst_relative_error"],
            "worst_entry": top.output if top is not None else None,
            "counts": {k: v for k, v in result.counts(backend).items() if v},
            "undecided_example": undecided[0].message() if undecided else None}


def capture_cost(args) -> dict:
    """Capture and derive times of the network at torchvision's width (64), train mode."""
    torch.manual_seed(0)
    net = ResNet18(64).float().train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    t0, c0, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    captured = sg.capture(net, (x, torch.arange(args.batch) % 10), name="resnet18")
    t1, c1 = time.perf_counter(), time.process_time()
    captured.model.gradient  # the exact derivative's program
    t2, c2 = time.perf_counter(), time.process_time()
    return {"width": 64, "batch": args.batch, "size": args.size,
            "parameters": sum(p.numel() for p in net.parameters()),
            "capture_seconds": t1 - t0, "derive_seconds": t2 - t1,
            "capture_cpu_seconds": c1 - c0, "derive_cpu_seconds": c2 - c1,
            "load_average": [load, os.getloadavg()[0]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--mode", choices=["train", "eval"], default="train")
    ap.add_argument("--paths", nargs="+", default=["eager", "compile"])
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--max-keys", type=int, default=None,
                    help="symgrad.tensor.sides.MAX_KEYS for this run (default: symgrad's)")
    ap.add_argument("--name", default="",
                    help="page capture_compile_<name>.md, JSON capture_compile_<name>_<mode>.json")
    ap.add_argument("--capture-only", action="store_true",
                    help="time capture + derive at torchvision's width 64 only")
    ap.add_argument("--page-only", action="store_true",
                    help="rewrite the .md from the .json in --out (no run)")
    args = ap.parse_args()
    out = Path(args.out)
    stem = f"capture_compile_{args.name}" if args.name else "capture_compile"
    if args.max_keys is not None:
        sides.MAX_KEYS = args.max_keys  # this process only
    if args.page_only:
        write_text(out / f"{stem}.md", pages(out, stem))
        return
    if args.capture_only:
        write_text(out / "capture_compile_capture.json",
                   json.dumps(capture_cost(args), indent=1) + "\n")
        write_text(out / "capture_compile.md", pages(out))
        return
    torch.manual_seed(0)
    net = getattr(ResNet18(args.width).float(), args.mode)()
    n_params = sum(p.numel() for p in net.parameters())
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.arange(args.batch) % 10
    t0 = time.perf_counter()
    captured = sg.capture(net, (x, y), name="resnet18")
    t_capture = time.perf_counter() - t0
    rows = {}
    for name in args.paths:
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = sg.verify(captured.model, torch_fn=path_fn(captured, name), dtype="float32",
                              at=captured.at(args.samples), backends=("torch_fn",))
            rows[name] = {**worst(r), "seconds": time.perf_counter() - t0,
                          "cpu_seconds": time.process_time() - c0}
        except Exception as exc:  # noqa: BLE001 - a path that cannot run is reported
            rows[name] = {"verdict": "skipped", "seconds": time.perf_counter() - t0,
                          "reason": skip_reason(name, exc, 0, "cpu")}
        rows[name]["load_average"] = [load_before, os.getloadavg()[0]]  # 1-minute, shared box
        print(name, rows[name], flush=True)
    data = {"mode": args.mode, "width": args.width, "batch": args.batch, "size": args.size,
            "samples": args.samples, "parameters": n_params,
            "capture_seconds": t_capture, "paths": rows, "torch": torch.__version__,
            "max_keys": sides.MAX_KEYS,
            "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    write_text(out / f"{stem}_{args.mode}.json",
               json.dumps(data, indent=1, default=str) + "\n")
    write_text(out / f"{stem}.md", pages(out, stem))
    print(f"wrote {out / f'{stem}.md'}")


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3g}"


def _fmt1(v) -> str:
    return "" if v is None else f"{v:.1f}"


def _met(cpu: float | None) -> str:
    return "not measured" if cpu is None else "met" if cpu <= TARGET_SECONDS else "missed"


def pages(out: Path, stem: str = "capture_compile") -> str:
    """The page: one section per mode run (<stem>_<mode>.json in ``out``)."""
    head = ["# Eager against torch.compile: a ResNet-18-shaped network in float32", "",
            "Generated by `scripts/capture_compile.py` (`--page-only` rebuilds it from the "
            "JSON files); do not edit. Which kinks train mode reaches and how many entries "
            "they leave undecided, at widths 4 and 16 with issue 18's levers off and on: "
            "`reports/resnet_kinks.md` (`scripts/resnet_kinks.py`).", ""]
    cost = out / "capture_compile_capture.json"
    if cost.exists():
        c = json.loads(cost.read_text())
        head += [f"Capture + derive at torchvision's width 64 ({c['parameters']:,} parameters, "
                 f"batch {c['batch']}, {c['size']}x{c['size']}): capture "
                 f"{c['capture_seconds']:.1f} s, derive {c['derive_seconds']:.2f} s"
                 + (f" wall ({c['capture_cpu_seconds']:.1f} and {c['derive_cpu_seconds']:.2f}"
                    f" CPU s, 1-minute load {c['load_average'][0]:.1f} -> "
                    f"{c['load_average'][1]:.1f})" if "capture_cpu_seconds" in c else "")
                 + " (`--capture-only`).", ""]
    runs = [json.loads((out / f"{stem}_{mode}.json").read_text())
            for mode in ("train", "eval") if (out / f"{stem}_{mode}.json").exists()]
    if runs:
        head += ["Side by side: verdict, worst error / allowance over decided entries (over "
                 "every entry, undecided ones included); <= 1 is within rounding:", "", "| mode | " + " | ".join(runs[0]["paths"]) + " |",
                 "| --- |" + " --- |" * len(runs[0]["paths"])]
        for d in runs:
            head.append(f"| {d.get('mode', 'train')} | " + " | ".join(
                f"{row['verdict']}, {_fmt(row.get('worst_over_allowance'))} "
                f"({_fmt(row.get('worst_over_allowance_every_entry'))})"
                for row in d["paths"].values()) + " |")
        head.append("")
    return "\n".join(head + [page(d) for d in runs])


def page(d: dict) -> str:
    """One mode's section."""
    lines = [
        f"## {d.get('mode', 'train')} mode",
        "",
        f"ResNet-18's layers (stem 7x7/2 conv, BatchNorm, max-pool, 4 stages x 2 BasicBlocks, "
        f"1x1 downsample shortcuts, adaptive average pool, linear, cross-entropy) at width "
        f"{d['width']} (torchvision's is 64), {d['parameters']:,} parameters, "
        f"{d.get('mode', 'train')} mode, "
        f"batch {d['batch']}, {d['size']}x{d['size']} input, float32; "
        f"{d['samples']} sample(s)"
        + ("" if d.get("max_keys") is None else
           f"; reached kinks evaluated side by side per sample: up to {d['max_keys']} "
           f"(`symgrad.tensor.sides.MAX_KEYS`"
           f"{'' if d['max_keys'] == 256 else ', raised by --max-keys; symgrad: 256'})")
        + ". Captured once by `sg.capture` "
        f"({d['capture_seconds']:.1f} s); each path's autograd gradient is compared with the "
        "exact derivative of the captured forward, in float32 ULPs, against symgrad's "
        "rounding-error allowance for that entry. A ratio <= 1 is within rounding.",
        "",
        "| path | what runs | verdict | worst error / allowance (decided entries) | "
        "worst error / allowance (every entry) | worst relative error | worst entry | entries "
        "| seconds | CPU seconds |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for name, row in d["paths"].items():
        counts = ", ".join(f"{k} {v}" for k, v in row.get("counts", {}).items())
        ratio, rel = row.get("worst_over_allowance"), row.get("worst_relative_error")
        lines.append(
            f"| {name} | {PATHS[name].description} | {row['verdict']} | "
            f"{'' if ratio is None else f'{ratio:.3g}'} | "
            f"{_fmt(row.get('worst_over_allowance_every_entry'))} | "
            f"{'' if rel is None else f'{rel:.2g}'} | {row.get('worst_entry') or ''} | "
            f"{counts or row.get('reason', '')} | {row['seconds']:.1f} | "
            f"{_fmt1(row.get('cpu_seconds'))} |")
    loads = [f"{name} {row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f}"
             for name, row in d["paths"].items() if row.get("load_average")]
    if loads:
        lines += ["", "Seconds are wall time of one path's whole verification (capture excluded; "
                  "the compile path includes inductor's compilation) against the issue's target "
                  f"of {TARGET_SECONDS} s: by wall " + ", ".join(
                      f"{name} {'met' if row['seconds'] <= TARGET_SECONDS else 'missed'}"
                      for name, row in d["paths"].items()) + "; by CPU seconds " + ", ".join(
                      f"{name} {_met(row.get('cpu_seconds'))}"
                      for name, row in d["paths"].items()) + " (compile workers in other "
                  "processes, if inductor starts any, are not counted); the machine is shared, its "
                  "1-minute load average at each path's start -> end: " + ", ".join(loads)
                  + " (on 2 cores: above 2, other people's jobs took a share; CPU seconds, "
                  "this process's own, are what the path cost whatever the load)."]
    shares = [f"{name} {row['counts'].get('inconclusive', 0) / sum(row['counts'].values()):.2%}"
              for name, row in d["paths"].items() if row.get("counts")]
    if shares:
        lines += ["", "Inconclusive share of the compared entries: " + ", ".join(shares) + "."]
    if d.get("max_rss_gib"):
        lines += ["", f"Peak resident set of the run (this process, every path): "
                  f"{d['max_rss_gib']:.2f} GiB."]
    for name, row in d["paths"].items():
        if row.get("undecided_example"):
            lines += ["", f"Why entries of {name} are inconclusive (the first one): "
                      f"{row['undecided_example']}"]
    lines += ["", f"torch {d['torch']}, {d['machine']} (a shared 2-core machine).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
