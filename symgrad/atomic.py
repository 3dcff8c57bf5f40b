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


def write_section(path: Path, name: str, text: str, *, head: str = "") -> None:
    """Replace one generated section of a page, keeping everything else written there.

    The section is the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``; a page
    without those markers gets the section appended (a page that does not exist: ``head``,
    then the section). Hand-written sections above and below it survive a re-render. Written
    atomically.

    Arguments:
        path: the page (Markdown).
        name: the section's marker name, e.g. "benchmark_tensor".
        text: the section's new text (without the markers).
        head: what a new page starts with (its title), before the section.
    Returns:
        None.

    >>> import tempfile
    >>> page = Path(tempfile.mkdtemp()) / "p.md"
    >>> write_section(page, "table", "| a |")
    >>> _ = page.write_text(page.read_text() + "## Notes\\nkept\\n")
    >>> write_section(page, "table", "| b |")
    >>> print(page.read_text(), end="")
    <!-- begin table -->
    | b |
    <!-- end table -->
    ## Notes
    kept
    >>> import shutil; shutil.rmtree(page.parent)
    """
    path = Path(path)
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.rstrip(chr(10))}\n{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else head
    i, j = old.find(begin), old.find(end)
    if (i < 0) != (j < 0) or j < i or old.count(begin) > 1 or old.count(end) > 1:
        raise SymgradError(f"{path}: the markers {begin!r} and {end!r} are not one pair in "
                           "order; mend the page by hand (each once, begin before end)")
    if i < 0:
        new = old + ("\n" if old and not old.endswith("\n") else "") + block
    else:
        rest = old[j + len(end):]
        new = old[:i] + block + (rest[1:] if rest.startswith("\n") else rest)
    write_text(path, new)


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
