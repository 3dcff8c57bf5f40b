"""The exact side of fresh samples (``symgrad.confirm``'s experiment b) for a tensor model, with
the kinks they reach: the same sided oracle and kink sides as the run's own samples.

Without it the fresh samples' oracle takes sympy's convention at a kink (H(0) = 1/2) and the
comparison knows no sides: a fresh sample that lands on a kink (a Choice / integer value into
relu, abs, max) is a mismatch of its own, and its error enters the confirmation's block
projection. ``fresh_oracle`` returns what ``rejudge`` needs to judge those rows as the run does,
with a row in the double-double's underflow zone evaluated in balls up to the run's own cap
(``views.zone_bits(cfg)``, as the run's rows are).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..compare import Comparison, Tolerance
from ..config import VerifyConfig
from .kinks import has_sites, oracle_program, reached
from .model import TensorModel
from .sides import kink_sides, rejudge
from .views import oracle_view, zone_bits


def fresh_oracle(model: TensorModel, values: Mapping[str, np.ndarray], table,
                 dtypes: Iterable[str], *, cfg: VerifyConfig
                 ) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """The oracle's rows at fresh samples, each kink at the side the samples reach.

    Arguments:
        model: the tensor model.
        values: the fresh samples, block name -> (M, *shape).
        table: the oracle's array table.
        dtypes: the compared backends' dtypes (how far rounding can carry an argument).
        cfg: the run's config: its tolerance, and the bits of the balls a row in the
            double-double's underflow zone is evaluated in (``views.zone_bits(cfg)``: the
            run's own rows' first and largest precision); an entry they leave uncertified is
            NaN, as in the run.
    Returns:
        (hi, lo, kinks): the exact rows (M, K) as a double-double, and ``kink_sides``'s
        (sides, uncertain, why) when a sample reaches a kink (else None).

    >>> import sympy as sp, symgrad.tensor as st
    >>> from symgrad.tensor.views import oracle_ops
    >>> w, x = st.param("w", ()), st.input("x", ())
    >>> m = TensorModel("t", st.map_(sp.tanh(st.X[0] * st.X[1]), w, x))
    >>> v = {"w": np.array([0.5]), "x": np.array([2.0])}
    >>> hi, lo, kinks = fresh_oracle(m, v, oracle_ops(50), ["float64"], cfg=VerifyConfig())
    >>> float(hi[0, 0]) == float(np.tanh(1.0)), kinks
    (True, None)
    """
    keys = program = None
    if has_sites(model):
        keys = reached(model, values, table, sorted(set(dtypes)), cfg.tolerance)
        program = oracle_program(model, keys)
    hi, lo = oracle_view(model, values, table, program=program, zone_bits=zone_bits(cfg))
    kinks = None
    if keys is not None and keys.any():
        kinks = kink_sides(model, values, keys, table, hi, lo)
    return hi, lo, kinks


def judge_fresh(comp: Comparison, kinks: tuple | None, hi: np.ndarray, lo: np.ndarray,
                got: np.ndarray, E: np.ndarray, tol: Tolerance) -> Comparison:
    """``comp`` (``compare_compact`` on fresh samples) with the rows on a kink judged by their
    sides (``rejudge``), as the run's own rows are; unchanged without kinks."""
    return comp if kinks is None else rejudge(comp, kinks, hi, lo, got, E, tol)
