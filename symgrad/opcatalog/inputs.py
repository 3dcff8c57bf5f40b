"""Edge-seeking inputs for the catalogue: a table of domains, each with its edge grid and bulk.

Edges per domain and dtype: exactly 0 and values beside it, the smallest subnormal and normal
numbers, tiny and huge magnitudes, saturation (±20…±100, exp's overflow edge), values beside
the op's own kinks/thresholds (the row's ``kinks``, and their nearest neighbours in the dtype).
The rest of the budget is drawn from the domain's bulk. Vector arguments get patterns: bulk,
entries from the edge grid, ties (equal entries), one dominant entry, zeros.

>>> import numpy as np
>>> from symgrad.opcatalog.table import by_name
>>> from symgrad.opcatalog.inputs import samples
>>> s = samples(by_name("relu"), dtype="float64", budget=12, rng=np.random.default_rng(0))
>>> s["x"].shape, 0.0 in s["x"]
((12,), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..compare import dtype_info
from ..domains import round_to
from .table import Op

SUBNORMAL = {"float64": 5e-324, "float32": 2.0**-149, "bfloat16": 2.0**-133,
             "float16": 2.0**-24}


@dataclass(frozen=True)
class DomainSpec:
    """Where one argument's values live: its edges (by dtype) and its bulk sampler."""

    edges: Callable[[str], list[float]]
    bulk: Callable[[np.random.Generator, int], np.ndarray]
    low: float = -np.inf  # open lower end (values must be > low)
    high: float = np.inf  # open upper end
    integer: bool = False
    categorical: bool = False  # labels, signs, classes: no edge patterns in vectors


def _signed(vals):
    return [v for a in vals for v in (a, -a)]


def _real_edges(dtype: str) -> list[float]:
    info = dtype_info(dtype)
    mags = [SUBNORMAL[dtype], info.tiny, 1e-30, 1e-8, 0.5, 1.0, 2.0, 3.0, 6.0, 10.0, 20.0, 20.5,
            30.0, 50.0, 88.5, 100.0, 700.0, 1e4, 1e10, 1e30, 1e300]
    return [0.0] + _signed([m for m in mags if m < info.max / 4])


def _pos_edges(dtype: str) -> list[float]:
    info = dtype_info(dtype)
    mags = [SUBNORMAL[dtype], info.tiny, 1e-30, 1e-8, 0.5, 1.0, 1 + info.eps, 2.0, 10.0, 1e8,
            1e30, 1e300]
    return [m for m in mags if m < info.max / 4]


def _small_edges(dtype: str) -> list[float]:
    return [0.0] + _signed([SUBNORMAL[dtype], 1e-8, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0])


def _unit_edges(dtype: str) -> list[float]:
    eps = dtype_info(dtype).eps
    return [0.0] + _signed([SUBNORMAL[dtype], 1e-8, 0.5, 0.9, 1 - 2**-10, 1 - eps])


def _prob_edges(dtype: str) -> list[float]:
    eps = dtype_info(dtype).eps
    tiny = [v for v in (SUBNORMAL[dtype], 1e-44, 1e-30, 1e-12, 1e-8) if v >= SUBNORMAL[dtype]]
    return tiny + [0.25, 0.5, 0.75, 1 - 1e-8, 1 - 2**-10, 1 - eps]


def _gtm1_edges(dtype: str) -> list[float]:
    eps = dtype_info(dtype).eps
    return [-1 + eps, -1 + 2**-10, -0.5, 0.0, SUBNORMAL[dtype], -SUBNORMAL[dtype], 1e-8, -1e-8,
            1.0, 1e8] + ([1e300] if dtype == "float64" else [1e30])


def _ge1_edges(dtype: str) -> list[float]:
    eps = dtype_info(dtype).eps
    return [1.0, 1 + eps, 1 + 2**-20, 1.5, 2.0, 10.0, 1e8] + ([1e300] if dtype == "float64"
                                                              else [1e30])


def _nonzero_edges(dtype: str) -> list[float]:
    return [v for v in _real_edges(dtype) if v != 0]


