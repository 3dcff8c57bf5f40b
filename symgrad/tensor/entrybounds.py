"""The rounding-error bound E of every compared entry of a tensor model (``entry_bounds``): the
bound's walk (``symgrad.tensor.bound``) written block by block into one (N, K) array, limits at
inputs exactly 0 added (``symgrad.tensor.limits``); the tensor pipeline's bound phase
(``symgrad.tensor.verify``) and its fresh samples' (``symgrad.confirm``) call it.
"""

from __future__ import annotations

import numpy as np

from .. import heap
from ..compare import tie_band
from . import spill
from .bound import evaluate_bound
from .limits import limit_bounds
from .model import TensorModel
from .upward import bound_kind, store_away
from .views import block_spans


def entry_bounds(model: TensorModel, values: dict, tol, n: int, *, dtypes=()) -> np.ndarray:
    """The rounding-error bound E of every compared entry (loss, then gradient), shape (n, K).

    Arguments:
        model: the tensor model (or its ``textbook_program``: same blocks, same entries).
        values: the compared samples per block, each of leading size ``n``.
        tol: the ``Tolerance`` (worst case, or probabilistic: ``Tolerance.entry_bound``).
        n: the number of samples; dtypes: the compared dtypes (a tie band: ``tie_band``).
    Returns:
        E per sample and entry, each block written as the walk finishes it, limits at inputs
        0 (``limits.limit_bounds``); from 50M entries float32 away from 0 (``upward``), spilled."""
    kind = bound_kind(n * (1 + model.n_parameters))  # the limits' rows too: one rounding

    def bound(v: dict) -> np.ndarray:
        m = len(next(iter(v.values())))
        E, spans = spill.empty((m, 1 + model.n_parameters), kind), block_spans(model, m)

        def put(k: int, e: np.ndarray) -> None:
            a, size, shape = spans[k]
            store_away(E[:, a:a + size], np.broadcast_to(np.asarray(e), shape).reshape(m, -1))
            heap.unless_kept(heap.give_back)  # freed blocks (gpt2 at 64 tokens: its peak -0.4 GiB)
        evaluate_bound(model.gradient.outputs, v, mode=tol.entry_bound, sigmas=tol.entry_sigmas,
                       sqrt_terms=tol.entry_sqrt_terms, emit=put, tie=tie_band(dtypes, tol))
        return E
    return limit_bounds(bound, model, values)
