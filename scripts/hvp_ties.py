"""Hessian-vector products of the op catalogue's rows at their tie points: where a stable form's
max / abs / where cancels (logaddexp at x = y, softplus at 0, softmax at equal logits...) and,
beside them, real kinks (relu and abs at 0, maximum at x = y, huber's switch).

For every (row, point, dtype) the catalogue's own second-order check runs at that point
(``symgrad.opcatalog.run``: the first-order run, its kink exclusion, then ``sg.verify`` of the
row's H v model against torch's double backward; the directions from the catalogue's own
generators): the H v entries' statuses and the causes of any finding. Independently of the
verdict, symgrad's exact H v at the tie (``sg.exact_at``, 30 digits) is compared with the exact
values one step ``EPS`` to either side (the tie argument moved by ``+-EPS``, decimal strings:
exact balls): where both sides agree the function is smooth there and the tie's value must be
theirs ("smooth: exact = sides"); where they differ it is a real kink of the first derivative
("kink"); a tie value that matches neither while the sides agree is symgrad's bug ("WRONG").

    python scripts/hvp_ties.py [--out reports] [--dtype float64,float32]

Writes ``<out>/hvp_ties.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import mpmath
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symgrad as sg  # noqa: E402
from symgrad.errors import SymgradError  # noqa: E402
from symgrad.opcatalog.build import READOUT, direction_name, first_order, second_order  # noqa: E402
from symgrad.opcatalog.inputs import readout  # noqa: E402
from symgrad.opcatalog.run import OpsConfig, _rng, _second, _verify_cfg  # noqa: E402
from symgrad.opcatalog.table import by_name  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402

EPS = "1e-20"  # the one-sided step of the exact check (30 digits: sides agree to ~1e-20)
DPS = 30

# (row, point: arg -> value(s), the argument entry moved for the sides: (arg, index or None),
#  smooth: is the function smooth (C2) there - the expectation the table states)
CASES = [
    ("logaddexp2", {"x": 0.5, "y": 0.5}, ("x", None), True),
    ("logaddexp2", {"x": -3.0, "y": -3.0}, ("x", None), True),
    ("logaddexp", {"x": 0.5, "y": 0.5}, ("x", None), True),
    ("logaddexp", {"x": 2.0, "y": 2.0}, ("x", None), True),
    ("softplus", {"x": 0.0}, ("x", None), True),
    ("logsigmoid", {"x": 0.0}, ("x", None), True),
    ("silu", {"x": 0.0}, ("x", None), True),
    ("mish", {"x": 0.0}, ("x", None), True),
    ("bce_with_logits", {"x": [0.0, 0.0, 1.0], "t": [1.0, 0.0, 1.0]}, ("x", 0), True),
    ("bce_with_logits_pos_weight", {"x": [0.0, 0.0, 1.0], "t": [1.0, 0.0, 1.0]}, ("x", 0), True),
    ("soft_margin_loss", {"x": [0.0, 0.0, 1.0], "s": [1.0, -1.0, 1.0]}, ("x", 0), True),
    ("multilabel_soft_margin_loss", {"x": [0.0, 0.0, 1.0], "t": [1.0, 0.0, 1.0]}, ("x", 0),
     True),
    ("logsumexp", {"x": [0.3, 0.3, 0.3]}, ("x", 0), True),
    ("logsumexp", {"x": [1.0, 1.0, -2.0]}, ("x", 0), True),
    ("softmax", {"x": [0.3, 0.3, 0.3]}, ("x", 0), True),
    ("log_softmax", {"x": [1.0, 1.0, -2.0]}, ("x", 0), True),
    ("softmin", {"x": [0.3, 0.3, 0.3]}, ("x", 0), True),
    ("cross_entropy", {"x": [1.0, 1.0, -2.0], "t": 0}, ("x", 0), True),
    ("logcumsumexp", {"x": [0.5, 0.5, 0.5]}, ("x", 0), True),
    ("elu", {"x": 0.0}, ("x", None), False),  # f'' jumps 1 -> 0: a kink of f'
    ("celu_alpha", {"x": 0.0}, ("x", None), False),  # alpha = 1.5 (the row was "celu")
    ("huber_loss", {"x": [1.0, 0.0, 0.5], "t": [0.0, 0.0, 0.0]}, ("x", 0), False),
    ("smooth_l1_loss", {"x": [1.0, 0.0, 0.5], "t": [0.0, 0.0, 0.0]}, ("x", 0), False),
    ("smooth_l1_loss_beta", {"x": [0.5, 0.0, 0.25], "t": [0.0, 0.0, 0.0]}, ("x", 0), False),
    ("relu", {"x": 0.0}, ("x", None), False),
    ("abs", {"x": 0.0}, ("x", None), False),
    ("maximum", {"x": 0.5, "y": 0.5}, ("x", None), False),
]


def _point(op, values: dict, dtype: str, cfg: OpsConfig) -> dict:
    """The catalogue's ``at`` for one sample: the given values, the read-out from its own
    generator (as ``run_one`` draws it)."""
    at = {k: np.asarray([v], dtype=np.float64) for k, v in values.items()}
    n_out = first_order(op).out_size
    at[READOUT] = readout(() if n_out == 1 else (n_out,), dtype=dtype, budget=1,
                          rng=_rng(cfg, op, dtype, "r"))
    return at


def _statuses(op, at: dict, dtype: str, cfg: OpsConfig) -> dict:
    """The catalogue's H v check at ``at``: counts per class and the findings' causes."""
    built = first_order(op)
    result = sg.verify(built.model, torch_fn=built.torch_fn, at=at,
                       config=_verify_cfg(cfg, dtype, 1))
    at_kink = np.zeros(1, bool)
    for comp in result.comparisons.values():
        at_kink |= np.isfinite(comp.kink_position).any(axis=1)
    order, found = _second(op, dtype, cfg, at, at_kink)
    return {"first_order_kink": bool(at_kink[0]), "ok": order.ok, "kinks": order.kinks,
            "inconclusive": order.inconclusive, "outside": order.outside,
            "failing": order.failing, "note": order.note,
            "worst_ratio": order.worst_ratio,
            "causes": sorted({f.cause for f in found}),
            "unexplained": sum(f.count for f in found if not f.explained)}


def _exact_check(op, at: dict, moved: tuple, dtype: str, cfg: OpsConfig) -> dict:
    """symgrad's exact H v at the tie against its exact values EPS to either side."""
    built = second_order(op)
    if built is None:
        return {"check": "H = 0"}
    point = {k: (float(v[0]) if v[0].ndim == 0 else v[0].tolist()) for k, v in at.items()}
    for a in op.params:
        v = readout(a.shape, dtype=dtype, budget=1, rng=_rng(cfg, op, dtype, f"v/{a.name}"))
        point[direction_name(a)] = float(v[0]) if v[0].ndim == 0 else v[0].tolist()

    def shifted(sign: str) -> dict:
        p = dict(point)
        name, k = moved
        base = mpmath.mpf(point[name] if k is None else point[name][k])
        with mpmath.workdps(40):  # a decimal string: exact_at encloses it in a tight ball
            value = mpmath.nstr(base + mpmath.mpf(sign + EPS), 40) if base else sign + EPS
        if k is None:
            p[name] = value
        else:
            p[name] = [value if i == k else str(x) for i, x in enumerate(point[name])]
            p = {n: ([str(x) for x in v] if isinstance(v, list) else v) for n, v in p.items()}
        return p
    try:
        tie, left, right = (sg.exact_at(built.model, p, dps=DPS)
                            for p in (point, shifted("-"), shifted("+")))
    except SymgradError as exc:  # balls that never narrow (another tie left): refused, said so
        return {"check": "exact_at refuses: " + str(exc).split(": ", 1)[-1][:60]}
    keys = [k for k in tie if k.startswith("d/d")]
    scale = max([abs(tie[k]) for k in keys] + [abs(left[k]) for k in keys] + [mpmath.mpf(1)])
    sides_agree = all(abs(left[k] - right[k]) <= mpmath.mpf("1e-15") * scale for k in keys)
    tie_is_side = all(abs(tie[k] - left[k]) <= mpmath.mpf("1e-15") * scale for k in keys)
    check = ("smooth: exact = sides" if sides_agree and tie_is_side
             else "WRONG: sides agree, exact differs" if sides_agree else "kink: sides differ")
    return {"check": check, "tie": {k: mpmath.nstr(tie[k], 20) for k in keys},
            "left": {k: mpmath.nstr(left[k], 20) for k in keys},
            "right": {k: mpmath.nstr(right[k], 20) for k in keys}}


