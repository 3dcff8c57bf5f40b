"""The walk of a large gradient program, with the forward's layers recomputed in the backward.

A gradient program reads its forward's intermediate values in the backward: walked in plain
topological order, every layer's values (GPT-2 at 1024 tokens: three 12 x 1024 x 1024 attention
maps a layer, and the bound keeps a value, E and sigma of each) stay held from the forward
until the backward reaches that layer. ``plan`` walks the program instead as a checkpointed
backward does: the forward is cut where it narrows to one value (a *cut*: no earlier non-leaf
node is read past it by the forward; GPT-2's residual stream after each block), the values of
every forward segment but the last are dropped as soon as the forward has passed them, and a
dropped value the backward reads is computed again, from the cut before it and the leaves,
just before its first reader in the backward, then dropped after its last. Each walk (the
oracle's ``interpret.evaluate``, the bound's ``bound.evaluate_bound``) runs the same steps on
the same operands, so a recomputed value is bitwise the first one (the tables are
deterministic on one thread: ``tests/test_recompute.py``); only how long each is held changes.

Small programs (dropped segments under ``RECOMPUTE_ABOVE`` entries in all) walk as before:
recomputing costs time (a second forward of every dropped layer) to save memory they do not
need. A step that recomputes is marked (``Plan.again``): walks call their per-node callbacks
(the oracle's spot certification, progress) once per node, on its first computation.

>>> import symgrad.tensor as st
>>> x = st.param("x", (4,))
>>> p = plan([st.sum_(x * x)], above=None)
>>> [n.op for n in p.steps], p.again
(['param', 'map', 'sum'], [False, False, False])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .program import Node, topological

RECOMPUTE_ABOVE = 1 << 24  # entries a walk's dropped forward values total at least before it
#                            recomputes them (GPT-2 at 1024 tokens: ~50M a layer; 64 tokens: 2M)


@dataclass(frozen=True)
class Plan:
    """The steps of a walk: ``steps[i]`` is computed at step i (a node may come twice: its
    recomputation has ``again[i]``), and after step i the values of ``frees[i]`` are read by no
    later step (an output among them is final then)."""

    steps: list[Node]
    again: list[bool]
    frees: list[list[Node]]
    walked: int  # distinct nodes (the plain order's length: what progress counts)


_PLANS: dict = {}  # (output ids, above) -> Plan: the oracle, the bound and the enclosure walk
#                    one program once per sample (chunk)


AUTO = -1  # ``plan``'s default: ``RECOMPUTE_ABOVE`` as it is at the call (tests lower it)


def plan(outputs: Iterable[Node], *, above: int | None = AUTO) -> Plan:
    """The walk of ``outputs`` (``outputs[0]`` the loss of a gradient program: its ancestors
    are the forward), recomputing dropped forward segments where they total ``above`` entries
    or more (None: never).

    Arguments:
        outputs: the nodes a walk returns.
        above: the least dropped entries worth recomputing (None: the plain topological walk;
            ``AUTO``: ``RECOMPUTE_ABOVE``).
    Returns:
        The ``Plan``: steps, recomputation marks and the values freed after each step.

    >>> import symgrad.tensor as st
    >>> x = st.param("x", (3,))
    >>> h = st.sum_(st.exp(x))
    >>> len(plan([h], above=None).steps), plan([h], above=None).frees[-1][0] is h
    (3, True)
    """
    outputs = list(outputs)
    above = RECOMPUTE_ABOVE if above == AUTO else above
    key = (tuple(o.id for o in outputs), above)
    got = _PLANS.pop(key, None)
    if got is None:
        order = topological(outputs)
        end = next(i for i, n in enumerate(order) if n is outputs[0]) if outputs else 0
        drop = _droppable(order, end, above) if outputs and above is not None else set()
        drop.difference_update(o.id for o in outputs)  # an output is walked once
        if drop:
            order = order[:end + 1] + _backward_order(order[end + 1:])
        steps, again = (_with_recompute(order, drop, end) if drop
                        else (order, [False] * len(order)))
        got = Plan(steps, again, _frees(steps), len(order))
        while len(_PLANS) >= 8:
            _PLANS.pop(next(iter(_PLANS)))
    if sum(n.size for n in got.steps if n.op == "const") <= 1 << 20:
        _PLANS[key] = got  # kept unless it would keep large constants alive (most recent last)
    return got


def _droppable(order: list[Node], end: int, above: int) -> set[int]:
    """Ids of the forward nodes dropped after the forward and recomputed in the backward: the
    non-leaf nodes of every segment before the kept tail, if the backward reads ``above``
    entries of them or more (else none)."""
    loss = order[end]  # the forward: order[:end + 1], the loss's ancestors
    at = {n.id: i for i, n in enumerate(order)}
    last_fw = {}  # forward node -> the last forward step reading it
    later = set()  # forward nodes the backward reads
    for i, n in enumerate(order):
        for a in n.args:
            if at[a.id] <= end:
                if i <= end:
                    last_fw[a.id] = i
                else:
                    later.add(a.id)
    segments, start, reach = [], 0, -1
    for p in range(end + 1):  # a cut at p: no earlier non-leaf node read by the forward past p
        n = order[p]
        if not n.is_leaf:
            if reach <= p:
                segments.append((start, p + 1))  # order[start:p + 1] ends at the cut order[p]
                start = p + 1
            reach = max(reach, last_fw.get(n.id, p))
    if start <= end:
        segments.append((start, end + 1))
    weight = [sum(order[i].size for i in range(a, b) if order[i].id in later and
                  not order[i].is_leaf) for a, b in segments]
    tail = max((k for k, w in enumerate(weight) if w), default=0)  # where the backward starts
    if sum(weight[:tail]) < above:
        return set()
    return {order[i].id for a, b in segments[:tail] for i in range(a, b - 1)  # cuts kept
            if not order[i].is_leaf and order[i] is not loss}


def _backward_order(back: list[Node]) -> list[Node]:
    """The backward's nodes (``back``, in topological order) as each output's own walk,
    taking the outputs that can be computed earliest first (fewest backward steps before
    them: the head's gradient before the first layer's), each node just before its first
    reader. The plain order walks the outputs as listed: the first layer's gradient reaches
    the whole backward first, with every factor that reads only forward values, of all
    layers, computed on the way and held until the adjoint reaches its layer."""
    inside = {n.id for n in back}
    level: dict[int, int] = {}
    read: set[int] = set()
    for n in back:
        level[n.id] = 1 + max((level[a.id] for a in n.args if a.id in inside), default=-1)
        read.update(a.id for a in n.args)
    sinks = sorted((n for n in back if n.id not in read),
                   key=lambda n: level[n.id])  # stable: ties keep their order
    return topological(sinks, within=inside)


def _with_recompute(order: list[Node], drop: set[int], end: int) -> tuple[list[Node],
                                                                         list[bool]]:
    """``order`` with each dropped node a step after the forward (``order[end]``, the loss)
    reads computed again just before that step (its dropped operands first, recursively;
    each once)."""
    steps, again, made = [], [], set()
    for i, node in enumerate(order):
        if i > end:
            for a in node.args:
                if a.id in drop and a.id not in made:
                    for r in _post_order(a, drop, made):
                        steps.append(r)
                        again.append(True)
        steps.append(node)
        again.append(False)
    return steps, again


def _post_order(root: Node, drop: set[int], made: set[int]) -> list[Node]:
    """The dropped nodes ``root`` needs that are not made yet (``root`` last), operands before
    users, each marked made."""
    return topological([root], within=drop, seen=made)


def _frees(steps: list[Node]) -> list[list[Node]]:
    """After each step, the values no later step reads: each computation of a node lives until
    the last read before the node is computed again (or at once, if nothing reads it)."""
    frees: list[list[Node]] = [[] for _ in steps]
    pending: dict[int, int] = {}  # node id -> the last step reading its next-earlier computation
    for j in range(len(steps) - 1, -1, -1):
        node = steps[j]
        frees[pending.pop(node.id, j)].append(node)
        for a in node.args:
            pending.setdefault(a.id, j)
    return frees
