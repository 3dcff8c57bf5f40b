"""Two runs of ``scripts/sweep_clients.py`` side by side, seed by seed: a client whose verdict
changed at some seed (a new fail is a false alarm; a new inconclusive is a pass lost), for the
seeds and dtypes both runs have. Writes one Markdown page (atomically).

    python scripts/sweep_compare.py OLD.json NEW.json [NEW2.json ...] --out PAGE.md \
        [--title "..."] [--note "..."]

Several NEW files (sweeps of different clients or dtypes) are read as one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.atomic import write_text  # noqa: E402


def verdicts(doc: dict, key: str) -> dict:
    """(client, dtype) -> {seed: verdict} of one sweep's ``key`` rows ("rows" or "planted")."""
    return {(r["client"], r["dtype"]): {x["seed"]: x["verdict"] for x in r["runs"]}
            for r in doc.get(key, [])}


def table(old: dict, new: dict, key: str) -> list[str]:
    """One row per (client, dtype) both runs have: the verdicts at their common seeds."""
    a, b = verdicts(old, key), verdicts(new, key)
    out = ["| client | dtype | seeds | before (pass/inconclusive/fail) | after | changed at |",
           "|---|---|---|---|---|---|"]
    for cd in [k for k in b if k in a]:
        seeds = sorted(set(a[cd]) & set(b[cd]))
        if not seeds:
            continue

        def count(v):
            return "/".join(str(sum(v[s] == k for s in seeds))
                            for k in ("pass", "inconclusive", "fail"))
        changed = [f"{s}: {a[cd][s]} -> {b[cd][s]}" for s in seeds if a[cd][s] != b[cd][s]]
        out.append(f"| {cd[0]} | {cd[1]} | {seeds[0]}-{seeds[-1]} | {count(a[cd])} | "
                   f"{count(b[cd])} | {'; '.join(changed) or 'none'} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="Sweep of the real clients: before and after")
    ap.add_argument("--note", default="")
    a = ap.parse_args(argv)
    old = json.loads(Path(a.old).read_text())
    docs = [json.loads(Path(p).read_text()) for p in a.new]
    new = {k: [r for d in docs for r in d.get(k, [])] for k in ("rows", "planted")}
    runs = "; ".join(
        f"`{p}`: {d['run'].get('seconds')} s wall, {d['run'].get('cpu_seconds')} CPU s, "
        f"1-minute load {' -> '.join(f'{x:.1f}' for x in d['run'].get('load', []))}"
        for p, d in zip(a.new, docs))
    lines = [f"# {a.title}", "", f"Before: `{a.old}`. After: {runs} (torch "
             f"{docs[0]['run'].get('torch')}). {a.note}".rstrip(), "",
             "## Correct clients (any new fail is a false alarm)", "",
             *table(old, new, "rows"), "",
             "## Planted controls (each must fail)", "", *table(old, new, "planted")]
    write_text(Path(a.out), "\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
