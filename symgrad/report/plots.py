"""Histogram of the error in ULPs per backend (matplotlib, log scale) as PNG bytes."""

from __future__ import annotations

import io

from ..compare import ULP_BINS, ulp_counts


def ulp_histogram(result) -> bytes:
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2), dpi=100)
    ax = fig.add_subplot()
    for name, comp in result.comparisons.items():  # a reduced comparison kept only its counts
        counts = comp.ulp_counts if comp.reduced else ulp_counts(comp.ulps)
        ax.hist(ULP_BINS[:-1], bins=ULP_BINS, weights=counts, histtype="step", label=name,
                linewidth=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("log10 error in ULPs of the backend's dtype (0 ULPs shown at -3)")
    ax.set_ylabel("entries")
    ax.set_title(f"{result.model}: error vs the exact derivative")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
