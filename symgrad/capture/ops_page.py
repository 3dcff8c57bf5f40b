"""The page of supported ATen ops (``reports/capture_ops.md``), generated from ``aten.TABLE``.

>>> "| `aten.mm.default` |" in page()
True
"""

from __future__ import annotations

from .aten import TABLE, describe


def page() -> str:
    """The Markdown page: one row per key of the table, grouped by op name."""
    rows = sorted(TABLE, key=str)
    lines = [
        "# ATen ops symgrad captures",
        "",
        "Generated from `symgrad.capture.aten.TABLE` by `scripts/capture_ops.py`; do not edit.",
        "",
        f"{len(rows)} ATen overloads ({len({str(op).rsplit('.', 1)[0] for op in rows})} ops) "
        "are lowered to tensor-program nodes. `torch.export` (core ATen after "
        "decompositions) reduces most of PyTorch to these; an op whose arguments are all "
        "constants or integer inputs is run by torch itself and needs no row. Any other op is "
        "refused in one line naming it and the source line that called it.",
        "",
        "| ATen op | lowered to |",
        "| --- | --- |",
    ]
    lines += [f"| `{op}` | {describe(op).replace('|', '/')} |" for op in rows]
    return "\n".join(lines) + "\n"
