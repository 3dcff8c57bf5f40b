"""What both rules of the tensor bound (``symgrad.tensor.bound``: the worst case E and the
probabilistic sigma) read of a node's operands, formed once per node: |x| of each operand,
their squares, the contraction, sum or scatter of the |x|, and the contractions with one
operand's |x| replaced by its E or sigma (``Operands.term``); and an in-place sum of the
terms a rule adds up.

A two-operand contraction against a large operand (GPT-2's logits and their gradient against
the 50257 x 768 token matrix) forms its terms that share that operand - the |A||B| product,
E_A |B| and, beyond n0 terms, sigma_A |B| - as one einsum of the stacked A-side arrays (a
GEMM with 2-3x the rows): |B| is read, and transposed for BLAS, once instead of once per term.
Each row of a GEMM is the same dot products whatever the rows beside it (OpenBLAS's kernels
sum each entry in the same order; E bit-identical to the terms formed one by one in the
checked runs, ``reports/benchmarks.md``).

>>> total = plus(0.0, np.ones(2))  # a scalar start: a new array
>>> plus(total, np.ones(2)) is total  # then in place
True
"""

from __future__ import annotations

import bisect
import string
import threading
from contextlib import nullcontext
from typing import Callable, Iterable

import numpy as np

from ..parallel import each
from ..precise import blas_threads
from ..precise.blas_threads import one_thread
from . import device_gemm
from .device_gemm import np_einsum
from .einpieces import in_pieces
from .fused import live
from .interpret import RULES as VALUE_RULES
from .program import Node
from .quadrature import root_or_linear
from .tables import NumpyOps

class OneSampleOps(NumpyOps):
    """The bound's float64 numpy table (``NumpyOps``) whose einsum drops the walk's batch axis
    where every operand has one sample: numpy's einsum sums a size-1 axis away with a copy of
    each operand (``c_einsum("boi->io")``: GPT-2's 50257 x 768 token matrix, 309 MB, copied
    transposed per product; a 64-token weight gradient 7x the CPU of its GEMM), while the
    same einsum without it takes views into the same matmul: the same bits (checked: E sha1).

    >>> t = OneSampleOps()
    >>> a, b = np.ones((1, 2, 3)), np.ones((1, 4, 3))
    >>> t.einsum("zai,zoi->zao", a, b).shape, t.einsum("zai,zoi->zao", a[[0, 0]], b).shape
    ((1, 2, 4), (2, 2, 4))
    """

    def __init__(self) -> None:
        super().__init__("float64")

    def einsum(self, spec, *ops):
        got = device_gemm.einsum(spec, *ops)  # a large product on the run's device, if any
        if got is not None:
            return got
        ins, out = spec.split("->")
        subs = ins.split(",")
        if (len(ops) > 1 and out and all(s[:1] == out[0] for s in subs)
                and all(np.shape(o)[0] == 1 for o in ops)):
            inner = ",".join(s[1:] for s in subs) + "->" + out[1:]
            ops = [o[0] for o in ops]
            got = in_pieces(inner, ops, super().einsum)
            return (super().einsum(inner, *ops) if got is None else got)[None]
        got = in_pieces(spec, ops, super().einsum)
        return super().einsum(spec, *ops) if got is None else got


_T = OneSampleOps()
STACK_FROM = 1 << 20  # entries of the shared operand from which a GEMM's terms are stacked
ROWS_FROM = 1 << 23  # output entries from which a GEMM's E and sigma are formed in row blocks
ROW_BLOCK = 1 << 20  # output entries of one such block (8 MiB a block temporary)


