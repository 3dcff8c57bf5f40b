"""A large model's whole-model arrays (the oracle's hi and lo, the bound E) kept in unlinked
temporary files instead of the heap, and their pages dropped from this process's resident set
between the chunks that read or write them.

Why: at GPT-2 (163,009,536 entries) hi, lo and E are 2.43 GiB (8 + 4 + 4 bytes an entry) held
from the oracle's walk to the last backend's summary, while each pass over them (the walks'
blocks, the compare's 1M-entry chunks, the block tests' column chunks, the deferred figures)
reads or writes only one chunk at a time. In a file mapping (``MAP_SHARED``) a page dropped with
``madvise(MADV_DONTNEED)`` keeps its data - a dirty page goes to the file's page cache, which
the kernel writes back and may evict under pressure - and the next read of it faults the same
bits back in. So between chunks (``release``) the process holds only the pages of the chunk at
hand; the rest is on disk or in reclaimable cache, not in this process's resident set. The
values read back are the values written: results are bit-identical to the heap's.

The files live in ``tempfile.gettempdir()`` (``TMPDIR``), are unlinked as soon as they are
mapped (nothing is left behind, even after a crash) and freed when the last array over them
is. A ``TMPDIR`` on tmpfs holds them in memory (shared memory): point it at a disk.

>>> small = empty((2, 3), np.float32)
>>> spilled(small), small.dtype.name
(False, 'float32')
>>> big = empty((1, 8), np.float64, spill_from=1)
>>> big[:] = 2.5
>>> release() >= 1
True
>>> spilled(big), float(big.sum())
(True, 20.0)
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref

import numpy as np

from ..config import LARGE_MODEL_ENTRIES
from ..errors import SymgradError

# entries of a whole-model array from which it lives in a file mapping: a large model's
# (``config.LARGE_MODEL_ENTRIES``)
SPILL_FROM = LARGE_MODEL_ENTRIES
# samples x (1 + parameters) of one run: hi, lo and E here (16 B an entry), the samples' values in
# memory (8 B); GPT-2 medium (406M parameters) fits 2 samples (4e8 before the spill: none)
MAX_ENTRIES = 1_000_000_000


def check_entries(name: str, samples: int, parameters: int) -> None:
    """Refuse a run of more than ``MAX_ENTRIES`` whole-model entries, in one line that says what
    to do: fewer samples, or, where one sample is past it, a smaller config.

    Arguments:
        name: the model's name; samples: the run's samples; parameters: the model's parameters.
    Returns:
        None (raises ``SymgradError`` past the limit).

    >>> check_entries("m", 2, 10)
    >>> try:
    ...     check_entries("big", 1, 2_000_000_000)
    ... except SymgradError as e:
    ...     print(str(e).split("; ")[-1])
    verify a smaller config (--config, e.g. '{"n_layers": 2}')
    """
    per = 1 + parameters
    if samples * per <= MAX_ENTRIES:
        return
    fit = MAX_ENTRIES // per
    fix = (f"use --samples {fit} or fewer" if fit else
           "verify a smaller config (--config, e.g. '{\"n_layers\": 2}')")
    raise SymgradError(f"model {name!r}: {samples} sample{'s' * (samples != 1)} x {per} entries "
                       f"(the loss and its gradient) is too much to compare in one run (limit "
                       f"{MAX_ENTRIES:.0e} entries); {fix}")
#                          (the size from which E and lo are float32: ``tensor.upward``)
_LIVE: "weakref.WeakSet[mmap.mmap]" = weakref.WeakSet()  # the mappings ``release`` drops


def empty(shape: tuple[int, ...], dtype=np.float64, *, spill_from: int | None = None
          ) -> np.ndarray:
    """An uninitialised array, as ``np.empty``; from ``spill_from`` entries (default
    ``SPILL_FROM``) backed by an unlinked temporary file whose pages ``release`` drops.

    Arguments:
        shape: the array's shape.
        dtype: its dtype.
        spill_from: the entry count from which it is a file mapping (None: ``SPILL_FROM``).
    Returns:
        A plain ``np.ndarray`` (its base a ``mmap.mmap`` when spilled), C-contiguous.

    >>> empty((3,), spill_from=1).flags.c_contiguous
    True
    """
    size = int(np.prod(shape, dtype=np.int64))
    limit = SPILL_FROM if spill_from is None else spill_from
    if size == 0 or size < limit or not hasattr(mmap, "MADV_DONTNEED"):
        return np.empty(shape, dtype)  # (no madvise, e.g. Windows: nothing to release)
    nbytes = size * np.dtype(dtype).itemsize
    where = tempfile.gettempdir()
    try:
        fd, path = tempfile.mkstemp(prefix="symgrad-spill-", dir=where)
    except OSError as exc:
        raise SymgradError(f"cannot spill a {shape} {np.dtype(dtype).name} array to the "
                           f"temporary directory {where!r} ({exc.strerror}): set TMPDIR to a "
                           f"writable directory on a disk") from None
    try:
        os.unlink(path)  # the mapping keeps the file; its blocks go when the mapping does
        _reserve(fd, nbytes, where)
        m = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    _LIVE.add(m)
    return np.frombuffer(m, dtype=dtype).reshape(shape)


def _reserve(fd: int, nbytes: int, where: str) -> None:
    """Give the file its ``nbytes`` on disk now: a write into a mapping of a file the disk
    cannot hold is a SIGBUS that kills the process; a full disk is one clear error here."""
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, nbytes)
        else:  # sparse: a page is allocated where it is first written
            os.ftruncate(fd, nbytes)
    except OSError as exc:
        raise SymgradError(f"cannot spill {nbytes / 2**30:.2f} GiB to the temporary directory "
                           f"{where!r} ({exc.strerror}): free disk space there or set TMPDIR "
                           f"to a disk with room") from None


def spilled(a: np.ndarray) -> bool:
    """Whether ``a`` (or the array it is a view of) lives in a file mapping made by ``empty``.

    >>> spilled(np.zeros(3)), spilled(empty((4,), spill_from=1)[1:])
    (False, True)
    """
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base  # np.frombuffer's buffer
    return isinstance(base, mmap.mmap) and base in _LIVE


def release() -> int:
    """Drop every live spilled array's pages from this process's resident set (their data
    stays in the file; the next read brings it back). Cheap where few pages are resident:
    called between chunks.

    Returns:
        How many mappings were released.

    >>> release() >= 0
    True
    """
    done = 0
    for m in list(_LIVE):
        try:
            m.madvise(mmap.MADV_DONTNEED)
            done += 1
        except (ValueError, OSError):  # closed meanwhile: nothing resident
            pass
    return done


SET_ASIDE_FROM = 1 << 20  # entries: a smaller array is not worth a file of its own


def set_aside(arrays: dict, *, spill_from: int = SET_ASIDE_FROM) -> None:
    """Each array of ``arrays`` (a dict, changed in place) of at least ``spill_from`` entries
    copied into a spilled file mapping (``empty``) and its pages released: the same values,
    out of the resident set until they are read again. For a large model's samples while the
    pipeline runs a second time on a fresh one (``tensor.confirm_big``: GPT-2's 1 GiB).

    >>> d = {"w": np.arange(4.0), "n": 3}
    >>> set_aside(d, spill_from=1)
    >>> spilled(d["w"]), d["w"].tolist(), d["n"]
    (True, [0.0, 1.0, 2.0, 3.0], 3)
    """
    for k, v in arrays.items():
        if isinstance(v, np.ndarray) and v.size >= spill_from and not spilled(v):
            kept = empty(v.shape, v.dtype, spill_from=1)
            kept[...] = v
            arrays[k] = kept
    release()
