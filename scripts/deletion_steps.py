"""Lines each step of the scalar side's deletion plan removes (issue 17; the plan is
reports/deletion_plan.md, the dynamic map behind it was ``scripts/dead_map.py``, retired with
the scalar side).

Each step names whole modules (every line goes) and units (top-level functions / classes, their
own lines from ``ast``, decorators included) of modules that stay. The counts are of today's
tree: a step that lands changes the later ones' numbers only by what it moved. ``--check`` fails
when a named module or unit of a step not yet done no longer exists (the plan is stale). Steps
in ``DONE`` have landed: their row says so and their names are not looked for; the last line
names the steps that remain (none: every step has landed).

    python scripts/deletion_steps.py

Returns:
    exit 0 (1 with --check when a name is gone); a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "symgrad"

# step -> (title, whole modules (paths under symgrad/), {path: [unit name ("?name": counted where
# it exists, e.g. only after the flip), or (text of the first line, text of the last line) for
# lines inside a function, the last being the first line at or after the first that holds it]})
STEPS: list[tuple[str, str, list[str], dict[str, list[str]]]] = [
    ("2a", "delete tensor/lower.py (tensor -> scalar bridge; no importer in symgrad/)",
     ["tensor/lower.py"], {}),
    ("2b", "order=2 on the program only: hvp's scalar HVP builder",
     [], {"hvp.py": ["_scalar_hvp", "_dot_program", "_key", "hvp_forward"]}),
    ("2c", "exact_at / exact_steps on the program: stages' point evaluation",
     [], {"stages.py": ["steps_at", "certified"]}),
    ("2d", "modules/run: the scalar-model branch and the scalar GPT eval twin",
     [], {"modules/run.py": ["_backend_run",
                             ('timings: dict[str, float] = {"first_message_s"',
                              "return result"),
                             ('if "eval_twin" not in model._cache',
                              'model._cache["eval_twin"] = twin')],
          "zoo/gpt.py": [
         "tiny_gpt", "transformer_block", "_init", "_rowsum_of_squares", "_keep",
         "_block_params", "_layer_norm", "_gelu_kind"]}),
    ("2e", "opcatalog: the scalar-compiled cache share", [],
     {"opcatalog/build.py": ["share_compiled"]}),
    ("4a", "the scalar verification pipeline (verify's scalar tail, judge, bounds, ...)",
     ["judge.py", "bounds.py", "rigorous/scalar.py"],
     {"verify.py": ["_pipeline", "?pipeline", "_given"],
      "backends/numpy.py": ["compile_gradient", "compile_bound", "run"],
      "causes.py": ["classify", "op_values", "wanted_ops", "_wanted", "guard_constants"],
      "findings.py": ["worst_entries"]}),
    ("4b", "what explain / exact_steps / the report still read of the scalar side",
     ["oracle.py", "sides.py", "stages.py"],
     {"backends/torch.py": ["compile_forward", "run_program", "_logistic_argument"],
      "backends/arb.py": ["rlog", "rlog1p", "_unit", "rasin", "racos",
                          "rpow", "_nan_propagating", "_fn", "FlatZero", "Site", "Kinks",
                          "_canonical", "_node", "_add", "target", "set_precision"]}),
    ("5", "the scalar presentations (after explain and the report run on the program)",
     ["present/derivation.py", "derive.py"],
     {"present/formulas.py": ["display_names", "_shown", "_family", "families", "_shapes",
                              "_matrix_rules", "model_formulas", "gradient_formulas",
                              "_textbook", "_matrix_eq", "_computed", "_program_names"],
      "graph.py": ["active_symbols"]}),  # moved from derive.py by step 1c
]


DONE: set[str] = {"2a", "2b", "2c", "2d", "2e", "4a", "4b", "5"}


def units(path: Path) -> dict[str, int]:
    """Top-level function / class name -> its lines (decorators included)."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out[node.name] = node.end_lineno - start + 1
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    total_now = sum(len(f.read_text().splitlines()) for f in PKG.rglob("*.py"))
    missing, running = [], total_now
    taken: dict[str, int] = {}  # lines of a module removed by earlier steps
    print(f"symgrad/ today: {total_now} lines\n")
    print("| step | what | whole modules (lines) | units of modules that stay (lines) | "
          "step lines | symgrad/ after |")
    print("|---|---|---|---|---|---|")
    for key, title, whole, parts in STEPS:
        if key in DONE:
            print(f"| {key} | {title} | done | done | 0 | {running} |")
            continue
        w_lines, w_text = 0, []
        for f in whole:
            path = PKG / f
            if not path.exists():
                missing.append(f)
                continue
            n = len(path.read_text().splitlines()) - taken.get(f, 0)
            w_lines += n
            w_text.append(f"{f} {n}")
        u_lines, u_text = 0, []
        for f, names in parts.items():
            have = units(PKG / f) if (PKG / f).exists() else {}
            n = 0
            text = (PKG / f).read_text().splitlines() if (PKG / f).exists() else []
            for name in names:
                if isinstance(name, tuple):
                    first = next((i for i, t in enumerate(text) if name[0] in t), None)
                    last = None if first is None else next(
                        (i for i in range(first, len(text)) if name[1] in text[i]), None)
                    if last is None:
                        missing.append(f"{f}: lines {name[0]!r} .. {name[1]!r}")
                        continue
                    n += last - first + 1
                elif name.startswith("?"):
                    n += have.get(name[1:], 0)
                elif name not in have:
                    missing.append(f"{f}:{name}")
                else:
                    n += have[name]
            taken[f] = taken.get(f, 0) + n
            u_lines += n
            u_text.append(f"{f} {n}")
        running -= w_lines + u_lines
        print(f"| {key} | {title} | {', '.join(w_text) or '-'} | {', '.join(u_text) or '-'} | "
              f"{w_lines + u_lines} | {running} |")
    print(f"\nall steps: {total_now - running} lines (units' own lines; the imports and "
          "docstrings that go with them are not counted)")
    remaining = [key for key, *_ in STEPS if key not in DONE]
    print("steps that remain: " + (", ".join(remaining) or "none (every step has landed)"))
    if missing:
        print("gone from the tree (the plan is stale here): " + ", ".join(missing))
    return 1 if args.check and missing else 0


if __name__ == "__main__":
    sys.exit(main())
