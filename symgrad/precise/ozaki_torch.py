"""The oracle's double-double products (Ozaki's scheme, ``symgrad.precise.ozaki``) as torch
float64 GEMMs on a device (``cuda``; ``cpu`` runs the same code, which is how the tests see it).

The scheme is ``ozaki``'s, step for step: the same equilibration shifts 2**±d_k, the same tau,
K-blocks, per-row (per-column) exponents, slices, residuals and level order, and the same DD
accumulation. Every step but one is exact or a correctly rounded IEEE operation on the same
operands (frexp, add, subtract, a multiplication by a power of two), so it gives the numpy
path's bits on any device; each level's GEMM is a sum of integers on one grid below 2**53, exact
in any summation order, with or without FMA, on any BLAS (numpy's OpenBLAS, torch's MKL,
cuBLAS). The one exception is the scheme's one rounded GEMM (the residual terms, <= 2**(-S tau)
of an entry's scale): another BLAS sums its dot products in another order, so lo may differ in
its last bits: measured <= 2**-107 of (|A||B|)_ij on random operands (the 2**-100 that
``tests/test_ozaki_chunks.py`` allows numpy's own sub-tiles) and <= 2**-109 of rowmax_i |A|
colmax_j |B| on rows spanning 2**+-300, far inside the scheme's own error (~1e-31 of the latter).
``rounded=`` takes that GEMM from elsewhere: given numpy's, in numpy's sub-tiles, the result is
the numpy path's bits (``tests/test_ozaki_torch.py``).

Tiles: the operands move to the device one (M or N) x K-block tile at a time (at most
``OzakiConfig.tile_elems`` entries of an operand, and of an output block), each level is one
GEMM over the whole output block (a GPU wants fat GEMMs; numpy's cache-sized sub-tiles are a
CPU's concern), and an output tile's K-blocks are summed on the device before it moves back. Non-finite operands: the IEEE product of the leading parts, as the numpy path.

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> a = DD(np.array([[[1.0, 2.0**-60]]])); b = DD(np.array([[[3.0], [5.0]]]))
    >>> c = dd_matmul_torch(a, b, device="cpu")
    >>> float(c.hi[0, 0, 0]), float(c.lo[0, 0, 0]) == 5 * 2.0**-60
    (3.0, True)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .dd import DD, quick_two_sum, two_sum
from .ozaki import OzakiConfig, _equilibration, _tau, nonfinite

Rounded = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pow2(e: torch.Tensor) -> torch.Tensor:
    """2.0**e exactly, built from its bits (no ``pow``, whose accuracy a device may not
    promise): normal for e in [-1022, 1023], subnormal down to -1074, 0 below, inf above."""
    e = e.to(torch.int64).clamp(-1075, 1024)
    normal = ((e + 1023).clamp(0, 2047) << 52).view(torch.float64)
    sub = (torch.ones_like(e) << (e + 1074).clamp(0, 62)).view(torch.float64)
    out = torch.where(e >= -1022, normal, sub)
    return torch.where(e < -1074, torch.zeros_like(out), out)


def ldexp(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """x * 2**e rounded once, as ``np.ldexp``, for |e| up to ~2000: the factors are applied so
    that every product but the last is exact (a growing one first; a shrinking one last)."""
    e = e.to(torch.int64)
    last = e.clamp(-1022, 1023)  # the one rounding step: a normal power of two, applied last
    first = e - last  # 0 unless e is past a normal power: e > 1023 grows x exactly first (or
    #  overflows: inf either way); e < -1022 shrinks it first, exactly where the result is not 0
    if not bool((first != 0).any()):
        return x * pow2(last)
    return x * pow2(first) * pow2(last)


def _absmax(x: torch.Tensor, dim) -> torch.Tensor:
    return torch.maximum(torch.amax(x, dim=dim), -torch.amin(x, dim=dim))


def _slices(hi: torch.Tensor, lo: torch.Tensor | None, dim: int, n: int,
            tau: int) -> tuple[list, list]:
    """``ozaki._slices``: the n slices of hi + lo along ``dim`` and the residual after each
    (rounded to float64), the same operations in the same order."""
    m = _absmax(hi, dim).unsqueeze(dim)
    _, e = torch.frexp(m)
    e = e.to(torch.int64)
    rh, rl = hi, lo
    qs, rs = [], []
    half = torch.tensor(0.75, dtype=torch.float64, device=hi.device)
    for i in range(n):
        sigma = ldexp(half, e - i * tau + 53 - tau)
        q = (rh + sigma) - sigma
        r = rh - q  # exact
        if rl is None:
            rh = r
        else:  # (rh, rl) = TwoSum(r, rl), after the first slice FastTwoSum (exact there, the
            #  same pair: ``ozaki``'s docstring, "FastTwoSum"); the residual rounded: rh + rl
            rh, rl = two_sum(r, rl) if i == 0 else quick_two_sum(r, rl)
            r = rh + rl
        qs.append(q)
        rs.append(r)
    return qs, rs


def dd_add(a: tuple, b: tuple) -> tuple:
    """``dd.add`` on torch tensors (its TwoSums and FastTwoSums, which are operators only;
    IEEE leading sum where not finite)."""
    (ah, al), (bh, bl) = a, b
    s1, s2 = two_sum(ah, bh)
    plain = s1
    t1, t2 = two_sum(al, bl)
    s1, s2 = quick_two_sum(s1, s2 + t1)
    s1, s2 = quick_two_sum(s1, s2 + t2)
    fin = torch.isfinite(plain) & torch.isfinite(s1)
    return torch.where(fin, s1, plain), torch.where(fin, s2, torch.zeros_like(s2))


def _torch_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.matmul(a, b)


def dd_matmul_torch(a: DD, b: DD, cfg: OzakiConfig = OzakiConfig(), *, device: str = "cpu",
                    rounded: Rounded | None = None) -> DD:
    """Batched product (Bt, M, K) @ (Bt, K, N) of DD arrays on torch's ``device``, with the
    error of ``ozaki.dd_matmul`` (and its bits but the rounded GEMM's: module docstring).

    Arguments:
        a, b: DD arrays (numpy) of shapes (Bt, M, K) and (Bt, K, N).
        cfg: the scheme's options (slices, k_block, tile_elems, equilibrate) as numpy's.
        device: a torch device with float64 ("cuda", "cuda:1", "cpu").
        rounded: the one rounded GEMM, (A, Br) -> A @ Br (default torch's on ``device``).
    Returns:
        the DD array (Bt, M, N), numpy.
    """
    bt, m, k = a.shape
    n = b.shape[2]
    out = DD(np.zeros((bt, m, n)), np.zeros((bt, m, n)))
    if k == 0 or m == 0 or n == 0:
        return out
    if (got := nonfinite(a, b, lambda a, b: dd_matmul_torch(a, b, cfg, device=device,
                                                            rounded=rounded))) is not None:
        return got
    dev = torch.device(device)
    d = _equilibration(a, b) if cfg.equilibrate else None  # numpy's shifts, moved
    d = None if d is None else torch.from_numpy(d).to(dev)
    S = cfg.slices
    kb = min(k, cfg.k_block)
    tau = _tau(kb, S)
    mb = max(1, min(m, cfg.tile_elems // max(1, bt * kb)))
    nb = max(1, min(n, cfg.tile_elems // max(1, bt * kb)))
    gemm = rounded or _torch_gemm
    for m0 in range(0, m, mb):  # each output tile's K-blocks summed on the device, in the
        ms = slice(m0, min(m, m0 + mb))  # numpy path's order (ascending K): the same DD sums
        cols = max(1, cfg.tile_elems // max(1, bt * (ms.stop - m0)))  # output block columns
        for n0 in range(0, n, nb):
            ns = slice(n0, min(n, n0 + nb))
            acc: dict[int, tuple] = {}
            for k0 in range(0, k, kb):
                ks = slice(k0, min(k, k0 + kb))
                dk = None if d is None else d[ks]
                A = _a_tile(a, ms, ks, dk, S, tau, dev)
                Bx, Br = _b_tile(b, ks, ns, dk, S, tau, dev)
                for c0 in range(0, ns.stop - n0, cols):
                    cs = slice(c0, min(ns.stop - n0, c0 + cols))
                    got = _levels(A, Bx[:, :, cs], Br[:, :, cs], S, ks.stop - k0, gemm)
                    acc[c0] = dd_add(acc[c0], got) if k0 else got
                del A, Bx, Br
            for c0, (hi, lo) in acc.items():
                oc = slice(n0 + c0, n0 + c0 + hi.shape[2])
                out.hi[:, ms, oc] = hi.cpu().numpy()
                out.lo[:, ms, oc] = lo.cpu().numpy()
    return out


def _on(x: np.ndarray, dev: torch.device) -> torch.Tensor:
    a = np.ascontiguousarray(x, dtype=np.float64)
    return torch.from_numpy(a if a.flags.writeable else a.copy()).to(dev)  # torch owns it


def _a_tile(a: DD, ms: slice, ks: slice, dk, S: int, tau: int, dev) -> torch.Tensor:
    """[A_0 | .. | A_{S-1} | R^A_S] of A's rows ``ms``, K-block ``ks``, along K."""
    hi = _on(a.hi[:, ms, ks], dev)
    lo = None if a.lo_is_zero_view else _on(a.lo[:, ms, ks], dev)
    if dk is not None:
        hi = ldexp(hi, dk.view(1, 1, -1))
        lo = None if lo is None else ldexp(lo, dk.view(1, 1, -1))
    qs, rs = _slices(hi, lo, 2, S, tau)
    return torch.cat(qs + [rs[-1]], dim=2)


def _b_tile(b: DD, ks: slice, ns: slice, dk, S: int, tau: int, dev) -> tuple:
    """Bx = [B_{S-1}; ..; B_0] and Br = [R^B_S; ..; R^B_1; B] of B's columns ``ns``."""
    hi = _on(b.hi[:, ks, ns], dev)
    lo = None if b.lo_is_zero_view else _on(b.lo[:, ks, ns], dev)
    if dk is not None:
        hi = ldexp(hi, -dk.view(1, -1, 1))
        lo = None if lo is None else ldexp(lo, -dk.view(1, -1, 1))
    qs, rs = _slices(hi, lo, 1, S, tau)
    return torch.cat(qs[::-1], dim=1), torch.cat(rs[::-1] + [hi], dim=1)


def _levels(A: torch.Tensor, Bx: torch.Tensor, Br: torch.Tensor, S: int, kk: int,
            gemm: Rounded) -> tuple:
    """``ozaki._tile`` on one output block: the rounded GEMM, then the S exact levels,
    smallest first, each added in DD."""
    hi = gemm(A, Br)
    lo = torch.zeros_like(hi)
    for level in range(S - 1, -1, -1):
        p = torch.matmul(A[:, :, :(level + 1) * kk], Bx[:, (S - 1 - level) * kk:, :])
        hi, e = quick_two_sum(p, hi)  # (hi, lo) += p: FastTwoSum(p, hi), exact - TwoSum(hi,
        hi, lo = quick_two_sum(hi, lo + e)  # p)'s pair: ``ozaki``'s docstring - lo += its
        #  error, FastTwoSum
    return hi, lo
