"""The scalar side's deletion map (issue 17): per symgrad module, which of its top-level
functions and classes run on the program pipeline, which only on the scalar one, which on
neither, and who imports the scalar-only ones; from two runs of ``scripts/dead_map.py``.

    python scripts/dead_map_table.py /tmp/program.json /tmp/scalar.json [--json out.json]

A unit is a top-level function or class of a module (a class ran if any of its methods ran; a
class with no method of its own (a dataclass, an exception) is "static" and judged by its
importers). ``<module>`` (import-time code) does not count as use.

Arguments (command line):
    program, scalar: the two JSON files.
    --json: also write the per-module data as JSON.
Returns:
    exit 0; Markdown on stdout.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "symgrad"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def units(path: Path) -> list[dict]:
    """Top-level functions and classes: name, first line (decorators included), last line,
    and the first lines of the methods inside a class."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            methods = [n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef,
                                                                   ast.AsyncFunctionDef))]
            out.append({"name": node.name, "start": start, "end": node.end_lineno,
                        "kind": "class" if isinstance(node, ast.ClassDef) else "def",
                        "static": isinstance(node, ast.ClassDef) and not methods})
    return out


def ran(doc: dict) -> dict[tuple[str, int], set[str]]:
    """(file, first line) -> entries that started that code object (``<module>`` left out)."""
    out: dict[tuple[str, int], set[str]] = defaultdict(set)
    for entry, data in doc["entries"].items():
        for f in data["functions"]:
            path, line, qual = f.split(":", 2)
            if qual != "<module>":
                out[(path, int(line))].add(entry)
    return out


def _resolve(node: ast.ImportFrom, mod: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
    here = here[:len(here) - node.level + 1]
    return ".".join(here + ([node.module] if node.module else []))


def name_users(files: list[Path]) -> dict[tuple[str, str], set[str]]:
    """(module, name) -> the files that import ``name`` from ``module`` or use ``alias.name``
    of an imported ``module``."""
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in files:
        mod = module_name(path) if path.is_relative_to(PKG) else path.stem
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, mod, path.name == "__init__.py")
                if not base.startswith("symgrad"):
                    continue
                for a in node.names:
                    users[(base, a.name)].add(str(path.relative_to(ROOT)))
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("symgrad"):
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                chain, v = [node.attr], node.value
                while isinstance(v, ast.Attribute):
                    chain.append(v.attr)
                    v = v.value
                if isinstance(v, ast.Name) and v.id in aliases:
                    parts = [aliases[v.id]] + chain[::-1]
                    for i in range(1, len(parts)):
                        users[(".".join(parts[:i]), parts[i])].add(str(path.relative_to(ROOT)))
    return users


def table(program: dict, scalar: dict) -> dict[str, dict]:
    prog, scal = ran(program), ran(scalar)
    files = sorted(PKG.rglob("*.py"))
    others = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    users = name_users(files + others)
    data = {}
    for path in files:
        rel, mod = str(path.relative_to(ROOT)), module_name(path)
        n_lines = len(path.read_text().splitlines())
        rows = []
        for u in units(path):
            p_entries, s_entries = set(), set()
            for (f, line), es in prog.items():
                if f == rel and u["start"] <= line <= u["end"]:
                    p_entries |= es
            for (f, line), es in scal.items():
                if f == rel and u["start"] <= line <= u["end"]:
                    s_entries |= es
            who = sorted(users.get((mod, u["name"]), set()) - {rel})
            if p_entries:
                state = "program"
            elif s_entries:
                state = "scalar-only"
            elif u["static"]:
                state = "static"
            else:
                state = "never"
            rows.append({**u, "lines": u["end"] - u["start"] + 1, "state": state,
                         "program_entries": sorted(p_entries),
                         "scalar_entries": sorted(s_entries), "users": who})
        entries = sorted(set().union(*[r["program_entries"] for r in rows]) if rows else set())
        s_entries = sorted(set().union(*[r["scalar_entries"] for r in rows]) if rows else set())
        data[mod] = {"file": rel, "lines": n_lines, "units": rows,
                     "program_entries": entries, "scalar_entries": s_entries,
                     "imported_program": mod in program["imported"]}
    return data


def _lines(rows, state):
    return sum(r["lines"] for r in rows if r["state"] == state)


