"""Issue 17's structural counts of symgrad/, from the same import reader as tests/test_layers.py:
lines, modules, import circles (module level, and with function-local imports), imports that go
up a floor, function-local imports of symgrad modules, modules over 400 lines, and model-type
switches (``isinstance(..., Model)`` / ``isinstance(..., TensorModel)``).

``--without a,b,...`` removes modules (dotted names without ``symgrad.``; a package name removes
its submodules) to show what a deletion step leaves: the counts after it, and every import of a
removed module by a module that stays (what the step must rewrite first).

    python scripts/layers_report.py
    python scripts/layers_report.py --without graph,derive,oracle --json

Arguments (command line):
    --without: modules the step deletes.
    --json: one JSON document instead of text.
Returns:
    exit 0.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layers():
    """tests/test_layers.py as a module (its import reader, floors and cycle finder)."""
    spec = importlib.util.spec_from_file_location("_test_layers", ROOT / "tests" / "test_layers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def type_switches(path: Path) -> list[int]:
    """Lines of ``isinstance(x, Model)`` / ``isinstance(x, TensorModel)`` (or a tuple holding
    either) in one file."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance" and len(node.args) == 2):
            kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            names = {k.id if isinstance(k, ast.Name) else getattr(k, "attr", "") for k in kinds}
            if names & {"Model", "TensorModel"}:
                lines.append(node.lineno)
    return lines


def counts(without: set[str]) -> dict:
    """The counts with the modules in ``without`` removed."""
    layers = _layers()

    def gone(m: str) -> bool:
        short = m.removeprefix("symgrad.")
        return any(short == w or short.startswith(w + ".") for w in without)

    modules = {m: p for m, p in layers.MODULES.items() if not gone(m)}
    edges = {m: {t for t in ts if not gone(t)} for m, ts in layers.EDGES.items() if m in modules}
    later = {m: {t for t in ts if not gone(t)} for m, ts in layers.LATER.items() if m in modules}
    full = {m: edges[m] | later[m] for m in edges}
    broken = sorted(f"{m} imports {t}" for m in modules
                    for t in layers.EDGES[m] | layers.LATER[m] if gone(t))
    lines = {m: len(p.read_text().splitlines()) for m, p in modules.items()}
    switches = {m: type_switches(p) for m, p in modules.items()}
    up = layers._upward(full)
    return {
        "removed": sorted(without),
        "modules": len(modules),
        "lines": sum(lines.values()),
        "circles": [" -> ".join(c) for c in layers._cycles(edges)],
        "circles_with_local_imports": [" -> ".join(c) for c in layers._cycles(full)],
        "imports_up": [f"{m} -> {t}" for m, t in up],
        "function_local_imports": sorted({f"{m} -> {t}" for m, _, t in layers.LOCAL
                                          if m in modules and not gone(t)}),
        "over_400_lines": sorted(f"{m} ({n})" for m, n in lines.items() if n > 400),
        "type_switches": {m.removeprefix("symgrad."): ls for m, ls in sorted(switches.items())
                          if ls},
        "type_switch_count": sum(len(v) for v in switches.values()),
        "broken_imports": broken,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--without", default="")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    doc = counts({w.strip() for w in args.without.split(",") if w.strip()})
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"modules {doc['modules']}, lines {doc['lines']}")
    for key in ("circles", "circles_with_local_imports", "imports_up", "function_local_imports",
                "over_400_lines", "broken_imports"):
        print(f"{key}: {len(doc[key])}")
        for item in doc[key]:
            print(f"  {item}")
    print(f"type_switches: {doc['type_switch_count']}")
    for m, ls in doc["type_switches"].items():
        print(f"  {m}: lines {', '.join(map(str, ls))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
