"""The one comparer, split by job: each entry's status (``entries``: the rule, the statuses,
``compare``, ``prove``), the knobs and units (``tolerance``: ``Tolerance``, ``allowance``),
kinks and subgradients (``kinks``), a non-finite entry at a singular point reached by rounding
(``singular``) and the block and pooled tests (``blocks``). Every name is
importable from ``symgrad.compare`` as before the split. The rule itself is written in
``symgrad.compare.entries``' docstring and in every report.
"""

from ..errors import SymgradError
from .blocks import (BlockFinding, _projection, pooled_resolution, pooled_test, systematic,
                     systematic_blocks)
from .entries import (DOMAIN, EXPLANATIONS, FAILING, INCONCLUSIVE, KINK, LOSS, MISMATCH,
                      NONFINITE, OK, OVERFLOW, STATUS_NAMES, SUSPECT, SYSTEMATIC, ULP_BINS,
                      Comparison, compare, prove, ulp_counts)
from .kinks import KinkSides, convex_combination, separable_combination
from .singular import mark_singular
from .tolerance import (DTYPES, DTypeInfo, Tolerance, allowance, dtype_info, entry_errors,
                        error_ulps, losing, measured_ulps, tie_band, ulp)

__all__ = [
    "BlockFinding", "Comparison", "DOMAIN", "DTYPES", "DTypeInfo", "EXPLANATIONS", "FAILING",
    "INCONCLUSIVE", "KINK", "KinkSides", "LOSS", "MISMATCH", "NONFINITE", "OK", "OVERFLOW",
    "STATUS_NAMES", "SUSPECT", "SYSTEMATIC", "SymgradError", "Tolerance", "ULP_BINS",
    "allowance", "compare", "convex_combination", "dtype_info", "entry_errors", "error_ulps",
    "losing", "mark_singular", "measured_ulps", "pooled_resolution", "pooled_test", "prove", "separable_combination", "systematic",
    "systematic_blocks", "tie_band", "ulp", "ulp_counts",
]
