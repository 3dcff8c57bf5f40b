"""Node ids of the tensor program: unique in a process, also across nodes unpickled from another
one (a model sent to a Dask worker keeps its ids; nodes made there afterwards come after them).

>>> ids = Ids(); ids(), ids(), ids.past(9), ids()
(0, 1, None, 10)
"""

from __future__ import annotations


class Ids:
    """A counter of node ids that never goes back below an id it has seen."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> int:
        self.next += 1
        return self.next - 1

    def past(self, i: int) -> None:
        self.next = max(self.next, i + 1)


node_ids = Ids()