def _tree() -> str:
    """The commit of the symgrad this run imported (its checkout's HEAD)."""
    try:
        return subprocess.run(["git", "-C", str(Path(sg.__file__).resolve().parents[1]),
                               "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--dtype", default="float64,float32")
    ap.add_argument("--baseline", help="hvp_ties.json of an earlier tree (e.g. before a fix): "
                    "its statuses as a column beside this run's")
    args = ap.parse_args()
    cfg = OpsConfig(budget=1, gradcheck=False)  # one sample: its read-out and directions
    rows = []
    t0, c0 = time.perf_counter(), time.process_time()
    for name, values, moved, smooth in CASES:
        op = by_name(name)
        for dtype in args.dtype.split(","):
            at = _point(op, values, dtype, cfg)
            row = {"op": name, "point": values, "dtype": dtype, "smooth": smooth}
            row.update(_statuses(op, at, dtype, cfg))
            if dtype == "float64":
                row.update(_exact_check(op, at, moved, dtype, cfg))
            rows.append(row)
            print(name, values, dtype, row["check"] if "check" in row else "",
                  {k: row[k] for k in ("ok", "kinks", "inconclusive", "failing",
                                       "unexplained", "causes")}, flush=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = Path(args.out)
    meta = {"torch": torch.__version__, "python": platform.python_version(),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "tree": _tree()}
    write_text(out / "hvp_ties.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Hessian-vector products at the catalogue's tie points", "",
             f"`python scripts/hvp_ties.py` (torch {meta['torch']}, {meta['wall_s']} s wall, "
             f"{meta['cpu_s']} s CPU). Per row, point and dtype: the catalogue's own H v check "
             "(torch's double backward against the exact H v; entries ok / kink / "
             "inconclusive / failing, the causes of any finding) and, in float64, symgrad's "
             f"exact H v at the tie against its exact values {EPS} to either side.", "",
             "| row | point | smooth there | dtype | exact at tie vs sides | ok | kink "
             "| inconclusive | failing | unexplained | causes | baseline |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    before = {}
    if args.baseline:
        old = json.loads(Path(args.baseline).read_text())
        lines[2] += f" Baseline column: the same script on {old['meta'].get('tree', '?')}."
        before = {(r["op"], str(r["point"]), r["dtype"]): r for r in old["rows"]}
    for r in rows:
        b = before.get((r["op"], str(r["point"]), r["dtype"]))
        was = (f"{b.get('check', '')} ok {b['ok']}, kink {b['kinks']}, failing {b['failing']}"
               f" ({b['unexplained']} unexplained)" if b else "-")
        lines.append(f"| {r['op']} | `{r['point']}` | {'yes' if r['smooth'] else 'no'} "
                     f"| {r['dtype']} | {r.get('check', '')} | {r['ok']} | {r['kinks']} "
                     f"| {r['inconclusive']} | {r['failing']} | {r['unexplained']} "
                     f"| {'; '.join(r['causes']) or r['note'] or '-'} | {was} |")
    write_text(out / "hvp_ties.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'hvp_ties.md'} ({wall:.1f} s wall, {cpu:.1f} s CPU)")


if __name__ == "__main__":
    main()
