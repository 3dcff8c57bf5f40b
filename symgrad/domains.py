"""Sampling domains for parameters and inputs; every draw comes from an explicit generator.

>>> import numpy as np
>>> from symgrad.domains import Uniform
>>> Uniform(-3, 3).sample(np.random.default_rng(0), (2,)).shape
(2,)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import SymgradError, checked_keywords


class UndefinedOnDomain(SymgradError):
    """The model is undefined (its exact loss NaN) at samples drawn from its own declared
    domains (``symgrad.tensor.undefined``): bad input, not a finding about a backend."""


class Domain:
    """Where a symbol's values are drawn from. Subclasses implement ``sample``."""

    integer: bool = False  # values are integers (token ids, class labels)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return repr(self)


@checked_keywords
@dataclass(frozen=True)
class Normal(Domain):
    """Gaussian with the given mean and standard deviation."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not (self.std > 0 and math.isfinite(self.std) and math.isfinite(self.mean)):
            raise SymgradError(f"Normal(mean={self.mean}, std={self.std}): std must be finite "
                               "and > 0")

    def sample(self, rng, shape):
        return rng.normal(self.mean, self.std, size=shape)


@checked_keywords
@dataclass(frozen=True)
class Uniform(Domain):
    """Uniform on [low, high)."""

    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise SymgradError(f"Uniform({self.low}, {self.high}): low must be < high")

    def sample(self, rng, shape):
        return rng.uniform(self.low, self.high, size=shape)


@checked_keywords
@dataclass(frozen=True)
class LogUniform(Domain):
    """Positive values whose logarithm is uniform on [log low, log high)."""

    low: float = 1e-3
    high: float = 1e3

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise SymgradError(f"LogUniform({self.low}, {self.high}): need 0 < low < high")

    def sample(self, rng, shape):
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=shape))


@checked_keywords
@dataclass(frozen=True)
class Choice(Domain):
    """One of a fixed list of values, uniformly."""

    values: Sequence[float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.values) == 0:
            raise SymgradError("Choice([]): give at least one value")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    def sample(self, rng, shape):
        return np.asarray(self.values)[rng.integers(0, len(self.values), size=shape)]


@checked_keywords
@dataclass(frozen=True)
class Bernoulli(Domain):
    """1 with probability ``p``, else 0 (e.g. a dropout keep-mask with p = 1 - drop_rate)."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise SymgradError(f"Bernoulli({self.p}): p must be in [0, 1]")

    def sample(self, rng, shape):
        return (rng.random(size=shape) < self.p).astype(np.float64)


@checked_keywords
@dataclass(frozen=True)
class Integers(Domain):
    """Integers in [low, high] inclusive (token ids, class labels)."""

    low: int = 0
    high: int = 1
    integer = True

    def __post_init__(self) -> None:
        if not int(self.low) <= int(self.high):
            raise SymgradError(f"Integers({self.low}, {self.high}): low must be <= high")

    def sample(self, rng, shape):
        return rng.integers(int(self.low), int(self.high) + 1, size=shape).astype(np.float64)


def as_domain(value, *, what: str) -> Domain:
    """Accept a Domain (or None for the default); anything else is a clear error."""
    if value is None:
        return Normal()
    if isinstance(value, Domain):
        return value
    raise SymgradError(f"{what}: expected a sampling domain such as sg.Normal(), sg.Uniform(-1, 1),"
                       f" sg.Choice([0, 1]); got {value!r}")


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to the nearest ``dtype`` number (kept as float64)."""
    if dtype == "float64":
        return values
    if dtype == "float32":
        return values.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return values.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    raise SymgradError(f"unknown dtype {dtype!r}")
