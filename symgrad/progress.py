"""Progress on stderr (tqdm): a bar per counted phase, a ticking timer for an uncounted one.

>>> with phase("deriving", enabled=False) as bar:
...     bar.update(1)
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator


class _Off:
    """What ``phase`` yields when progress is off: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


@contextmanager
def phase(desc: str, *, enabled: bool, total: int | None = None,
          unit: str = "it") -> Iterator:
    """A tqdm bar on stderr for one phase; without ``total`` its elapsed time keeps ticking
    (refreshed from a helper thread) so a long step without counts is still visibly alive.

    Arguments:
        desc: what the phase does ("deriving tiny_gpt").
        enabled: show anything at all.
        total: the count to reach, if the phase counts (samples, steps).
        unit: the counted unit.
    Returns:
        (as a context manager) the bar: call ``update(n)``.
    """
    if not enabled:
        yield _Off()
        return
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
               dynamic_ncols=True, bar_format=None if total else "{desc}: {elapsed}")
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        ticker.join()
        bar.close()
