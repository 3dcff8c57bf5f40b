"""Runs beyond one process, on Dask ``distributed`` (the optional ``[cluster]`` extra).

symgrad's expensive parts split into independent tasks: the exact oracle per chunk of samples
(``sg.verify(..., client=...)``) and the op catalogue per operator x dtype (``symgrad ops
--scheduler ADDRESS`` / ``--workers N``). Each task is a pure function of its inputs, keyed by
them, so the scheduler can rerun a task whose worker died and nothing is lost or counted twice;
results come back in submission order and reduce to the very same ``Result`` / ops report as the
in-process run (the same JSON, timings aside).

Why Dask: a scheduler, workers, task retries on worker loss and data transfer exist and are
maintained there; symgrad only says what the tasks are.

>>> from symgrad.cluster import connect
>>> connect(None, None) is None          # no scheduler, no --workers: today's in-process run
True
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Callable, Iterator, Sequence

from .errors import SymgradError

CONNECT_TIMEOUT_S = 5  # a scheduler that does not answer within this is an error, not a hang


def _distributed():
    try:
        import distributed
    except ImportError:
        raise SymgradError("--scheduler/--workers (Dask) need the optional extra: "
                           "pip install 'symgrad[cluster]' (the `distributed` package)") from None
    return distributed


def connect(scheduler: str | None, workers: int | None):
    """A Dask client: to the scheduler at ``scheduler`` ("tcp://host:port" or "host:port"), or
    to a new ``LocalCluster`` of ``workers`` single-threaded processes; None when neither is
    given (the in-process run).

    Arguments:
        scheduler: the address of a running ``dask scheduler``.
        workers: start a local cluster with this many worker processes instead.
    Returns:
        A ``distributed.Client`` (close it with ``client.close()``, or use ``session``), or None.
    """
    if scheduler is None and workers is None:
        return None
    if scheduler is not None and workers is not None:
        raise SymgradError("give either --scheduler ADDRESS (a running cluster) or --workers N "
                           "(a local one), not both")
    distributed = _distributed()
    if workers is not None:
        if not isinstance(workers, int) or workers < 1:
            raise SymgradError(f"--workers must be a positive integer, got {workers!r}")
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        return distributed.Client(cluster)
    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    try:  # a malformed address is the user's typo: say so before connecting, in one line
        distributed.comm.get_address_host_port(address)
    except ValueError as exc:
        raise SymgradError(f"--scheduler {scheduler}: not a Dask scheduler address ({exc}); "
                           "give tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786") from None
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise SymgradError(f"--scheduler {scheduler}: no Dask scheduler answered within "
                           f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__}); start one with "
                           "`dask scheduler`, or run without --scheduler") from None


@contextlib.contextmanager
def session(scheduler: str | None, workers: int | None) -> Iterator:
    """``connect`` as a context: the client (and a local cluster) close on exit."""
    client = connect(scheduler, workers)
    try:
        yield client
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


def map_ordered(client, fn: Callable, items: Sequence, *, key: str,
                shared=None) -> Iterator:
    """``fn(item, shared)`` for each item, yielded in the order of ``items``: in-process one by
    one as they finish, or as tasks on ``client``'s workers.

    ``shared`` (a model, a config) is sent to every worker once and handed to each task as the
    same object there, so per-worker caches on it (a derived model) are reused across tasks.
    Task keys are ``key``, a per-call token and the item's index: a task lost with its worker is
    rerun under the same key (up to 2 retries beyond Dask's own reassignment) and its result
    counted once.
    """
    if client is None:
        for item in items:
            yield fn(item, shared)
        return
    data = client.scatter(shared, broadcast=True, hash=False) if shared is not None else None
    run = uuid.uuid4().hex[:8]  # one call's keys: unique per call, fixed for its retries
    futures = [client.submit(fn, item, data, key=f"{key}-{run}-{i}", pure=False, retries=2)
               for i, item in enumerate(items)]
    try:
        for f in futures:
            yield f.result()
    finally:
        for f in futures:
            f.release()
