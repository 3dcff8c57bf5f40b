"""The rigorous enclosure: a proven ball around the exact value holding everything correct code
can compute in a dtype, per entry; a failure of the entry test needs the error to lie outside it.

``balls`` states the theorem and holds the rounding model and the lazy ``Enclosure``;
``tensor`` encloses a tensor program (``max_top`` its max reductions, ``exact_int`` its einsums
of exact small integers, ``torch_forms`` torch's own backward formulas of an op beside
symgrad's); ``singular`` the entries whose enclosure reaches a singular point, where correct
code may compute NaN or inf.
"""

from .balls import (EXACT_FUNCTIONS, PREC, UNIT, Enclosure, Rounding, Unbounded, nonnegative,
                    radius_about, spread, union)
from .singular import SingularRounding
from .tensor import RoundedArbOps, singular_entries, tensor_balls, tensor_enclosure

__all__ = ["EXACT_FUNCTIONS", "PREC", "UNIT", "Enclosure", "Rounding", "RoundedArbOps",
           "SingularRounding", "Unbounded", "nonnegative", "radius_about", "singular_entries",
           "spread", "tensor_balls",
           "tensor_enclosure", "union"]
