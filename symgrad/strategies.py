"""Hypothesis strategies (hypothesis is imported lazily): samples that respect each block's
domain and deliberately hit edge classes.

Each scalar entry is drawn from one of small, validated pieces: the domain itself; exactly 0 and
values just beside it (where ReLU/Max/Abs/Heaviside kinks sit); tiny magnitudes; and, for
unbounded domains, large magnitudes (saturation of sigmoid/tanh/softplus at +-20...+-100).

>>> import sympy as sp, symgrad as sg
>>> from symgrad.strategies import inputs
>>> w = sp.Symbol("w")
>>> s = inputs(sg.Model("m", w**2, params=[w]))
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .domains import Bernoulli, Choice, Domain, Integers, LogUniform, Normal, Uniform
from .model import Model


def _scalar(domain: Domain):
    from hypothesis import strategies as st

    if isinstance(domain, Choice):
        return st.sampled_from(domain.values)
    if isinstance(domain, Integers):
        return st.integers(int(domain.low), int(domain.high)).map(float)
    if isinstance(domain, Bernoulli):
        return st.sampled_from([0.0, 1.0])
    if isinstance(domain, Uniform):
        lo, hi = float(domain.low), float(domain.high)
        edges = [v for v in (0.0, 1e-12, -1e-12, lo, np.nextafter(hi, lo)) if lo <= v < hi]
        return st.one_of(st.floats(lo, hi, exclude_max=True), st.sampled_from(edges))
    if isinstance(domain, LogUniform):
        return st.floats(float(domain.low), float(domain.high), exclude_max=True)
    if isinstance(domain, Normal):
        m, s = float(domain.mean), float(domain.std)
        return st.one_of(
            st.floats(m - 4 * s, m + 4 * s),  # the bulk
            st.sampled_from([0.0, 1e-12, -1e-12, 5e-324]),  # kinks and beside them
            st.floats(-1e-8, 1e-8),  # tiny magnitudes
            st.floats(20.0, 100.0).flatmap(lambda v: st.sampled_from([v, -v])),  # saturation
        )
    raise TypeError(f"no strategy for domain {domain!r}")


def inputs(model: Model, *, samples: int = 1):
    """A strategy of ``{block name: array (samples, *shape)}`` for ``sg.verify(at=...)``."""
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    parts = {b.name: arrays(np.float64, (samples, *b.shape), elements=_scalar(b.domain))
             for b in model.blocks}
    return st.fixed_dictionaries(parts)


# the fuzzing vocabulary (symgrad.fuzz): name -> builder of a sympy expression
UNARY = {"exp": sp.exp, "log": sp.log, "tanh": sp.tanh, "sin": sp.sin, "cos": sp.cos,
         "sqrt": sp.sqrt, "erf": sp.erf, "Abs": sp.Abs,
         "sigmoid": lambda e: 1 / (1 + sp.exp(-e)), "relu": lambda e: sp.Max(e, 0),
         "square": lambda e: e**2}
BINARY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "/": lambda a, b: a / b, "Max": sp.Max}

