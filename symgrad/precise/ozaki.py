"""Error-free-split matrix products of double-double arrays on float64 BLAS (Ozaki's scheme).

Each DD operand is cut into float64 *slices*: slice s of a row of A is an integer of at most tau
bits on the grid 2**(e - (s+1) tau), e fixed per row (per column of B), so the products A_s B_t
with the same level s + t share one grid. A level's products, summed over a K-block, are a sum
of at most S K integers below 2**(2 tau) each, <= 2**53: one float64 GEMM of the slices
concatenated along K computes the whole level exactly, whatever its summation order or FMA use.
With S slices per operand (0-based; R^X_j the residual after j slices, rounded to float64):

    A B = sum_{l < S} [A_0 .. A_l] @ [B_l; ..; B_0]      S exact GEMMs (one per level), in DD
        + [A_0 .. A_{S-1} R^A_S] @ [R^B_S; ..; R^B_1; B]   1 float64 GEMM, terms <= 2**(-S tau)

tau = floor((53 - log2(S K_block))/2): 20 for K-blocks of 1024 and S = 3, 22 for K = 64 (the
weight gradients of a 64-token GPT). S = 3 gives 4 GEMMs per tile (the same FLOPs as 10
separate ones, but 3 DD accumulations instead of 6) and an error below ~(S+1) K u 2**(-S tau)
rowmax_i(|A|) colmax_j(|B|) ~ 1e-31 rowmax*colmax per entry for K = 1024, ~1e-32 relative to
(|A||B|)_ij on matrices whose rows (columns) do not span many orders of magnitude. Before
slicing, column k of A and row k of B are rescaled by 2**±d_k (exact) so their maxima meet:
this brings rowmax*colmax near |A||B| for matrices whose scales differ along K.

Tiling: K in blocks of `k_block`, M and N in blocks of at most `tile_elems` entries per slice;
within a tile, rows of A and columns of B are sliced, and the output summed in sub-tiles of up
to 256 rows, about `chunk_elems` entries at a time, so each elementwise pass runs in cache and
each GEMM is one sub-tile's, on one BLAS thread (``OzakiConfig.one_thread_below``); the row
(column) chunks and the sub-tiles are independent, so they run on ``symgrad.parallel``'s threads
(each thread its own buffers; the same chunks and sub-tiles on any count: the same bits). Slicing is
per row (column) and the level products are exact, so the chunking changes the result only through
the one rounded GEMM, whose terms are below 2**(-S tau) of the entry's scale: no bit where the BLAS
sums each entry's dot product in one order whatever the operands' shapes (OpenBLAS's AVX2 kernels),
a few last bits of lo where it does not (its AVX-512 kernels: ~1e-33 of (|A||B|)_ij, far inside
the error above; ``tests/test_ozaki_chunks.py`` checks both).

FastTwoSum: s = RN(a + b), e = b - RN(s - a) gives s + e = a + b exactly not only where
|a| >= |b| but wherever a is a multiple of ulp(b) (then a + b is a multiple of ulp(b) below
2 |b|, so s differs from it by a multiple of ulp(b) at most ulp(b), and s - a = b + (s - a - b)
is a float); the pair is then TwoSum's (both exact, s the same). So the DD sums here take 3
operations where TwoSum's take 6, with the same bits: a level sum p_l is a multiple of its grid
g_l = 2**(e_i + f_j - (l+2) tau) and the running sum of the smaller levels stays below
(S+1) K 2**tau g_l < 2**53 g_l, so p_l is a multiple of its ulp (``_tile``); a slice's residual
rh - q is a multiple of ulp(rh) (q is on a grid of at least ulp(rh)) and so of ulp(rl) for the
last TwoSum's error rl (``ozaki_kernels.cut``, every slice after the first). The slicing and
the level sums run as compiled kernels (``ozaki_kernels``: each entry in one pass, numpy's bits).

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> a = DD(np.array([[[1.0, 2.0**-60]]])); b = DD(np.array([[[3.0], [5.0]]]))
    >>> c = dd_matmul(a, b)
    >>> float(c.hi[0, 0, 0]), float(c.lo[0, 0, 0]) == 5 * 2.0**-60
    (3.0, True)
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from math import prod
from typing import Callable, Iterator

import numpy as np

from ..parallel import each
from .blas_threads import one_thread
from .dd import DD
from .ozaki_kernels import cut, level_sums


@dataclass(frozen=True)
class OzakiConfig:
    slices: int = 3  # S: S exact level GEMMs + 1 rounded; 4 -> ~2**-20 smaller error, +1 GEMM
    k_block: int = 1024  # contraction block; tau = floor((53 - ceil(log2(S k_block))) / 2) = 20
    tile_elems: int = 1 << 22  # max entries of one operand tile (each slice of it is 32 MiB)
    equilibrate: bool = True  # rescale A's columns / B's rows by powers of two so their maxima meet
    chunk_elems: int = 1 << 16  # entries sliced, and of an output sub-tile summed, at once
    #  (512 KiB a float64 buffer: a sub-tile's S + 1 GEMM outputs stay in cache for their sum)
    one_thread_below: int = 1 << 62  # products of fewer multiply-adds (all S+1 GEMMs) run on
    #  one BLAS thread (``blas_threads``): every product by default. Each GEMM is one output
    #  sub-tile (<= 256 rows, ~chunk_elems entries), and OpenBLAS's threads on GEMMs that small
    #  spin on a loaded machine: 256^3 took 16 ms of CPU on 2 threads, 0.5 ms on one (load 13).
    #  One thread also fixes the bits: the rounded GEMM of a 50257-row tile summed differently
    #  on 2 threads (40 of 77M lo entries), never on one.


def _tau(k: int, slices: int) -> int:
    """Bits per slice: a level's GEMM sums up to `slices` products of K tau-bit integers."""
    return (53 - max(1, int(np.ceil(np.log2(max(k * slices, 2)))))) // 2


