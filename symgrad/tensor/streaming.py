"""The streaming compare of a tensor model (``symgrad.tensor.verify``): the backends as a plan
run one at a time after the oracle and the bound, each compared and summarised before the next
runs, so that at most one backend's gradient is held; each backend's finding lists taken while
its comparison is whole (``findings_of``), before a large one is reduced to its figures
(``symgrad.measures.ResultMeasures.keep_figures``, ``symgrad.compare.Comparison.reduce``).

>>> FINDING_LISTS
('worst', 'kinks', 'failures', 'losses', 'undecided')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..backends import torch as torch_backend
from ..compare import FAILING, INCONCLUSIVE, KINK, LOSS, Comparison
from ..config import VerifyConfig
from ..result import BackendRun, Failure
from .comparing import CHUNK, badness, failures as entry_failures, top
from .model import TensorModel
from .views import numpy_view, torch_view

FINDING_LISTS = ("worst", "kinks", "failures", "losses", "undecided")


@dataclass(frozen=True)
class Backend:
    """One backend of a run, not yet run: ``run()`` returns its gradients, (N, K) with the
    loss value in column 0, and how it ran."""

    name: str
    dtype: str
    run: Callable[[], tuple[np.ndarray, BackendRun]]


def backends(model: TensorModel, values: dict, cfg: VerifyConfig, np_dtype: str, *,
             numpy: bool, torch_fn: Callable | None, extra: dict) -> list[Backend]:
    """The run's backends in the order they are compared and reported: numpy (when
    ``numpy``), torch, torch_fn (when given), each only if ``cfg.backends`` names it (None:
    all), then each ``extra`` one.

    Arguments:
        model: the tensor model.
        values: the drawn samples, block -> (N, *shape).
        cfg: the run's configuration (dtype, device, torch_fn batching).
        np_dtype: the numpy view's dtype.
        numpy: whether the numpy view runs (off above ``NUMPY_VIEW_UP_TO``).
        torch_fn: the per-sample torch function, or None.
        extra: name -> (per-sample torch function, mode label), each run sample by sample.
    Returns:
        One ``Backend`` per backend."""
    n = next(iter(values.values())).shape[0]

    def timed(name: str, dtype: str, device: str, fn: Callable) -> Backend:
        def run() -> tuple[np.ndarray, BackendRun]:
            t0 = time.perf_counter()
            got, mode = fn()
            return got, BackendRun(name, dtype, device, mode, time.perf_counter() - t0, n)
        return Backend(name, dtype, run)
    plan, want = [], cfg.backends or ("numpy", "torch", "torch_fn")  # only those asked for
    if numpy and "numpy" in want:
        plan.append(timed("numpy", np_dtype, "cpu",
                          lambda: (numpy_view(model, values, np_dtype), "vectorised")))
    if "torch" in want:
        plan.append(timed("torch", cfg.dtype, cfg.device, lambda: (
            torch_view(model, values, dtype=cfg.dtype, device=cfg.device), "batched autograd")))
    if torch_fn is not None and "torch_fn" in want:
        plan.append(timed("torch_fn", cfg.dtype, cfg.device, lambda: torch_backend.run_torch_fn(
            torch_fn, model.blocks, values, device=cfg.device, dtype=cfg.dtype,
            batching=cfg.torch_fn_batching)))
    for name, (fn, label) in extra.items():
        def run_extra(fn=fn, label=label):
            got, mode = torch_backend.run_torch_fn(fn, model.blocks, values, device=cfg.device,
                                                   dtype=cfg.dtype, batching="loop")
            return got, f"{label}, {mode}"
        plan.append(timed(name, cfg.dtype, cfg.device, run_extra))
    return plan


def findings_of(name: str, comp: Comparison, outputs, values: dict, subset: np.ndarray,
                max_failures: int, *, worst: np.ndarray | None = None
                ) -> dict[str, list[Failure]]:
    """One backend's finding lists, each worst first, without a full sort: its 3 worst entries
    of any status, up to ``max_failures`` kinks, failures and precision losses, and 3
    inconclusive entries (``worst_entries``: no whole-size badness array, mask or copy).

    Arguments:
        name: the backend.
        comp: its whole comparison (after the block tests and any confirmation).
        outputs: the output names (``symgrad.tensor.model.Outputs``).
        values: the drawn samples, block -> (N, *shape).
        subset: the sample index of each compared row.
        max_failures: how many of each list at most.
        worst: the flat indices of its 3 worst entries when already found (the figures' one
            pass, ``Result.worst_entries``); None: found here.
    Returns:
        ``FINDING_LISTS`` name -> list of ``Failure``."""
    def worst_of(codes, limit):
        return entry_failures(name, comp, worst_entries(comp, codes, limit), outputs, values,
                              subset)
    return {"worst": (worst_of(None, 3) if worst is None else
                      entry_failures(name, comp, worst, outputs, values, subset)),
            "kinks": worst_of((KINK,), max_failures),
            "failures": worst_of(FAILING, max_failures),
            "losses": worst_of((LOSS,), max_failures),
            "undecided": worst_of((INCONCLUSIVE,), 3)}


def worst_entries(comp: Comparison, codes: tuple | None, limit: int) -> np.ndarray:
    """Flat indices of the ``limit`` entries of status ``codes`` (None: any) with the largest
    badness, worst first; the same entries in the same order as ``top(badness(comp), mask,
    limit)`` (over every entry: ties in index order), read ``CHUNK`` entries at a time: each
    chunk's own ``limit`` worst are candidates (an entry among the ``limit`` worst of all is
    among its chunk's), ordered at the end by badness, then index. GPT-2: no 0.65 GB float32
    badness array, no copy of it to partition, no whole-size status masks.

    >>> from symgrad.compare import Tolerance, compare
    >>> exact = np.ones((2, 3))
    >>> got = exact + np.array([[0, 4e-16, 0], [2e-16, 0, 4e-16]])
    >>> c = compare(exact, 0 * exact, got, np.ones_like(exact), backend="b", dtype="float64",
    ...             tol=Tolerance())
    >>> worst_entries(c, None, 3).tolist()
    [1, 5, 3]
    """
    status = np.asarray(comp.status).reshape(-1)
    step = max(CHUNK, limit)
    chunks = range(0, status.size, step)
    if codes is not None:  # the entries of those statuses, then as ``top`` picks among them
        parts = [a + np.flatnonzero(np.isin(status[a:a + step], codes)) for a in chunks]
        where = np.concatenate([np.zeros(0, np.int64), *parts])
        # their badness a chunk's entries at a time: a gather over all of GPT-2's precision
        # losses would touch every page of spilled hi, lo and E at once (``tensor.spill``)
        bad = np.concatenate([np.zeros(0, np.float32),
                              *(badness(comp, w) for w in parts if w.size)])
        if where.size > limit:
            keep = np.argpartition(-bad, limit - 1)[:limit]
            where, bad = where[keep], bad[keep]
        return where[np.argsort(-bad, kind="stable")]
    found, bads = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for a in chunks:
        bad = badness(comp, slice(a, a + step))
        part = top(bad, None, limit)
        found.append(a + part)
        bads.append(bad[part])
    where, bad = np.concatenate(found), np.concatenate(bads)
    return where[np.lexsort((where, -bad))[:limit]]


class Bounds:
    """The entry bounds E of a run's backends, each computed when first asked and dropped once
    no backend still to compare or to confirm needs it: symgrad's own programs use the stable
    program's E; a user's code the larger of it and the textbook program's (computed only when
    the first user backend is compared, after the own ones, so the two are held together only
    while that maximum is formed).

    >>> b = Bounds(np.ones((1, 2)), lambda: np.full((1, 2), 3.0), own=("torch",))
    >>> b.of("torch_fn").tolist(), b.drop(needed=["torch_fn"]), b.own is None
    ([[3.0, 3.0]], None, True)
    """

    def __init__(self, own_bound: np.ndarray, textbook: Callable[[], np.ndarray] | None,
                 own: tuple[str, ...]):
        """``own_bound``: the stable program's E; ``textbook``: computes the textbook
        program's E (None: a user's code gets the stable program's); ``own``: the names of
        symgrad's own backends."""
        self.own: np.ndarray | None = own_bound
        self.user: np.ndarray | None = None if textbook is not None else own_bound
        self._textbook, self._own_names = textbook, own

    def of(self, name: str) -> np.ndarray:
        """E of backend ``name`` (the user's maximum formed on first use)."""
        if name in self._own_names:
            return self.own
        if self.user is None:
            self.user = np.fmax(self.own, self._textbook())
        return self.user

    def drop(self, needed) -> None:
        """Drop the bounds that none of the backends ``needed`` (still to compare, or to
        confirm) will ask for; the stable one stays while a user's maximum is still to form."""
        own = any(n in self._own_names for n in needed)
        user = any(n not in self._own_names for n in needed)
        if not user and self.user is not self.own:
            self.user = None
        if not own and (self.user is not None or not user):
            self.own = None
