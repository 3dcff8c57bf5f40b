"""Histogram of the error in ULPs per backend (matplotlib, log scale) as PNG bytes."""

from __future__ import annotations

import io

import numpy as np


def ulp_histogram(result) -> bytes:
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2), dpi=100)
    ax = fig.add_subplot()
    bins = np.arange(-3, 20.5, 0.5)
    for name, comp in result.comparisons.items():
        u = comp.ulps[np.isfinite(comp.ulps)].ravel()
        ax.hist(np.log10(np.maximum(u, 1e-3)), bins=bins, histtype="step", label=name,
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
