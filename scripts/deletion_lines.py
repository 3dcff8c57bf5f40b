"""Lines of ``symgrad/`` that issue 17's deletion of the scalar pipeline removed, counted on its
own commits (reports/deletion_lines.md): each commit's ``git diff --numstat`` against its first
parent, restricted to ``symgrad/**.py``; a merge counts only what the merge itself changed
(``git show --remerge-diff``: the merge against git's automatic merge of its parents), since its
branch's commits are counted one by one. Every diff is the deletion's own, whatever else landed
on main beside it, so the sums are the deletion measured on one base: main before it
(``BASE``, 28,005 lines) plus the net is the package that base would have become with only
these commits.

The commits, by step of reports/deletion_plan.md (``COMMITS``): the moves that made the scalar
side deletable whole (1a-1c), the switch to the program pipeline (the gate, the flip: code
that steps 4a/4b deleted again; the gate itself, e3a2c90, is older than ``BASE`` and in its
lines), the ports that gave the program path what it still took from
the scalar side (2b order 2, 2c exact_at, 2f/2g explain and the report; a rounding fix the
ports' tests found), and the deletions (2a, 2d, 2e, 4a, 4b, 5, step 6's slice, the leftovers).

After the deletion and apart from its sums (``AFTER``): the dead code lean17 removed from main
8efe0f1, each commit counted the same way; then (``LEAN18``) the code lean18 found said twice or
long-hand on main f346b91 and said once; then (``LEAN19``) the last of it on main e58aa30,
with the lead's 8b596a1 from before it.

    python scripts/deletion_lines.py            # the Markdown tables on stdout

Returns:
    exit 0; exit 1 when a commit is not in this clone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "ee52b50"  # main before the flip and the moves (deletion_plan.md's 28,005 lines)

# (step, kind, commit, what); kind: move / switch / port / delete / merge (its own changes)
COMMITS: list[tuple[str, str, str, str]] = [
    ("1a", "move", "c157bc0", "rounding.py out of bounds.py"),
    ("1c", "move", "4508a6e", "merge_powers, active_symbols out of derive.py"),
    ("1b", "move", "28de199", "sides' shared half to compare/kinks, precise/ladder"),
    ("0", "switch", "3c8b899", "verify.pipeline(name)"),
    ("0", "switch", "4caf3d7", "the flip: program by default"),
    ("2b", "port", "7d6721d", "order 2 through the program"),
    ("2b", "port", "641affd", "order 2: program route's names"),
    ("2b", "port", "0d13681", "order 2: gate fixes"),
    ("2b", "merge", "85e6b67", "merge hvp2"),
    ("2c", "port", "95b433c", "exact_at on the program"),
    ("2c", "port", "0e4c57c", "tensor/exact doctest"),
    ("2c", "port", "6461da0", "exact_at: a raising ball op escalates"),
    ("2f", "port", "acae0d9", "steps carry their front-end forms"),
    ("2f", "port", "1e5357b", "explain reads only the program"),
    ("2f", "port", "6912fa3", "explain: steps in the model's order"),
    ("2g", "port", "804d3cf", "report: samples drawn by the program"),
    ("2g", "port", "62be90e", "report: formulas from the program"),
    ("2g", "port", "2ac45c0", "step_formulas: families by label"),
    ("2g", "port", "84b209b", "step_formulas.is_steps"),
    ("2g", "port", "8264de8", "report: docstrings"),
    ("2g", "port", "92503bd", "present: bodies renamed with tensor.rename"),
    ("4", "port", "c0947c9", "rounding: Max/Min near a tie (the ports' tests)"),
    ("2a", "delete", "1103beb", "tensor/lower.py"),
    ("2e", "delete", "65fcedd", "opcatalog share_compiled"),
    ("2d", "delete", "0f85cde", "module= with a plain model; scalar tiny_gpt"),
    ("4a", "delete", "db9dfd1", "the scalar verification pipeline"),
    ("4a", "delete", "d1b3398", "modules/run docstring rewrapped"),
    ("4a", "merge", "fdab067", "merge core: exact_at's scalar fallback"),
    ("4b", "delete", "8cb4fd1", "stages.py, oracle.py, sides.py"),
    ("4b", "delete", "45b07f5", "backends/torch compile_forward, run_program"),
    ("4b", "delete", "e40bcff", "backends/arb's scalar-oracle printer"),
    ("4b", "delete", "0c9a972", "sg.Program etc. no longer exported"),
    ("6", "delete", "2b4a042", "step 6's slice: one program_of"),
    ("5", "delete", "36ccbe8", "present/derivation.py, formulas' scalar half"),
    ("5", "port", "8a2ab2b", "step_formulas over plain symbols"),
    ("5", "port", "e91eb01", "step_formulas: chain rule on a plain twin"),
    ("5", "delete", "2f27312", "derive.py"),
    ("5", "delete", "30843a1", "what the deletion left behind"),
]

# After the deletion, apart: step 6's rest (type switches 4 -> 0) came in one commit with other
# work (the zoo's one table, sg.matrix's entry symbols moved to entries.py): shown, not summed.
APART: list[tuple[str, str, str, str]] = [
    ("6", "apart", "3e1ec37", "as_program on both model types (+ zoo table, entries.py)"),
]

# After the deletion, apart from it: dead code that nothing needed, removed by lean17 on main
# 8efe0f1 (``AFTER_BASE``); counted the same way, in a table of its own (not in the sums above).
AFTER_BASE = "8efe0f1"
AFTER: list[tuple[str, str]] = [
    ("0a1156a", "dead functions nothing calls"),
    ("f0bf64c", "zoo's compatibility shims: get(tensor=), tensor_names()"),
    ("e05d2d2", "dead branches and fields: arb.Between, codegen's ipow, Graph.size/by_symbol"),
    ("938961e", "rigorous/max_top.RULES_TOP"),
    ("d032bf9", "Model.draw written once, on ModelBase"),
    ("e221ca5", "fields written and never read"),
    ("baac241", "compare/kinks: one union-find"),
]

# Then, apart again: code said twice or long-hand (one function serving both places, a loop
# or table for branches, a library call for a hand-written fold), lean18 on main f346b91.
LEAN18_BASE = "f346b91"
LEAN18: list[tuple[str, str]] = [
    ("61ad3cc", "cli: _count and _seed one argparse type"),
    ("97f2331", "rigorous/balls: widen calls _check"),
    ("01f656c", "tensor/program: sum_/max_ one _reduce; matmul's letters"),
    ("0030e29", "present/notation: MathML leaves and rows by the printer's helpers"),
    ("4b5e821", "models: one ModelBase._cached for six caches"),
    ("cf27452", "tensor/interpret.evaluate: keep= passed by no caller"),
    ("fdd7e32", "capture/conv: one im2col path, transposed or not"),
    ("0ffad56", "present/texmath: argument is atom; sub/sup tags a table"),
    ("58539f9", "fold loops as functools.reduce"),
    ("05e727e", "one-use one-line wrappers in place; a dead method"),
    ("b43b6d9", "tensor/derive + steps: one reverse accumulation"),
    ("715f758", "Result.output_groups for the table and the report"),
    ("a2f31e5", "present: one summed(); layer_sections' shapes"),
    ("1fb800f", "tensor/sided: sympy's traversals"),
    ("88b1644", "tensor/exact + limits: one ball_leaves"),
    ("cb5179e", "present/names + notation: one updated() context manager"),
    ("501cee9", "atomic: _deferred_interrupt as a contextmanager"),
    ("10c426c", "four more one-use helpers in place"),
    ("cd34a26", "derive + torch_vjp: two hand-written caches as lru_cache"),
    ("797a101", "hvp_mutants: _swapped is mock.patch.object"),
    ("be03731", "backends/torch._branch: names restored by mock.patch.dict"),
]

# Then (``LEAN19``) the last of it, lean19 on main e58aa30: the same kind of change, beginning
# with the lead's 8b596a1 (one module check for modules.run and modules.any), which landed on
# main before e58aa30 and so is in the sum but not in the lines counted from e58aa30.
LEAN19_BASE = "e58aa30"
LEAN19: list[tuple[str, str]] = [
    ("8b596a1", "modules: one run.check_module for run and any (the lead's, before e58aa30)"),
    ("693812e", "precise/ozaki_torch: dd's TwoSums, ozaki's non-finite wrapper and shifts"),
    ("d8e6559", "precise/arb: the ufunc table from arb's method names; reduce, sum, prod"),
    ("729e59e", "precise/ddmath + dderf + ddtrig: one _horner; factorial, accumulate"),
    ("ea21a2d", "precise: one contract.axes for the DD and ARB tables"),
    ("a39f926", "rigorous/balls: rsum/rprod by sum() and math.prod()"),
]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def numstat(commit: str, merge: bool) -> tuple[int, int]:
    """Lines added and deleted in ``symgrad/**.py`` by ``commit`` (a merge: by the merge
    itself, against git's automatic merge of its parents)."""
    out = (git("show", "--remerge-diff", "--format=", "--numstat", commit) if merge
           else git("diff", "--numstat", f"{commit}^1", commit))
    added = deleted = 0
    for line in out.splitlines():
        a, d, path = line.split("\t", 2)
        if path.startswith("symgrad/") and path.endswith(".py") and a != "-":
            added, deleted = added + int(a), deleted + int(d)
    return added, deleted


def descends(commit: str, base: str) -> bool:
    """Whether ``commit`` has ``base`` among its ancestors (or is it)."""
    return subprocess.run(["git", "merge-base", "--is-ancestor", base, commit], cwd=ROOT,
                          capture_output=True).returncode == 0


def lines_at(commit: str) -> int:
    """Lines of ``symgrad/**.py`` at ``commit`` (as ``scripts/deletion_steps.py`` counts)."""
    names = [n for n in git("ls-tree", "-r", "--name-only", commit, "symgrad/").splitlines()
             if n.endswith(".py")]
    return sum(len(git("show", f"{commit}:{n}").splitlines()) for n in names)


def main() -> int:
    try:
        git("cat-file", "-e", BASE)
        for *_, c, _ in COMMITS + APART:
            git("cat-file", "-e", c)
        for c, _ in AFTER + LEAN18 + LEAN19:
            git("cat-file", "-e", c)
    except subprocess.CalledProcessError:
        print("a commit of the deletion is not in this clone (a shallow clone?): fetch the "
              "whole history", file=sys.stderr)
        return 1
    base = lines_at(BASE)
    print("| step | kind | commit | what | + | - | net |\n|---|---|---|---|---|---|---|")
    kinds: dict[str, list[int]] = {}
    for step, kind, commit, what in COMMITS:
        a, d = numstat(commit, kind == "merge")
        kinds.setdefault(kind, [0, 0])
        kinds[kind][0] += a
        kinds[kind][1] += d
        print(f"| {step} | {kind} | {commit} | {what} | {a} | {d} | {a - d:+d} |")
    print("\n| kind | + | - | net |\n|---|---|---|---|")
    for kind, (a, d) in kinds.items():
        print(f"| {kind} | {a:,} | {d:,} | {a - d:+,} |")
    added = sum(a for a, _ in kinds.values())
    deleted = sum(d for _, d in kinds.values())
    print(f"| **all** | {added:,} | {deleted:,} | **{added - deleted:+,}** |")
    for step, kind, commit, what in APART:
        a, d = numstat(commit, False)
        print(f"\nApart (not in the sums): step {step}, {commit} ({what}): +{a} -{d}, "
              f"net {a - d:+d}; with it the net is {added - deleted + a - d:+,}")
    print(f"\nsymgrad/ at {BASE}: {base:,} lines; with only these commits: "
          f"{base + added - deleted:,} ({added - deleted:+,})")
    nets = [added - deleted]
    for title, start_at, commits in (("dead code removed by lean17", AFTER_BASE, AFTER),
                                     ("code said twice or long-hand, said once by lean18",
                                      LEAN18_BASE, LEAN18),
                                     ("the last of it, said once by lean19", LEAN19_BASE,
                                      LEAN19)):
        if not commits:
            continue
        print(f"\nAfter the deletion: {title}\n\n"
              "| commit | what | + | - | net |\n|---|---|---|---|---|")
        a_sum = d_sum = 0
        for commit, what in commits:
            a, d = numstat(commit, False)
            a_sum, d_sum = a_sum + a, d_sum + d
            print(f"| {commit} | {what} | {a} | {d} | {a - d:+d} |")
        print(f"| **all** | | {a_sum:,} | {d_sum:,} | **{a_sum - d_sum:+,}** |")
        start, end = lines_at(start_at), lines_at(commits[-1][0])
        before = [c for c, _ in commits if not descends(c, start_at)]  # landed before the base
        print(f"\nsymgrad/ at {start_at}: {start:,} lines; at {commits[-1][0]}: {end:,} "
              f"({end - start:+,})" + (f"; {', '.join(before)} landed before {start_at}"
                                       if before else ""))
        nets.append(a_sum - d_sum)
    print(f"\nIn all (the deletion{', lean17' if AFTER else ''}"
          f"{', lean18' if LEAN18 else ''}{', lean19' if LEAN19 else ''}): {sum(nets):+,} "
          f"lines of symgrad/; issue 17 "
          f"asks for -2,000: {'met' if sum(nets) <= -2000 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