DOMAINS: dict[str, DomainSpec] = {
    "real": DomainSpec(_real_edges, lambda rng, n: rng.normal(0, 3, n)),
    "nonzero": DomainSpec(_nonzero_edges, lambda rng, n: rng.choice([-1, 1], n)
                          * rng.uniform(0.1, 5, n)),
    "small": DomainSpec(_small_edges, lambda rng, n: rng.normal(0, 2, n)),
    "pos": DomainSpec(_pos_edges, lambda rng, n: np.exp(rng.uniform(-7, 7, n)), low=0.0),
    "unit": DomainSpec(_unit_edges, lambda rng, n: rng.uniform(-1, 1, n), low=-1.0, high=1.0),
    "prob": DomainSpec(_prob_edges, lambda rng, n: rng.uniform(0, 1, n), low=0.0, high=1.0),
    "gtm1": DomainSpec(_gtm1_edges, lambda rng, n: np.exp(rng.uniform(-5, 3, n)) - 1, low=-1.0),
    "ge1": DomainSpec(_ge1_edges, lambda rng, n: 1 + np.exp(rng.uniform(-8, 4, n))),
    "label01": DomainSpec(lambda d: [0.0, 1.0, 0.5], lambda rng, n: rng.choice(
        [0.0, 1.0, 0.3], n), categorical=True),
    "pm1": DomainSpec(lambda d: [1.0, -1.0], lambda rng, n: rng.choice([-1.0, 1.0], n),
                      categorical=True),
    "class3": DomainSpec(lambda d: [0.0, 1.0, 2.0], lambda rng, n: rng.integers(0, 3, n)
                         .astype(float), integer=True, categorical=True),
    # matrices torch must invert: standard normal entries (singular with probability 0)
    "invertible": DomainSpec(lambda d: [], lambda rng, n: rng.normal(0, 1, n),
                             categorical=True),
}


def _inside(spec: DomainSpec, v: np.ndarray) -> np.ndarray:
    return (v > spec.low) & (v < spec.high) if not spec.integer else np.ones(v.shape, bool)


def kink_neighbours(op: Op, dtype: str) -> list[float]:
    """Each kink, and its nearest neighbours in ``dtype`` on both sides."""
    out = []
    for k in op.kinks:
        k = float(round_to(np.array([k]), dtype)[0])
        step = dtype_info(dtype).eps * max(abs(k), dtype_info(dtype).tiny)
        out += [k, k - step, k + step, k + 1e-3 * max(abs(k), 1), k - 1e-3 * max(abs(k), 1)]
    return out


def _scalar_column(op: Op, arg, dtype: str, n: int, rng: np.random.Generator,
                   first: bool) -> np.ndarray:
    spec = DOMAINS[arg.domain]
    edges = list(spec.edges(dtype)) or [float(v) for v in spec.bulk(rng, 1)]
    if first and not spec.integer:
        edges = kink_neighbours(op, dtype) + edges
    edges = np.asarray(edges, dtype=np.float64)
    bulk = spec.bulk(rng, max(n, 1))
    if first:  # the first argument walks the edge grid in order
        col = np.concatenate([edges[:n], bulk[: max(0, n - len(edges))]])
    else:  # later arguments: edges at random beside the bulk
        col = np.where(rng.random(n) < 0.4, rng.choice(edges, n), bulk[:n])
    col = round_to(col, dtype)
    fallback = round_to(spec.bulk(rng, n), dtype)
    return np.where(_inside(spec, col) & np.isfinite(col), col, fallback)


def _vector_block(arg, dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    spec = DOMAINS[arg.domain]
    size = int(np.prod(arg.shape))
    edges = np.asarray(spec.edges(dtype), dtype=np.float64)
    out = spec.bulk(rng, n * size).reshape(n, size)
    for i in range(n if not spec.categorical else 0):
        pattern = i % 5
        if pattern == 1:  # entries from the edge grid
            out[i] = rng.choice(edges, size)
        elif pattern == 2 and not spec.integer:  # ties
            tie = rng.choice(edges)
            k = rng.integers(2, size + 1)
            out[i, :k] = tie
        elif pattern == 3 and not spec.integer:  # one dominant entry
            big = [v for v in edges if abs(v) >= 20] or list(edges)
            out[i, rng.integers(size)] = rng.choice(big)
        elif pattern == 4 and spec.low < 0 < spec.high:  # zeros
            out[i, : rng.integers(1, size + 1)] = 0.0
    out = round_to(out, dtype)
    fallback = round_to(spec.bulk(rng, n * size).reshape(n, size), dtype)
    out = np.where(_inside(spec, out) & np.isfinite(out), out, fallback)
    return out.reshape(n, *arg.shape)


def samples(op: Op, *, dtype: str, budget: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``{argument name: array (budget, *shape)}`` of edge-seeking inputs, rounded to dtype."""
    out: dict[str, np.ndarray] = {}
    for i, arg in enumerate(op.args):
        if arg.shape:
            out[arg.name] = _vector_block(arg, dtype, budget, rng)
        else:
            out[arg.name] = _scalar_column(op, arg, dtype, budget, rng, first=(i == 0))
    return out


def readout(shape: tuple[int, ...], *, dtype: str, budget: int,
            rng: np.random.Generator) -> np.ndarray:
    """A random read-out (or direction) per sample: entries ±U(0.5, 1.5), rounded to dtype."""
    size = int(np.prod(shape)) if shape else 1
    v = rng.choice([-1.0, 1.0], budget * size) * rng.uniform(0.5, 1.5, budget * size)
    return round_to(v, dtype).reshape(budget, *shape)