class _Work:
    """Reused buffers for one product (fresh 30 MB arrays per tile cost more in page faults than
    the arithmetic on a loaded machine). get() returns a (Bt, X, Y) view whose K axis is contiguous."""

    def __init__(self) -> None:
        self.bufs: dict[str, np.ndarray] = {}
        self.views: dict[tuple, np.ndarray] = {}  # (key, shape, k_axis) -> its view (tiles
        #  of one shape ask for the same views many times: building them was ~5% of a run)

    def trim(self, entries: int) -> None:
        """Drop the buffers (and their views) of more than ``entries`` entries."""
        big = {k for k, v in self.bufs.items() if v.size > entries}
        if big:
            self.bufs = {k: v for k, v in self.bufs.items() if k not in big}
            self.views = {k: v for k, v in self.views.items() if k[0] not in big}

    def get(self, key: str, shape: tuple, k_axis: int) -> np.ndarray:
        got = self.views.get((key, shape, k_axis))
        if got is not None:
            return got
        n = prod(shape)
        flat = self.bufs.get(key)
        if flat is None or flat.size < n:
            flat = np.empty(n)
            self.bufs[key] = flat
            self.views = {k: v for k, v in self.views.items() if k[0] != key}  # old buffer
        v = flat[:n]
        if k_axis == 2:
            v = v.reshape(shape)
        else:
            bt, k, cols = shape
            v = v.reshape(bt, cols, k).swapaxes(1, 2)
        self.views[(key, shape, k_axis)] = v
        return v


_KEPT = threading.local()  # .pools: the open ``kept_buffers`` blocks of this thread (a stack)


KEPT_UP_TO = 10 << 20  # entries (80 MiB of float64): a larger buffer is not kept past its
#                        product (GPT-2's head tiles, 100-134 MB, asked for by 3 products)


@contextlib.contextmanager
def kept_buffers() -> Iterator[None]:
    """The products this thread computes inside the block share one set of work buffers (the
    sliced operand tiles, each grown to the largest asked for up to ``KEPT_UP_TO`` entries,
    and every thread's chunk buffers) instead of fresh ones per product; they are freed when
    the block ends. Outside it each product allocates its own, as before. Why: a GPT-2
    layer's sliced weight tiles are 14-75 MB each, past glibc's largest mmap threshold (32
    MB), so every product mapped them afresh and the kernel faulted every page in again (8
    such products a layer). No buffer's contents reach a result before the product writes
    them, so the bits are the same.

    >>> import numpy as np
    >>> a = DD(np.array([[[1.0, 2.0**-60]]])); b = DD(np.array([[[3.0], [5.0]]]))
    >>> with kept_buffers():
    ...     c, d = dd_matmul(a, b), dd_matmul(a, b)
    >>> bool(c.hi == d.hi) and bool(c.lo == d.lo)
    True
    """
    pools = _KEPT.__dict__.setdefault("pools", [])
    pools.append({})
    try:
        yield
    finally:
        pools.pop()


