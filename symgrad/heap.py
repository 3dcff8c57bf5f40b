"""This process's heap kept for reuse: glibc's malloc settings, for a process's owner only.

numpy takes every array from ``malloc``. glibc serves a large request (above its mmap
threshold: 128 KiB at first, raised by each freed mapping up to 32 MiB) with a fresh ``mmap``,
and gives the top of its heap back to the system once more than twice that is free; either
way the next array of that size faults its pages in again, each zeroed by the kernel. The
bound's walk at 1024 tokens frees and allocates arrays of 8-100 MB (GPT-2's 12 x 1024 x 1024
attention maps, a map's 32 MiB blocks) thousands of times, so a third to a half of its CPU time
was system time (reports/benchmark_context.md). ``keep_freed`` raises both limits: arrays up
to ``mmap_below`` come from the heap and freed ones stay there for the next.

It changes the whole process's allocator for good (glibc has no way back to its dynamic
threshold), so symgrad's library calls never make it; the ``symgrad`` program does, for its
own process (``symgrad.cli.main`` reading ``sys.argv``; not a ``main([...])`` call from
Python), and the benchmark scripts do. A user's own settings win: with
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` in the
environment, or ``SYMGRAD_HEAP=system``, nothing is changed. A library user gets the same for
a script by those variables, e.g. ``MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=1073741824 python run.py``. Memory handed back explicitly
(``give_back`` at a phase's end) is handed back as before.

>>> keep_freed(environ={"SYMGRAD_HEAP": "system"})
False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Callable, Mapping

MMAP_BELOW = 1 << 30  # bytes: larger requests are mapped apart, smaller ones (GPT-2's 412 MB
#                       logits at 1024 tokens too: 256 MiB left them mapped, 27 s more system
#                       time and 0.25 GiB more peak at 1 layer) come from the heap
TRIM_ABOVE = 1 << 30  # bytes of free heap top kept before glibc trims it by itself
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_LIBC = ctypes.util.find_library("c")
_KEPT = [False]  # whether keep_freed made its settings in this process


def keep_freed(*, mmap_below: int = MMAP_BELOW, trim_above: int = TRIM_ABOVE,
               environ: Mapping[str, str] | None = None) -> bool:
    """Keep freed arrays in the heap for the next ones (glibc ``mallopt``: M_MMAP_THRESHOLD
    ``mmap_below``, M_TRIM_THRESHOLD ``trim_above``), unless the environment sets the
    allocator (module docstring). For a process's owner: it lasts for the process.

    Arguments:
        mmap_below: requests of at least this many bytes are still mapped apart.
        trim_above: free bytes at the heap's top before glibc hands them back by itself.
        environ: the environment read (default ``os.environ``).
    Returns:
        Whether the settings were made (False: the user's settings, or not glibc).

    >>> keep_freed(environ={"MALLOC_TRIM_THRESHOLD_": "0"})
    False
    """
    env = os.environ if environ is None else environ
    if env.get("SYMGRAD_HEAP", "") == "system" or any(k in env for k in _USER_SETTINGS):
        return False
    if not _LIBC:
        return False
    try:
        libc = ctypes.CDLL(_LIBC)
        _KEPT[0] = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_below))
                        and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_above))) or _KEPT[0]
    except (OSError, AttributeError):  # not glibc
        return False
    return _KEPT[0]


def give_back() -> bool:
    """Hand the heap memory freed so far back to the system (glibc's ``malloc_trim``; elsewhere
    nothing; changes no setting): arrays below glibc's mmap threshold (GPT-2's per-layer
    blocks, 2-19 MB) are freed into the heap and stay resident there, so a run that frees
    many of them holds their total until the heap is trimmed (gpt2 at 64 tokens: 0.8 GiB
    after torch's run at main 3c29157; the bound's walk 0.4 GiB higher untrimmed).

    Returns:
        Whether memory was handed back (False where there is no ``malloc_trim``).

    >>> give_back() in (True, False)
    True
    """
    try:
        return bool(ctypes.CDLL(_LIBC).malloc_trim(0)) if _LIBC else False
    except (OSError, AttributeError):  # not glibc
        return False


def kept() -> bool:
    """Whether this process keeps freed memory for reuse (``keep_freed`` made its settings):
    then a walk does not hand its freed blocks back between its outputs, only at its phase's
    end (``tensor.verify.entry_bounds``).

    >>> kept() in (True, False)
    True
    """
    return _KEPT[0]


def unless_kept(hand_back: Callable[[], bool]) -> bool:
    """``hand_back()`` (a trim of the heap: ``give_back``) unless this
    process keeps freed memory for reuse: a walk's trim between its outputs, which would fault
    the next output's arrays in again (a phase's end trims either way).

    Arguments:
        hand_back: the trim.
    Returns:
        What ``hand_back`` returned; False where it was not called.

    >>> unless_kept(lambda: True) == (not kept())
    True
    """
    return False if kept() else hand_back()
