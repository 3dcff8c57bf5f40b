"""Atomic file writes: a crash or Ctrl-C never leaves a half-written report."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import SymgradError


def write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_set(out: Path, files: dict) -> list[Path]:
    """Write a set of files into ``out`` all together, or not at all.

    Every file is first written and fsynced in a sibling staging folder (``.<out>.staging-*``);
    then each is renamed into ``out`` with Ctrl-C held back, so an interrupted or failing run
    leaves the previous set untouched and never a mix of two runs. Other files in ``out`` stay.

    Arguments:
        out: the destination folder (created if missing).
        files: file name -> text or bytes.
    Returns:
        The paths written, in ``files`` order.
    """
    import shutil

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError as exc:
        raise _unwritable(out, exc) from None
    try:
        for name, data in files.items():
            write_bytes(stage / name, data.encode("utf-8") if isinstance(data, str) else data)
        with _deferred_interrupt():
            for name in files:
                os.replace(stage / name, out / name)
    except OSError as exc:
        raise _unwritable(out, exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [out / name for name in files]


def _unwritable(out: Path, exc: OSError):
    return SymgradError(f"--out {str(out)!r}: cannot write the report there "
                        f"({exc.strerror or exc}); choose a writable folder, e.g. --out reports")


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) for the few renames that publish a set; re-raise after."""
    import signal
    import threading
    caught, old = [], None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
        if caught:
            raise KeyboardInterrupt