class Operands(list):
    """A node's operand values (a list, as every rule reads them) that forms what both the
    worst-case and the probabilistic rule read at most once per node: |x| of each operand,
    their squares, and the contraction (or sum, or scatter) of the |x| (GPT-2's logits and
    their gradient: the |A||B| GEMM once, not once per rule).

    >>> import symgrad.tensor as st
    >>> a = st.param("a", (2,))
    >>> ops = Operands(st.sum_(a), [np.array([[1.0, -2.0]])])
    >>> ops.magnitudes[0].tolist(), ops.once("k", lambda: 3) + ops.once("k", lambda: 4)
    ([[1.0, 2.0]], 6)
    """

    def __init__(self, node: Node, values: Iterable[np.ndarray], *,
                 errors: list | None = None, sigmas: list | None = None, long: bool = False,
                 shared: dict | None = None, n0: int = 1024):
        """``errors``, ``sigmas``: each operand's E and sigma (None: not known, no stacking);
        ``long``: whether the probabilistic rule asks for sigma_i |x_j| terms (beyond n0);
        ``shared``: |x| and |x|^2 of leaf operands across the nodes of one walk, by (what,
        leaf node id) (GPT-2's 50257 x 768 token matrix is read by the logits and by their
        gradient: its |x| and square formed once); ``n0``: the probabilistic rule's sqrt_terms."""
        super().__init__(values)
        self.n0 = n0
        self.node = node
        self._errors, self._sigmas, self._long = errors, sigmas, long
        self._memo: dict = {}
        self._shared = shared

    def once(self, key, make: Callable):
        """``make()`` the first time ``key`` is asked for on this node, the same object after."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def magnitudes(self) -> list[np.ndarray]:
        """|x| of each operand."""
        return self.once("abs", lambda: [self._leaf("abs", j, lambda v=v: np.abs(v))
                                         for j, v in enumerate(self)])

    @property
    def squares(self) -> list[np.ndarray]:
        """|x|^2 of each operand."""
        return self.once("squares", lambda: [self._leaf("squares", j, lambda v=v: v * v)
                                             for j, v in enumerate(self.magnitudes)])

    def _leaf(self, what: str, j: int, make: Callable) -> np.ndarray:
        """``make()`` of operand j, shared by the walk's nodes where it is a leaf."""
        arg = self.node.args[j]
        if self._shared is None or arg.op not in ("param", "input", "const"):
            return make()
        key = (what, arg.id)
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    @property
    def errors(self) -> list | None:
        """E of each operand (None: not given)."""
        return self._errors

    @property
    def sigmas(self) -> list | None:
        """sigma of each operand (None: the worst case only)."""
        return self._sigmas

    def in_rows(self) -> tuple[str, int] | None:
        """(output letter, rows per block) where the node's E and sigma are formed in blocks of
        that output axis (``symgrad.tensor.bound``'s ``_rows_pair``): a two-operand einsum of
        at least ``ROWS_FROM`` output entries whose terms are not stacked and that adds no
        sqrt(n0)-linear terms (GPT-2's head-weight gradient, 50257 x 768; the logits at 1024
        tokens). None: formed whole."""
        def make():
            if self.node.op != "einsum" or len(self) != 2 or self._errors is None or self._long:
                return None
            n = max(np.shape(v)[0] for v in self)
            size = int(np.prod(self.node.shape, dtype=np.int64))
            out = self.node.attrs["spec"].split("->")[1]
            if (n * size < ROWS_FROM or not out or self.node.shape[0] < 2
                    or self._stack()[0] is not None):
                return None
            return out[0], max(1, ROW_BLOCK // max(1, n * size // self.node.shape[0]))
        return self.once("in_rows", make)

    def rows_of(self, arrays: list, letter: str, rows: slice) -> list:
        """Each operand array cut to ``rows`` of the output axis ``letter`` where it has it."""
        subs = self.node.attrs["spec"].split("->")[0].split(",")
        out = []
        for sub, a in zip(subs, arrays):
            if letter in sub and np.ndim(a) == len(sub) + 1 and np.shape(a)[1 + sub.index(
                    letter)] > 1:
                idx = [slice(None)] * np.ndim(a)
                idx[1 + sub.index(letter)] = rows
                a = a[tuple(idx)]
            out.append(a)
        return out

    def rows_pair(self, value, rounds: int, grow) -> tuple:
        """E and sigma of a large two-operand einsum (``in_rows``), formed together in blocks
        of one output axis: each block's |A||B|, E terms and sigma terms are the same GEMM rows
        and the same elementwise sums in the same order as the bound's whole-array rules (a
        GEMM's row is the same dot product whatever the rows beside it: E bit-identical in
        the checked runs, reports/benchmarks.md), but the seven output-sized temporaries
        (|A||B|, E, two E terms, sigma, two quadratures: GPT-2's head-weight gradient, 309 MB
        each, each page-faulted afresh) become E, sigma and block-sized ones. ``rounds``: the
        roundings per output (m - 1 + k - 1), ``grow`` their sigma weight; sigma is None in
        the worst case."""
        def make():
            letter, rows = self.in_rows()
            shape, sig = np.shape(value), self._sigmas
            axis = 1 + self.node.attrs["spec"].split("->")[1].index(letter)
            E, S = np.empty(shape), (np.empty(shape) if sig is not None else None)
            live_e = [i for i, e in enumerate(self._errors) if live(e)]
            live_s = [i for i, s in enumerate(sig) if live(s)] if sig is not None else []
            gemm = (self._einsum if blas_threads.current() == 1 else self._one_gemm)  # each
            #  block's GEMMs on one BLAS thread side by side, or one at a time on the BLAS's own
            mags, squares = self.magnitudes, (self.squares if live_s else None)  # formed once

            def block(r0: int) -> None:  # the blocks on ``symgrad.parallel``'s threads
                cut = slice(r0, r0 + rows)
                at = (slice(None),) * axis + (cut,)
                m = self.rows_of(mags, letter, cut)
                C = gemm(m)
                total = times(C, rounds) if rounds else 0.0
                for i in live_e:
                    e = self.rows_of(self._errors, letter, cut)[i]
                    total = plus(total, gemm(m[:i] + [e] + m[i + 1:]))
                E[at] = total
                if S is not None:
                    total = times(C, grow) if rounds else 0.0
                    for i in live_s:
                        q, s = (self.rows_of(x, letter, cut) for x in (squares, sig))
                        quad = root_or_linear(
                            gemm(q[:i] + [s[i] * s[i]] + q[i + 1:]),
                            lambda i=i, s=s: gemm(m[:i] + [s[i]] + m[i + 1:]))
                        total = plus(total, quad)
                    S[at] = total
            each(block, range(0, shape[axis], rows))
            return E, S
        return self.once("rows", make)

    def _einsum(self, ops: list) -> np.ndarray:
        return VALUE_RULES["einsum"](self.node, _T, ops, None)

    def _one_gemm(self, ops: list) -> np.ndarray:
        """``_einsum`` while no other thread runs one (``rows_pair``'s blocks on several
        threads, where the BLAS has several: a large K is cut by its thread count, so the GEMM
        keeps them to keep its bits), the blocks' elementwise sums beside it."""
        with _GEMM:
            return self._einsum(ops)

    def contraction(self) -> np.ndarray:
        """The node's einsum of |x_1| .. |x_k|."""
        return self.term(None, "abs")

    def term(self, i: int | None, which: str) -> np.ndarray:
        """The node's einsum of |x_1| .. |x_k| with |x_i| replaced by x_i's E (``which`` =
        "error") or sigma ("sigma"); ``i`` None: none replaced (the contraction). Formed
        with the terms stacked beside it, if any (module docstring)."""
        key = (i, which)
        if key in self._memo:
            return self._memo[key]
        slot, keys = self._stack()
        if key in keys:
            arrays = [self._operand(slot if j is None else j, w) for j, w in keys]
            self._memo.update(zip(keys, _stacked(self.node, self.magnitudes, slot, arrays)))
            return self._memo[key]
        mags = self.magnitudes
        ops = mags if i is None else mags[:i] + [self._operand(i, which)] + mags[i + 1:]
        got = VALUE_RULES["einsum"](self.node, _T, ops, None)
        if i is None:  # both rules read the contraction; a replaced term is read once
            self._memo[key] = got
        return got

    def _operand(self, j: int, which: str) -> np.ndarray:
        return {"abs": self.magnitudes, "error": self._errors, "sigma": self._sigmas}[which][j]

    def _stack(self) -> tuple[int | None, list]:
        """The slot whose terms are formed as one stacked einsum, and their keys: a GEMM's
        operand i, when the other is large (``STACK_FROM`` entries) and no smaller than the
        output, and both have >= 2 free entries (a GEMM, not a GEMV, either way)."""
        def make():
            if (self.node.op != "einsum" or len(self) != 2 or self._errors is None):
                return None, []
            n = max(np.shape(v)[0] for v in self)
            out = n * int(np.prod(self.node.shape, dtype=np.int64))
            for i in (0, 1):
                other = self[1 - i]
                keys = [(None, "abs")]
                if live(self._errors[i]):
                    keys.append((i, "error"))
                if self._long and self._sigmas is not None and live(self._sigmas[i]):
                    keys.append((i, "sigma"))
                if (len(keys) > 1 and np.size(other) >= max(STACK_FROM, out)
                        and _free(self.node, i) >= 2 and _free(self.node, 1 - i) >= 2):
                    return i, keys
            return None, []
        return self.once("stack", make)


SHARE_WITHIN = 48  # walk steps within which a leaf's next reader shares its |x| and |x|^2


class SharedLeaves(dict):
    """|x| and |x|^2 of leaf operands (``Operands``' ``shared``) kept for the walk's next node
    that reads the leaf within ``SHARE_WITHIN`` steps, dropped after a node whose leaf's next
    reader is further on (or none): GPT-2's head matrix is read by the logits and, 32 steps
    on, by their gradient (its |x| and square formed once), while a layer's weights are read
    by its forward and, hundreds of steps on, its backward: kept between, every layer's |W|
    and W^2 were held at once (12 layers: 1.4 GB, each page faulted in fresh), re-formed
    they take the heap's freed blocks again. The same bits either way."""

    def __init__(self, steps: list):
        super().__init__()
        self._readers: dict = {}
        for i, node in enumerate(steps):
            for a in node.args:
                if a.op in ("param", "input", "const"):
                    self._readers.setdefault(a.id, []).append(i)

    def after(self, i: int, node: Node) -> None:
        """Drop the shares of step ``i``'s (``node``'s) leaves read next beyond the window."""
        for a in node.args:
            at = self._readers.get(a.id)
            k = bisect.bisect_right(at, i) if at else 0
            if at and (k == len(at) or at[k] - i > SHARE_WITHIN):
                self.pop(("abs", a.id), None)
                self.pop(("squares", a.id), None)


_GEMM = threading.Lock()  # one ``rows_pair`` GEMM at a time (``Operands._one_gemm``)
THREADS_FROM = 1 << 23  # entries from which a GEMM of > THREAD_K terms keeps its BLAS threads;
#   others run on one: numpy's OpenBLAS on 2 threads spun for each GPT-2 per-layer GEMM (768 x
#   768 weight gradient: 14.7 -> 1.5 CPU ms, load 20). Threads split rows and columns and cut K
#   alike where it is a multiple of OpenBLAS's K block (GPT-2's 64, 768, 3072: E bit-identical);
#   the head's K = 50257 is cut otherwise on one thread (E 1-4 ulp off): large ones keep them.
THREAD_K = 256  # at most one K block of OpenBLAS's x86 GEMM kernels


def gemm_threads(node: Node, n: int, terms: Callable[[Node], int]):
    """The BLAS threads of a node's GEMMs (the bound's walk enters it per node): one below
    THREADS_FROM entries or at most THREAD_K terms per output (``terms(node)``), else as is.

    Arguments:
        node: the node; n: the batch; terms: a contraction's terms per output.
    Returns:
        a context manager."""
    big = max([int(np.prod(a.shape, dtype=np.int64)) for a in node.args]
              + [int(np.prod(node.shape, dtype=np.int64))]) * n
    return one_thread() if node.op == "einsum" and (
        big < THREADS_FROM or terms(node) <= THREAD_K) else nullcontext()


def _free(node: Node, i: int) -> int:
    """Entries of operand i per batch that are neither contracted nor shared (GEMM's M or N)."""
    ins, out = node.attrs["spec"].split("->")
    subs = ins.split(",")
    others = set("".join(s for j, s in enumerate(subs) if j != i))
    return int(np.prod([n for c, n in zip(subs[i], node.args[i].shape)
                        if c in out and c not in others], dtype=np.int64))


def _stacked(node: Node, mags: list, slot: int, arrays: list) -> list[np.ndarray]:
    """The node's einsum of ``mags`` with operand ``slot`` replaced by each of ``arrays``,
    as one einsum over a new leading stack axis (each result a view of the stacked one)."""
    spec = node.attrs["spec"]
    b, z = [c for c in string.ascii_letters if c not in spec][:2]
    ins, out = spec.split("->")
    subs = [(z if j == slot else "") + b + sub for j, sub in enumerate(ins.split(","))]
    n = max(max(np.shape(v)[0] for v in mags), max(np.shape(a)[0] for a in arrays))

    def full(v):
        return v if v.shape[0] == n else np.broadcast_to(v, (n,) + v.shape[1:])
    ops = [np.stack([full(a) for a in arrays]) if j == slot else full(v)
           for j, v in enumerate(mags)]
    if n == 1:  # one sample: without the batch axis (``OneSampleOps``: no operand copies)
        subs = [u.replace(b, "") for u in subs]
        ops = [o[:, 0] if j == slot else o[0] for j, o in enumerate(ops)]
        spec = ",".join(subs) + "->" + z + out
        got = device_gemm.einsum(spec, *ops)  # on the run's device; else in columns on the
        got = in_pieces(spec, ops, _plain) if got is None else got  # pool where the BLAS
        got = _plain(spec, *ops) if got is None else got  # has one thread
        return [t[None] for t in got]
    return list(np_einsum(",".join(subs) + "->" + z + b + out, *ops, optimize=True))


def _plain(spec: str, *ops) -> np.ndarray:
    return np.einsum(spec, *ops, optimize=True)


def times(contraction: np.ndarray, factor) -> np.ndarray:
    """contraction * factor, in ``factor``'s array (a rule's own) where it has the shape."""
    if (isinstance(factor, np.ndarray) and factor.dtype == np.float64 and factor.flags.writeable
            and factor.shape == np.broadcast_shapes(np.shape(contraction), factor.shape)):
        return np.multiply(contraction, factor, out=factor)
    return contraction * factor


def plus(total, term: np.ndarray):
    """total + term, in place once ``total`` is an array this rule made (not a scalar 0)."""
    if isinstance(total, np.ndarray) and total.shape == np.broadcast_shapes(total.shape,
                                                                             term.shape):
        return np.add(total, term, out=total)
    return total + term
