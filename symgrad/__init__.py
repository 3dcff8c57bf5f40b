"""symgrad: verify gradients against the exact symbolic derivative, in ULPs.

A model is written once in sympy; symgrad derives its exact gradient, runs it in numpy and torch
(or checks your own torch code), and measures every backend against a high-precision oracle.
"""

from . import ops
from .capture.captured import Captured, capture
from .capture.gradcheck import GradcheckError, gradcheck, gradgradcheck
from .compare import Tolerance
from .config import VerifyConfig
from .domains import Bernoulli, Choice, Domain, Integers, LogUniform, Normal, Uniform
from .errors import SymgradError
from .explain import Explanation, explain
from .model import Model, matrix
from .result import Failure, Result
from .tensor.departure import Departure, first_departure
from .tensor.model import TensorModel
from .verify import exact_at, verify
from .version import __version__
from .modules import compare_paths


__all__ = [
    "Bernoulli", "Captured", "Choice", "Domain", "Explanation", "Failure", "Integers", "LogUniform", "Model", "Normal",
    "Result", "SymgradError", "TensorModel", "Tolerance", "Uniform", "VerifyConfig",
    "GradcheckError", "capture", "compare_paths", "gradcheck", "gradgradcheck", "matrix", "Departure", "first_departure",
    "exact_at", "explain", "ops", "verify", "__version__",
]
