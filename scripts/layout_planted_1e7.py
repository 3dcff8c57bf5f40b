"""The GPT layout module path in float32 with a backward x (1 + 1e-7) planted by a hook (1 u:
float32 rounds it away) on nanoGPT's attention weight and Hugging Face GPT-2's MLP projection,
seeds 0-2, the clients of ``scripts/sweep_clients.py``: its verdict, the parameters named and
each backend's verdict. Run it on the old and the new tree (``PYTHONPATH=<tree>``); each run
adds its rows under ``--label`` to reports/sweep_rule_check_layout_1e7.json (atomically).

    PYTHONPATH=<tree> python scripts/layout_planted_1e7.py --label old|new [--out reports]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import symgrad as sg  # the tree under test: PYTHONPATH's, imported before ROOT is put first

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.append(str(ROOT))

import sweep_clients as S  # noqa: E402
from tests import clients as C  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    a = ap.parse_args()
    rows = []
    for name, build, cfg, plant in (("nanogpt-layout", S._nano, S.NANO, S._QKV),
                                    ("hf-gpt2-layout", S._hf, S.HF, S._FC)):
        for seed in range(3):
            m = C.planted_hook(build(seed, "float32"), plant, 1 + 1e-7)
            t = time.process_time()
            r = sg.verify(C.tiny_gpt(cfg), module=m, samples=S.SAMPLES, seed=seed,
                          dtype="float32")
            rows.append({"client": name, "seed": seed, "verdict": r.verdict,
                         "named": sorted({f.output.split("[")[0] for f in r.failures}),
                         "backends": {n: r.backend_verdict(n) for n in r.comparisons},
                         "cpu_s": round(time.process_time() - t, 2)})
            print(json.dumps(rows[-1]), flush=True)
    path = Path(a.out) / "sweep_rule_check_layout_1e7.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["run"] = ("PYTHONPATH=<tree> python scripts/layout_planted_1e7.py --label <label>: "
                  "sg.verify(tiny_gpt, module=planted_hook(m, param, 1 + 1e-7), samples=4, "
                  "seed=s, dtype='float32'); CPU s per call")
    doc[a.label] = rows
    write_text(path, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