def markdown(data: dict[str, dict], program: dict, scalar: dict) -> str:
    out = ["## Entries run (seconds, symgrad functions started)", "",
           "| entry | program s | program fns | scalar s | scalar fns | error |",
           "|---|---|---|---|---|---|"]
    for e in program["entries"]:
        p, s = program["entries"][e], scalar["entries"].get(e, {})
        err = p["error"] or s.get("error") or ""
        out.append(f"| {e} | {p['seconds']} | {len(p['functions'])} | {s.get('seconds', '')} |"
                   f" {len(s.get('functions', []))} | {err[:120]} |")
    out += ["", "## Per module", "",
            "state of the top-level functions/classes: P = ran on the program pipeline, "
            "S = ran only on the scalar one, N = ran on neither (in this driver), "
            "C = class with no method (static). Lines are the units' own lines.", "",
            "| module | lines | P (lines) | S (lines) | N (lines) | program entries "
            "using it | scalar-only units (importers outside the module) |",
            "|---|---|---|---|---|---|---|"]
    for mod, d in sorted(data.items()):
        rows = d["units"]
        s_rows = [r for r in rows if r["state"] == "scalar-only"]
        s_text = "; ".join(f"`{r['name']}` ({r['lines']}): "
                           f"{', '.join(u.removeprefix('symgrad/') for u in r['users']) or '-'}"
                           for r in s_rows)
        pe = d["program_entries"]
        pe_text = "all" if len(pe) == len(program["entries"]) else \
            (f"{len(pe)}: " + ", ".join(pe) if len(pe) <= 4 else f"{len(pe)} entries")
        out.append(f"| {mod} | {d['lines']} | {sum(r['state'] == 'program' for r in rows)} "
                   f"({_lines(rows, 'program')}) | {len(s_rows)} ({_lines(rows, 'scalar-only')})"
                   f" | {sum(r['state'] == 'never' for r in rows)} ({_lines(rows, 'never')}) | "
                   f"{pe_text or '-'} | {s_text} |")
    return "\n".join(out)


# the modules the scalar side lives in (wholly or in part): issue 17's deletion candidates
SCALAR = ("graph", "derive", "codegen", "backends.numpy", "backends.torch", "backends.mpmath",
          "backends.arb", "oracle", "bounds", "sides", "stages", "judge", "rigorous.scalar",
          "tensor.lower", "present.derivation", "present.formulas", "explain", "zoo.gpt", "hvp",
          "stable", "model", "verify", "causes", "findings", "ops.basic", "ops.elementwise",
          "ops.transformer")


def entry_codes(program: dict) -> dict[str, str]:
    return {e: f"E{i + 1}" for i, e in enumerate(program["entries"])}


def scalar_use(data: dict[str, dict], program: dict) -> str:
    """Per scalar-side module, each unit that ran on the program pipeline and the entries that
    ran it (by code)."""
    codes = entry_codes(program)
    out = ["## Scalar-side modules: what still runs on SYMGRAD_PIPELINE=program", "",
           "Entry codes: " + "; ".join(f"{c} = {e}" for e, c in codes.items()), "",
           "| module | unit (lines) | entries that ran it on the program pipeline |",
           "|---|---|---|"]
    for short in SCALAR:
        d = data.get(f"symgrad.{short}")
        if d is None:
            continue
        for r in d["units"]:
            if r["state"] == "program":
                es = " ".join(codes[e] for e in r["program_entries"])
                out.append(f"| {short} | `{r['name']}` ({r['lines']}) | {es} |")
            elif r["state"] in ("scalar-only", "never"):
                out.append(f"| {short} | `{r['name']}` ({r['lines']}) | ({r['state']}) |")
    return "\n".join(out)


def entry_reach(data: dict[str, dict], program: dict, scalar: dict) -> str:
    """Per entry: the scalar-side modules it runs functions of, on each pipeline."""
    def reach(doc, entry):
        mods = defaultdict(int)
        for f in doc["entries"].get(entry, {}).get("functions", []):
            path, _, qual = f.split(":", 2)
            mod = module_name(ROOT / path).removeprefix("symgrad.")
            if qual != "<module>" and mod in SCALAR:
                mods[mod] += 1
        return mods
    out = ["## Per entry: scalar-side modules whose functions run (count of code objects)", "",
           "| entry | on SYMGRAD_PIPELINE=program | on scalar |", "|---|---|---|"]
    for e in program["entries"]:
        p, s = reach(program, e), reach(scalar, e)
        fmt = lambda m: ", ".join(f"{k} {v}" for k, v in sorted(m.items()))  # noqa: E731
        out.append(f"| {e} | {fmt(p)} | {fmt(s)} |")
    return "\n".join(out)


def test_imports() -> str:
    """Per test file (and script): the scalar-side modules and names it imports (anywhere in
    the file, function bodies included)."""
    files = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    out = ["## Tests and scripts importing scalar-side modules", "",
           "| file | scalar-side imports |", "|---|---|"]
    for path in files:
        found = defaultdict(set)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("symgrad"):
                base = node.module.removeprefix("symgrad").lstrip(".")
                for a in node.names:
                    full = f"{base}.{a.name}".lstrip(".")
                    if full in SCALAR:
                        found[full].add("*")
                    elif base in SCALAR:
                        found[base].add(a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    short = a.name.removeprefix("symgrad.")
                    if a.name.startswith("symgrad.") and short in SCALAR:
                        found[short].add("*")
        if found:
            text = "; ".join(f"{m}: {', '.join(sorted(ns))}" for m, ns in sorted(found.items()))
            out.append(f"| {path.relative_to(ROOT)} | {text} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("program")
    p.add_argument("scalar")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    program, scalar = (json.loads(Path(f).read_text()) for f in (args.program, args.scalar))
    data = table(program, scalar)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    print(markdown(data, program, scalar))
    print()
    print(entry_reach(data, program, scalar))
    print()
    print(scalar_use(data, program))
    print()
    print(test_imports())
    return 0


if __name__ == "__main__":
    sys.exit(main())
