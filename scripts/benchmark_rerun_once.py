"""The user's code in float64 once per run (issue 18/19, rerun33): a narrow run that both
rule-checks (``symgrad.tensor.rulecheck``) and confirms (``symgrad.confirm``'s ``rerun64``)
used to run the code in float64 twice on the same samples; ``backends.float64.Float64Runs``
runs it once for both. Old and new tree side by side in one run, each case in its own
process: the float64 runs of the user's code made (``run_torch_fn`` calls in float64), CPU
seconds of the ``sg.verify`` / ``sg.gradcheck`` call (best of ``--repeat``), and the verdict
with every backend's (the answers must be the same).

    python scripts/benchmark_rerun_once.py --old /path/to/old/tree [--repeat 3] [--out reports]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {  # name -> what it runs, in words (the code is in _case)
    "gradcheck-planted": "sg.gradcheck(x^2 with backward x (1 + 1e-7), x (6,) float32)",
    "gradcheck-correct": "sg.gradcheck(x^2 with its correct custom backward, x (6,) float32)",
    "module-planted": "sg.verify(module=Linear -> x^2 custom Function, backward x (1 + 1e-7), "
                      "inputs (5, 4), float32)",
    "module-correct": "sg.verify(module=the same, correct backward, float32)",
    "llama-planted": "sg.verify(module=LlamaBlock, inputs=x (1, 4, 8), float32) with q.weight's "
                     "gradient x (1 + 1e-7) by a hook (scripts/sweep_clients.py's client)",
    "nanogpt-captured-planted": "sg.verify(module=NanoLoss(nanoGPT), inputs=(ids, targets), "
                                "float32) with transformer.h.0.attn.c_attn.weight's gradient "
                                "x (1 + 1e-7) by a hook (scripts/sweep_clients.py's client)",
    "nanogpt-layout-planted": "sg.verify(tiny_gpt, module=nanoGPT, float32), the same hook "
                              "(the layout path: no float64 run before rerun33)",
}


def _case(name: str):
    """The call of one case (run in the child, with the tree under test first on sys.path)."""
    import torch
    import symgrad as sg
    from tests.clients import scaled_square
    factor = 1 + 1e-7 if name.endswith("planted") else 1.0
    if name.startswith("llama"):
        sys.path.insert(0, str(ROOT / "scripts"))
        import sweep_clients as S
        from tests import clients as C

        def run():
            with C.seeded(0):
                m = C.planted_hook(C.LlamaBlock(), "q.weight", factor)
            r = sg.verify(module=m, inputs=S._x(0, "float32", 1, 4, 8), samples=S.SAMPLES,
                          seed=0, dtype="float32")
            return r.verdict, {n: r.backend_verdict(n) for n in r.comparisons}
        return run
    if name.startswith("nanogpt"):
        sys.path.insert(0, str(ROOT / "scripts"))
        import sweep_clients as S
        from tests import clients as C

        def run():
            m = C.planted_hook(S._nano(0, "float32"), S._QKV, factor)
            r = (sg.verify(C.tiny_gpt(S.NANO), module=m, samples=S.SAMPLES, seed=0,
                           dtype="float32") if "layout" in name else
                 sg.verify(module=C.NanoLoss(m), inputs=S._tokens(0, S.NANO),
                           samples=S.SAMPLES, seed=0, dtype="float32"))
            return r.verdict, {n: r.backend_verdict(n) for n in r.comparisons}
        return run
    square = scaled_square(factor)
    if name.startswith("gradcheck"):
        x = torch.randn(6, generator=torch.Generator().manual_seed(0)).requires_grad_()

        def run():
            try:
                ok = sg.gradcheck(lambda weight: square.apply(weight), (x,))
                return ("pass" if ok else "fail"), {}
            except sg.GradcheckError as e:
                r = e.result
                return r.verdict, {n: r.backend_verdict(n) for n in r.comparisons}
        return run

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return square.apply(self.lin(x)).sum()
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))

    def run():
        r = sg.verify(module=net, inputs=x, dtype="float32")
        return r.verdict, {n: r.backend_verdict(n) for n in r.comparisons}
    return run


def child(name: str, repeat: int) -> dict:
    """One case in this process: float64 runs counted, CPU seconds, verdicts."""
    import symgrad.backends.float64 as f64
    calls = [0]
    original = f64.run_torch_fn

    def counted(*args, **kwargs):
        calls[0] += kwargs.get("dtype") == "float64"
        return original(*args, **kwargs)
    f64.run_torch_fn = counted
    run = _case(name)
    run()  # warm: imports, the derivation's caches
    best, answers = float("inf"), None
    for _ in range(repeat):
        calls[0] = 0
        t0 = time.process_time()
        got = run()
        best = min(best, time.process_time() - t0)
        answers = answers or got
        runs64 = calls[0]
    return {"cpu_s": round(best, 3), "float64_runs": runs64, "verdict": answers[0],
            "backends": answers[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the old tree (a checkout of the base)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--only", help="comma-separated cases (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.repeat)))
        return
    rows = []
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    for name in (a.only.split(",") if a.only else CASES):
        row = {"case": name}
        for label, tree in (("old", Path(a.old).resolve()), ("new", ROOT)):
            env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"}
            out = subprocess.run([sys.executable, __file__, "--old", a.old, "--repeat",
                                  str(a.repeat), "--child", name], env=env, check=True,
                                 capture_output=True, text=True, cwd=tree).stdout
            row[label] = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(name, row["old"], row["new"], flush=True)
    _write(rows, a, load, os.getloadavg()[0], time.perf_counter() - t0)


def _write(rows: list, a, load0: float, load1: float, wall: float) -> None:
    sys.path.insert(0, str(ROOT))
    from symgrad.atomic import write_set
    import torch
    head = ("| case | float64 runs old | new | CPU s old | new | verdict old | new | "
            "backends the same |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['case']} | {r['old']['float64_runs']} | {r['new']['float64_runs']} | "
        f"{r['old']['cpu_s']:.2f} | {r['new']['cpu_s']:.2f} | {r['old']['verdict']} | "
        f"{r['new']['verdict']} | {'yes' if r['old']['backends'] == r['new']['backends'] else 'no'} |\n"
        for r in rows)
    text = (f"# The user's code in float64 once per run (rerun33)\n\n"
            f"`python scripts/benchmark_rerun_once.py --old {a.old} --repeat {a.repeat}`: "
            f"old and new tree side by side, each case in its own process; CPU seconds of the "
            f"call, best of {a.repeat}; float64 runs: the user's code run in float64 "
            f"(`run_torch_fn` calls in float64) during one call. 1-minute load {load0:.1f} -> "
            f"{load1:.1f}, {wall:.0f} s wall, torch {torch.__version__}.\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in CASES.items()) + "\n\n" + head + body)
    write_set(Path(a.out), {"benchmark_rerun_once.md": text,
                            "benchmark_rerun_once.json": json.dumps(rows, indent=1) + "\n"})


if __name__ == "__main__":
    main()