def _equilibration(a: DD, b: DD) -> np.ndarray | None:
    """Exponent shifts d_k: column k of A times 2**d_k, row k of B times 2**-d_k (None: no shift)."""
    ma = _absmax(a.hi, (0, 1))  # per k
    mb = _absmax(b.hi, (0, 2))
    ok = (ma > 0) & (mb > 0) & np.isfinite(ma) & np.isfinite(mb)
    _, ea = np.frexp(np.where(ok, ma, 1.0))
    _, eb = np.frexp(np.where(ok, mb, 1.0))
    d = np.where(ok, (eb - ea) // 2, 0)
    return d if d.any() else None


def _absmax(x: np.ndarray, axis: tuple) -> np.ndarray:
    """max |x| over ``axis`` (finite x) as max(max x, -min x): no |x| copy of a large operand."""
    return np.maximum(np.max(x, axis=axis), -np.min(x, axis=axis))


def _tile(A, Bx, Br, S: int, kk: int, work: _Work, dest: DD, accumulate: bool) -> None:
    """The DD product of one output sub-tile (see module docstring), written into ``dest`` (a
    view of the result; ``accumulate``: added to what it holds, a later K-block).

    A = [A_0 | ... | A_{S-1} | R^A_S] along K; Bx = [B_{S-1}; ...; B_0];
    Br = [R^B_S; ...; R^B_1; B]. Level l (exact): A[:, :(l+1)K] @ Bx[(S-1-l)K:] = sum_{s+t=l} A_s B_t.
    Rounded: A @ Br = sum_s A_s R^B_{S-s} + R^A_S B. The S + 1 GEMMs, then their DD sum in one
    pass per entry (``ozaki_kernels.level_sums``: per level FastTwoSum(p, hi), exact - the same
    pair as TwoSum(hi, p) - as p, an exact level sum, lies on a grid of at least ulp(hi) (module
    docstring, "FastTwoSum"); lo += e, then FastTwoSum(hi, lo)).
    """
    shape = (A.shape[0], A.shape[1], Bx.shape[2])
    hi = work.get("chi", shape, 2)
    p = work.get("cp", (S,) + shape, 2)
    np.matmul(A, Br, out=hi)
    for level in range(S - 1, -1, -1):
        np.matmul(A[:, :, :(level + 1) * kk], Bx[:, (S - 1 - level) * kk:, :], out=p[level])
    level_sums(hi, p, dest.hi, dest.lo, accumulate)


def nonfinite(a: DD, b: DD, product: Callable[[DD, DD], DD]) -> DD | None:
    """The product of operands with non-finite entries: IEEE semantics of the leading parts
    (inf*0 = nan as in numpy) where that is not finite, elsewhere ``product`` of the operands
    with those entries zeroed; None where every entry is finite (``dd_matmul_torch`` too)."""
    if np.isfinite(a.hi).all() and np.isfinite(b.hi).all():
        return None
    with np.errstate(all="ignore"):
        bad = np.matmul(a.hi, b.hi)
    fin = np.isfinite(bad)
    good = product(*(DD(np.nan_to_num(x.hi, nan=0.0, posinf=0.0, neginf=0.0),
                        np.where(np.isfinite(x.hi), x.lo, 0.0)) for x in (a, b)))
    return DD(np.where(fin, good.hi, bad), np.where(fin, good.lo, 0.0))


def _sub_tiles(bt: int, mt: int, nt: int, chunk: int):
    """(rows, columns) slices of a (bt, mt, nt) output tile into sub-tiles of about ``chunk``
    entries: up to 256 rows (a fat GEMM) and as many columns as fit (at least 16)."""
    r = max(1, min(mt, 256))
    c = max(1, min(nt, max(16, chunk // max(1, bt * r))))
    for r0 in range(0, mt, r):
        for c0 in range(0, nt, c):
            yield slice(r0, min(mt, r0 + r)), slice(c0, min(nt, c0 + c))


def dd_matmul(a: DD, b: DD, cfg: OzakiConfig = OzakiConfig()) -> DD:
    """Batched product (Bt, M, K) @ (Bt, K, N) of DD arrays, error as in the module docstring.

    Arguments:
        a, b: DD arrays of shapes (Bt, M, K) and (Bt, K, N) (finite entries).
        cfg: slicing and tiling options.
    Returns:
        the DD array (Bt, M, N).
    """
    bt, m, k = a.shape
    n = b.shape[2]
    if k == 0 or m == 0 or n == 0:
        return DD(np.zeros((bt, m, n)), np.zeros((bt, m, n)))
    if (got := nonfinite(a, b, lambda a, b: dd_matmul(a, b, cfg))) is not None:
        return got
    out = DD(np.empty((bt, m, n)), np.empty((bt, m, n)))  # every entry written by the first
    #  K-block's sub-tiles (no zeroing pass where the heap hands back used memory)
    d = _equilibration(a, b) if cfg.equilibrate else None
    S = cfg.slices
    kb = min(k, cfg.k_block)
    tau = _tau(kb, S)
    mb = max(1, min(m, cfg.tile_elems // max(1, bt * kb)))
    nb = max(1, min(n, cfg.tile_elems // max(1, bt * kb)))
    small = bt * m * n * k * (S + 1) < cfg.one_thread_below
    with one_thread() if small else contextlib.nullcontext():
        _products(a, b, out, d, S, kb, tau, mb, nb, cfg.chunk_elems)
    return out


def _products(a: DD, b: DD, out: DD, d, S: int, kb: int, tau: int, mb: int, nb: int,
              chunk: int) -> None:
    """The tiles of ``dd_matmul`` (K blocks of ``kb``, M / N blocks of ``mb`` / ``nb``) into
    ``out``: each operand tile sliced in chunks of whole rows (of A) or columns (of B), each
    output tile formed in sub-tiles (``_sub_tiles``), all of about ``chunk`` entries. Rows and
    columns are sliced and products summed independently of each other, so the chunking
    changes at most the rounded GEMM's last bits (the level products are exact; the rounded one
    is the same dot product per entry, summed in one order where the BLAS kernel is
    shape-stable: the module docstring)."""
    bt, m, k = a.shape
    n = b.shape[2]
    pools = getattr(_KEPT, "pools", None)
    pool = pools[-1] if pools else {}  # inside ``kept_buffers``: the block's, kept
    work = pool.setdefault("shared", _Work())  # the tiles' sliced operands (Acat, Bx, Br),
    #                                            shared by the threads
    works: dict[int, _Work] = pool.setdefault("threads", {})  # each thread's own buffers: a
    #                                                          chunk's slicing, a sub-tile's

    def mine() -> _Work:
        return works.setdefault(threading.get_ident(), _Work())
    every = slice(None)
    for k0 in range(0, k, kb):
        ks = slice(k0, min(k, k0 + kb))
        kk = ks.stop - ks.start
        dk = None if d is None else d[ks]
        step = max(1, chunk // max(1, bt * kk))  # rows of A / columns of B sliced at once
        for m0 in range(0, m, mb):
            ms = slice(m0, min(m, m0 + mb))
            mt = ms.stop - ms.start
            A = work.get("Acat", (bt, mt, (S + 1) * kk), 2)

            def slice_rows(r0: int) -> None:
                rows = slice(m0 + r0, m0 + min(mt, r0 + step))
                At = A[:, r0:min(mt, r0 + step)]
                cut(a.hi[every, rows, ks], None if a.lo_is_zero_view else a.lo[every, rows, ks],
                    dk, S, tau, At, [j * kk for j in range(S)], At, [-1] * (S - 1) + [S * kk], -1)
            each(slice_rows, range(0, mt, step))
            for n0 in range(0, n, nb):
                ns = slice(n0, min(n, n0 + nb))
                nt = ns.stop - ns.start
                Bx = work.get("Bx", (bt, S * kk, nt), 1)
                Br = work.get("Br", (bt, (S + 1) * kk, nt), 1)

                def slice_columns(c0: int) -> None:
                    cs = slice(c0, min(nt, c0 + step))
                    cols = slice(n0 + cs.start, n0 + cs.stop)
                    back = [(S - 1 - j) * kk for j in range(S)]  # slice j in block S - 1 - j
                    cut(b.hi[every, ks, cols].swapaxes(1, 2),
                        None if b.lo_is_zero_view else b.lo[every, ks, cols].swapaxes(1, 2),
                        None if dk is None else -dk, S, tau, Bx.swapaxes(1, 2)[:, cs], back,
                        Br.swapaxes(1, 2)[:, cs], back, S * kk)

                def sub_tile(rc: tuple) -> None:
                    rs, cs = rc
                    dest = DD(out.hi[:, m0 + rs.start:m0 + rs.stop, n0 + cs.start:n0 + cs.stop],
                              out.lo[:, m0 + rs.start:m0 + rs.stop, n0 + cs.start:n0 + cs.stop])
                    _tile(A[:, rs], Bx[:, :, cs], Br[:, :, cs], S, kk, mine(), dest, bool(k0))
                each(slice_columns, range(0, nt, step))
                each(sub_tile, _sub_tiles(bt, mt, nt, chunk))
    work.trim(KEPT_UP_TO)  # (a product's own, unkept work goes with it anyway)
