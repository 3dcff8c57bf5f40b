"""Error-free-split matrix products of double-double arrays on float64 BLAS (Ozaki's scheme).

Each DD operand is cut into float64 *slices*: slice s of a row of A is an integer of at most tau
bits times a power of two shared by the row (columns of B alike). A product of two slices summed
over a K-block is then a sum of integers below K * 2**(2 tau) <= 2**53: float64 GEMM computes it
exactly, whatever its summation order or FMA use. With S slices per operand:

    A B = sum_{s+t <= S+1} A_s B_t            exact GEMMs, S(S+1)/2 of them, accumulated in DD
        + sum_{s<=S} A_s R^B_{S+2-s} + R^A_{S+1} B   S+1 float64 GEMMs of magnitude <= 2**(-S(tau+1))

(R^X_j: the residual after j-1 slices, rounded to float64). tau = floor((53 - log2 K_block)/2):
21 for K-blocks of 1024; S = 3 gives 6 exact + 4 rounded GEMMs (10 per block) and an error below
~K u 2**(-3 tau - 3) * K * rowmax_i(|A|) colmax_j(|B|) ~ 2e-30 rowmax*colmax*... per entry, and
~1e-32 relative to (|A||B|)_ij on matrices whose rows (columns) do not span many orders of
magnitude. Before slicing, column k of A and row k of B are rescaled by 2**±d_k (exact) so their
maxima meet: this brings rowmax*colmax near |A||B| for matrices whose scales differ along K.

Tiling: K in blocks of `k_block`, M and N in blocks of at most `tile_elems` entries per slice, so
the working set is ~(2S+2) float64 copies of one tile of each operand plus the DD result.

Example:
    >>> import numpy as np
    >>> from symgrad.precise.dd import DD
    >>> a = DD(np.array([[[1.0, 2.0**-60]]])); b = DD(np.array([[[3.0], [5.0]]]))
    >>> c = dd_matmul(a, b)
    >>> float(c.hi[0, 0, 0]), float(c.lo[0, 0, 0]) == 5 * 2.0**-60
    (3.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dd import DD, add, add_f64, two_sum


@dataclass(frozen=True)
class OzakiConfig:
    slices: int = 3  # S: exact pairs s+t <= S+1 (6 GEMMs) + S+1 rounded GEMMs; 4 -> 10+5, ~2**-22 smaller
    k_block: int = 1024  # contraction block; tau = floor((53 - ceil(log2 k_block)) / 2) = 21
    tile_elems: int = 1 << 22  # max entries of one operand tile (each slice of it is 32 MiB)
    equilibrate: bool = True  # rescale A's columns / B's rows by powers of two so their maxima meet


def _tau(k: int) -> int:
    return (53 - max(1, int(np.ceil(np.log2(max(k, 2)))))) // 2


def _slices(hi: np.ndarray, lo: np.ndarray, axis: int, n: int, tau: int):
    """Cut hi + lo into n slices (tau-bit integers on a grid shared along `axis`) and the residuals.

    Returns (slices, residuals): residuals[j] = hi + lo - sum(slices[:j]) rounded to float64
    (residuals[0] = hi), for j = 0..n.
    """
    rh, rl = hi, lo
    slices, residuals = [], [hi]
    for _ in range(n):
        m = np.max(np.abs(rh), axis=axis, keepdims=True)
        _, e = np.frexp(m)  # m < 2**e
        sigma = np.ldexp(0.75, e + 53 - tau)
        q = (rh + sigma) - sigma  # rh rounded to the grid 2**(e - tau): |q| <= 2**e, q / grid integer <= 2**tau
        slices.append(q)
        rh, rl = two_sum(rh - q, rl)  # rh - q is exact
        residuals.append(rh + rl)
    return slices, residuals


def _equilibrate(a: DD, b: DD) -> tuple[DD, DD]:
    ma = np.max(np.abs(a.hi), axis=(0, 1))  # per k
    mb = np.max(np.abs(b.hi), axis=(0, 2))
    ok = (ma > 0) & (mb > 0) & np.isfinite(ma) & np.isfinite(mb)
    _, ea = np.frexp(np.where(ok, ma, 1.0))
    _, eb = np.frexp(np.where(ok, mb, 1.0))
    d = np.where(ok, (eb - ea) // 2, 0)
    if not d.any():
        return a, b
    da = d[None, None, :]
    db = -d[None, :, None]
    return DD(np.ldexp(a.hi, da), np.ldexp(a.lo, da)), DD(np.ldexp(b.hi, db), np.ldexp(b.lo, db))


def _tile(As, RA, Bs, RB, S: int) -> DD:
    """The DD product of one tile from its slices (see module docstring)."""
    rest = RA[S] @ RB[0]
    for s in range(1, S + 1):
        rest = rest + As[s - 1] @ RB[S + 1 - s]
    acc = DD(rest)
    for level in range(S - 1, -1, -1):  # smallest exact products first
        for s in range(level + 1):
            acc = add_f64(acc, As[s] @ Bs[level - s])
    return acc


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
    out = DD(np.zeros((bt, m, n)), np.zeros((bt, m, n)))
    if k == 0 or m == 0 or n == 0:
        return out
    if not (np.isfinite(a.hi).all() and np.isfinite(b.hi).all()):
        # non-finite entries: IEEE semantics of the leading parts (inf*0 = nan as in numpy)
        with np.errstate(all="ignore"):
            bad = np.matmul(a.hi, b.hi)
        fin = np.isfinite(bad)
        a = DD(np.nan_to_num(a.hi, nan=0.0, posinf=0.0, neginf=0.0), np.where(np.isfinite(a.hi), a.lo, 0.0))
        b = DD(np.nan_to_num(b.hi, nan=0.0, posinf=0.0, neginf=0.0), np.where(np.isfinite(b.hi), b.lo, 0.0))
        good = dd_matmul(a, b, cfg)
        return DD(np.where(fin, good.hi, bad), np.where(fin, good.lo, 0.0))
    if cfg.equilibrate:
        a, b = _equilibrate(a, b)
    S = cfg.slices
    kb = min(k, cfg.k_block)
    tau = _tau(kb)
    mb = max(1, min(m, cfg.tile_elems // max(1, bt * kb)))
    nb = max(1, min(n, cfg.tile_elems // max(1, bt * kb)))
    for k0 in range(0, k, kb):
        ks = slice(k0, min(k, k0 + kb))
        for m0 in range(0, m, mb):
            ms = slice(m0, min(m, m0 + mb))
            As, RA = _slices(a.hi[:, ms, ks], a.lo[:, ms, ks], 2, S, tau)
            for n0 in range(0, n, nb):
                ns = slice(n0, min(n, n0 + nb))
                Bs, RB = _slices(b.hi[:, ks, ns], b.lo[:, ks, ns], 1, S, tau)
                t = _tile(As, RA, Bs, RB, S)
                cur = DD(out.hi[:, ms, ns], out.lo[:, ms, ns])
                s = add(cur, t) if k0 else t
                out.hi[:, ms, ns] = s.hi
                out.lo[:, ms, ns] = s.lo
    return out
