"""The rigorous enclosure: a proven ball around the exact value holding everything correct code
can compute in a dtype, per entry; a failure of the entry test needs the error to lie outside it.

``balls`` states the theorem and holds the rounding model and the lazy ``Enclosure``;
``scalar`` encloses a scalar program, ``tensor`` a tensor program.
"""

from .balls import (EXACT_FUNCTIONS, PREC, UNIT, Enclosure, Rounding, Unbounded, nonnegative,
                    radius_about, spread, union)
from .scalar import (RoundedKinks, compile_enclosure, compile_program_enclosure, enclose,
                     scalar_enclosure)
from .tensor import RoundedArbOps, tensor_balls, tensor_enclosure

__all__ = ["EXACT_FUNCTIONS", "PREC", "UNIT", "Enclosure", "Rounding", "RoundedArbOps",
           "RoundedKinks", "Unbounded", "compile_enclosure", "compile_program_enclosure",
           "enclose", "nonnegative", "radius_about", "scalar_enclosure", "spread",
           "tensor_balls", "tensor_enclosure", "union"]
