"""The bound phase of a verify: E of every compared entry (``entry_bounds``), and that phase run
beside the oracle's (``beside_oracle``) where the run has two threads.

Each of the two phases has passes that run on one core between its threaded pieces (the bound's
products and elementwise passes outside its blocks, the oracle's walk between its chunks): run
one after the other on a 2-core machine, the oracle kept 1.68 cores busy and the bound 1.50
(gpt2 at 1024 tokens, reports/benchmark_context.md). Neither reads the other's result, so the
bound runs on its own thread while the oracle runs, and each phase's pieces fill the core the
other's one-core passes leave. The BLAS runs every GEMM of both on one thread meanwhile (its
thread count is one setting for the whole process: fixed, it gives the same bits whichever phase
set it last), and the bound does so on one thread too: the same E on any thread count.

>>> import numpy as np, symgrad.tensor as st
>>> from symgrad.compare import Tolerance
>>> from symgrad.tensor.model import TensorModel
>>> a = st.param("a", (3,))
>>> m = TensorModel("m", st.sum_(a * a))
>>> E = entry_bounds(m, {"a": np.ones((1, 3))}, Tolerance(), 1)
>>> E.shape  # the loss, then the gradient's three entries
(1, 4)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import numpy as np

from .. import heap
from ..compare import tie_band
from ..parallel import Beside
from ..precise.blas_threads import one_thread
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


def beside_oracle(phase: Callable[[], AbstractContextManager], model: TensorModel,
                  values: dict, tol, n: int, *, dtypes=(), threads: int) -> Beside:
    """``entry_bounds`` inside ``phase()`` (the verify's timed phase), on its own thread while
    the ``with`` block (the oracle's phase) runs where ``threads`` >= 2, else in line as the
    block ends; both with the BLAS on one thread (module docstring).

    Arguments:
        phase: makes the bound's phase context (entered on the bound's thread).
        model, values, tol, n, dtypes: as ``entry_bounds``.
        threads: the run's threads (``VerifyConfig.threads``, resolved).
    Returns:
        a ``parallel.Beside``: ``with`` it around the oracle, then ``result()`` is E.

    >>> import symgrad.tensor as st
    >>> from contextlib import nullcontext
    >>> from symgrad.compare import Tolerance
    >>> m = TensorModel("m", st.sum_(st.param("a", (2,)) ** 2))
    >>> with beside_oracle(nullcontext, m, {"a": np.ones((1, 2))}, Tolerance(), 1,
    ...                    threads=2) as later:
    ...     pass
    >>> later.result().shape
    (1, 3)
    """
    def run() -> np.ndarray:
        with phase():
            return entry_bounds(model, values, tol, n, dtypes=dtypes)
    return Beside(run, threads=threads, holding=one_thread())
