"""A captured forward's stop-gradients (issue 18): the verdict of ``symgrad.gradcheck`` /
``sg.verify(module=)`` on correct code that uses ``.detach()``, ``.data``, ``no_grad`` or
``inference_mode`` (each must pass) and on bugs beside them (each must fail), float64 and
float32, on one tree and, side by side, on another (``--against``: the JSON an older tree's
run wrote). The cases are tests/test_capture_stops.py's. Writes reports/capture_stops.md and
.json.

    python scripts/capture_stops.py --tree /path/to/old --json /tmp/old.json   # the old tree
    python scripts/capture_stops.py --against /tmp/old.json --label-against "main e58aa30"
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cases(T, torch):
    """(name, meant, run(dtype) -> verdict): meant "pass" (correct code) or "fail" (a bug)."""
    def gc(fn, args, **kw):
        def run(dtype, seed):
            import symgrad as sg
            try:
                sg.gradcheck(fn, args(dtype), seed=seed, **kw)
                return "pass"
            except sg.GradcheckError as err:
                return "inconclusive" if ": inconclusive for " in str(err).split("\n")[0] \
                    else "fail"
        return run

    def mod(make, args):
        def run(dtype, seed):
            import symgrad as sg
            return sg.verify(module=make().to(dtype), inputs=args(dtype), train=True,
                             dtype=str(dtype)[6:], samples=4, seed=seed).verdict
        return run
    one = lambda d: (T._x(6, dtype=d),)  # noqa: E731
    rl = lambda d: (T._x(6, 4, dtype=d, grad=False), torch.randint(  # noqa: E731
        0, 3, (6,), generator=torch.Generator().manual_seed(1)),
        T._x(6, dtype=d, seed=2, grad=False))
    feat = lambda d: (T._x(6, 4, dtype=d, grad=False),)  # noqa: E731

    def bug(x):
        return (T._Scaled.apply(x).sin() * x.cos().detach()).sum()

    def written(x, s):
        return (x * s.detach()).sin().sum()

    def meant(x, s):
        return (x * s).sin().sum()
    two = lambda d: (T._x(6, dtype=d), T._x(6, dtype=d, seed=1))  # noqa: E731
    return [
        ("straight-through estimator x + (sign(x) - x).detach()", "pass",
         gc(T.straight_through, one)),
        ("a torch.no_grad() block", "pass", gc(T.no_grad_block, one)),
        ("a torch.inference_mode() block", "pass", gc(T.inference_block, one)),
        ("x.data read", "pass", gc(T.dot_data, one)),
        ("a @torch.no_grad() helper", "pass", gc(T.decorated, one)),
        ("REINFORCE logp * (r - b).detach(), verify(module=)", "pass", mod(T.Reinforce, rl)),
        ("EMA teacher under no_grad, verify(module=)", "pass", mod(T.EMATeacher, feat)),
        ("running mean updated in place under no_grad, train", "pass",
         mod(T.RunningCentre, feat)),
        ("a .detach() inside a custom Function's forward", "pass",
         gc(T._DetachInside.apply, one)),
        ("bug: a backward x (1 + 1e-6) beside a .detach()", "fail", gc(bug, one)),
        ("bug: s.detach() where s should flow, reference= the intended", "fail",
         gc(written, two, reference=meant)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(ROOT), help="the tree whose symgrad runs")
    ap.add_argument("--json", help="write this run's verdicts here (no page)")
    ap.add_argument("--against", help="an older tree's --json, shown side by side")
    ap.add_argument("--label-against", default="old")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (the samples drawn)")
    args = ap.parse_args()
    sys.path.insert(0, args.tree)
    import torch
    import symgrad
    spec = importlib.util.spec_from_file_location("stops_cases",
                                                  ROOT / "tests" / "test_capture_stops.py")
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)
    rows = []
    for name, meant, run in _cases(T, torch):
        for dtype in (torch.float64, torch.float32):
            t, seen = time.process_time(), {}
            for seed in range(args.seeds):
                try:
                    v = run(dtype, seed)
                except Exception as exc:  # noqa: BLE001 - an old tree may refuse the code
                    v = f"refused: {str(exc).splitlines()[0][:80]}"
                seen[v] = seen.get(v, 0) + 1
            got = seen.popitem()[0] if len(seen) == 1 else ", ".join(
                f"{v} x{k}" for v, k in sorted(seen.items()))
            rows.append({"case": name, "dtype": str(dtype)[6:], "meant": meant, "got": got,
                         "seeds": args.seeds, "cpu_s": round(time.process_time() - t, 2)})
            print(rows[-1], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"tree": str(symgrad.__file__), "rows": rows}))
        return
    old = {(r["case"], r["dtype"]): r["got"] for r in
           json.loads(Path(args.against).read_text())["rows"]} if args.against else {}
    from symgrad.atomic import write_text
    right = sum(r["got"] == r["meant"] for r in rows)
    lines = ["# A captured forward's stop-gradients (issue 18)", "",
             "Generated by `scripts/capture_stops.py` (cases: tests/test_capture_stops.py). "
             "Correct code using a stop-gradient must pass, a bug beside one must fail; "
             "float64 and float32, `symgrad.gradcheck` (4 samples) or "
             f"`sg.verify(module=, train=True, samples=4)`, at seeds 0..{args.seeds - 1} "
             "(each seed draws other samples around the example; a cell names each verdict "
             "seen, with its count where they differ). CPU s: all seeds.", "",
             f"This tree: {right} of {len(rows)} as meant"
             + (f"; {args.label_against}: {sum(old.get((r['case'], r['dtype'])) == r['meant'] for r in rows)} of {len(rows)}." if old else "."),
             "", "| case | dtype | meant | this tree | CPU s |"
             + (f" {args.label_against} |" if old else ""),
             "| --- | --- | --- | --- | --- |" + (" --- |" if old else "")]
    for r in rows:
        lines.append(f"| {r['case']} | {r['dtype']} | {r['meant']} | {r['got']} | "
                     f"{r['cpu_s']} |" + (f" {old.get((r['case'], r['dtype']), '-')} |"
                                          if old else ""))
    out = Path(args.out)
    write_text(out / "capture_stops.md", "\n".join(lines) + "\n")
    write_text(out / "capture_stops.json", json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out / 'capture_stops.md'}")


if __name__ == "__main__":
    main()
