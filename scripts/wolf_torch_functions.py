"""Does symgrad cry wolf on torch's own functions? Correct torch code (F.logsigmoid,
F.softplus, F.binary_cross_entropy_with_logits, ...) checked as sg.gradcheck /
sg.gradgradcheck do (capture, then ``sg.verify`` of the user's torch code), per function x
dtype x order x point set, with the verdict and the worst error / allowance; a planted wrong
backward (x (1 + 1e-6) in float64, ``symgrad.testing.scale_backward``) must still fail.

Run it once per tree (``PYTHONPATH=<tree> python scripts/wolf_torch_functions.py out.json``)
and compare the two files (``--table before.json after.json`` prints the Markdown table of
``reports/wolf_torch_functions.md``).
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F

from symgrad.capture.captured import capture
from symgrad.capture.gradcheck import _gradients_decide
from symgrad.testing import scale_backward
from symgrad.verify import verify

POINTS = {  # 8 logits: saturated (+-5 .. +-30) and moderate
    "saturated": [-30.0, -20.0, -10.0, -5.0, 5.0, 10.0, 20.0, 30.0],
    "moderate": [-3.0, -1.0, -0.5, 0.2, 0.7, 1.5, 3.0, 4.5],
}
Y = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.3])  # targets (both saturations)
W = torch.linspace(0.5, 1.5, 8)
CLASSES = torch.tensor([0, 3])


def _functions() -> dict:
    def y(x):
        return Y.to(x.dtype)

    def w(x):
        return W.to(x.dtype)
    return {
        "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, y(x)),
        "bce_with_logits_pos_weight": lambda x: F.binary_cross_entropy_with_logits(
            x, y(x), pos_weight=torch.tensor(2.5, dtype=x.dtype)),
        "logsigmoid": lambda x: -(F.logsigmoid(x) * w(x)).sum(),
        "softplus": lambda x: (F.softplus(x) * w(x)).sum(),
        "silu": lambda x: (F.silu(x) * w(x)).sum(),
        "mish": lambda x: (F.mish(x) * w(x)).sum(),
        "sigmoid": lambda x: (torch.sigmoid(x) * w(x)).sum(),
        "bce": lambda x: F.binary_cross_entropy(torch.sigmoid(x), y(x)),
        "cross_entropy": lambda x: F.cross_entropy(x.view(2, 4), CLASSES),
        "log_softmax": lambda x: (F.log_softmax(x.view(2, 4), -1) * w(x).view(2, 4)).sum(),
    }


def check(fn, x: torch.Tensor, order: int, dtype: str, factor: float = 1.0) -> dict:
    """sg.gradcheck / gradgradcheck's verdict (samples=4, seed=0) and the worst entry."""
    f = fn if factor == 1.0 else (lambda x: fn(scale_backward(x, factor)))
    t0 = time.process_time()
    captured = capture(f, (x,), module_params="input", seed=0, names=["x"], name="f")
    at = captured.at(4, 0, [b.name for b in captured.model.param_blocks])
    result = verify(captured.model, torch_fn=captured.torch_fn(None), dtype=dtype, seed=0,
                    order=order, at=at, backends=("torch_fn",))
    verdict = "pass" if result.ok or (order == 1 and _gradients_decide(result)) \
        else result.verdict
    worst = max(((f_.ulps / f_.allowed_ulps, f_.ulps, f_.allowed_ulps) for f_ in result.worst
                 if f_.backend == "torch_fn" and f_.output != "value" and f_.allowed_ulps > 0),
                default=(0.0, 0.0, 0.0))
    return {"verdict": str(verdict).lower(), "ratio": worst[0], "ulps": worst[1],
            "allowed": worst[2], "cpu_s": round(time.process_time() - t0, 2)}


def run(path: str) -> None:
    rows = []
    for name, fn in _functions().items():
        for dtype in ("float64", "float32", "bfloat16"):
            for order in (1, 2):
                for where, pts in POINTS.items():
                    x = torch.tensor(pts, dtype=getattr(torch, dtype), requires_grad=True)
                    row = {"function": name, "dtype": dtype, "order": order, "points": where}
                    try:
                        row.update(check(fn, x, order, dtype))
                    except Exception as exc:  # noqa: BLE001 - recorded in the table
                        row.update(verdict="error", error=str(exc).splitlines()[0][:160])
                    if dtype == "float64":
                        try:
                            row["planted"] = check(fn, x, order, dtype, 1 + 1e-6)["verdict"]
                        except Exception as exc:  # noqa: BLE001
                            row["planted"] = "error: " + str(exc).splitlines()[0][:100]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    with open(path, "w") as fh:
        json.dump(rows, fh, indent=1)


def table(before: str, after: str) -> str:
    old = {(r["function"], r["dtype"], r["order"], r["points"]): r for r in json.load(open(before))}
    lines = ["| function | dtype | order | points | before | after | after: worst error / "
             "allowance (ULPs) | planted x(1+1e-6), after |", "|---|---|---|---|---|---|---|---|"]
    for r in json.load(open(after)):
        o = old.get((r["function"], r["dtype"], r["order"], r["points"]), {})

        def v(x):
            return (x.get("verdict", "?") + (f" ({x['ulps']:.3g} / {x['allowed']:.3g})"
                                              if x.get("verdict") == "fail" else ""))
        lines.append(f"| {r['function']} | {r['dtype']} | {r['order']} | {r['points']} | "
                     f"{v(o)} | {r['verdict']} | "
                     f"{r.get('ulps', 0):.3g} / {r.get('allowed', 0):.3g} | "
                     f"{r.get('planted', '')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        print(table(sys.argv[2], sys.argv[3]))
    else:
        run(sys.argv[1])
