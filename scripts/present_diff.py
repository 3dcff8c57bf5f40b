"""Before/after check of the people's views (issue 17): writes ``symgrad explain NAME --format
markdown`` of every built-in model and the report's pages of the zoo into a folder, so two
trees' output can be diffed.

Usage (once per tree, then diff the folders)::

    PYTHONPATH=/path/to/tree python scripts/present_diff.py OUT [--samples N] [NAME ...]
    diff -r OUT_BEFORE OUT_AFTER

The report's pages carry timings (seconds); compare them with ``grep -v`` on those lines.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from symgrad import zoo
from symgrad.report import gradient_formulas, model_formulas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--formulas-only", action="store_true",
                    help="only the report's formula sections (report.model_formulas, "
                         "gradient_formulas) of each model, no explain, no verify")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    names = args.names or zoo.names()
    if args.formulas_only:
        (args.out / "formulas").mkdir(parents=True, exist_ok=True)
        for name in names:
            m = zoo.get(name)
            text = [repr(f) for f in model_formulas(m)]
            text += [repr(t) + "\n" + "\n".join(map(repr, fs)) for t, fs in gradient_formulas(m)]
            (args.out / "formulas" / f"{name}.txt").write_text("\n".join(text) + "\n")
            print(name, "formulas", flush=True)
        return
    (args.out / "explain").mkdir(parents=True, exist_ok=True)
    for name in names:
        r = subprocess.run([sys.executable, "-m", "symgrad", "explain", name, "--format",
                            "markdown"], capture_output=True, text=True)
        (args.out / "explain" / f"{name}.md").write_text(r.stdout + r.stderr)
        print(name, "explain rc", r.returncode, flush=True)
    if not args.no_report:
        r = subprocess.run([sys.executable, "-m", "symgrad", "report", "--out",
                            str(args.out / "report"), "--samples", str(args.samples),
                            "--no-progress", *names], capture_output=True, text=True)
        print("report rc", r.returncode, r.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
