"""Write reports/capture_ops.md: the ATen ops symgrad.capture lowers, from its one table.

    python scripts/capture_ops.py [--out reports]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from symgrad.capture.ops_page import page  # noqa: E402
from symgrad.atomic import write_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "reports"))
    args = parser.parse_args()
    path = Path(args.out) / "capture_ops.md"
    write_text(path, page())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
