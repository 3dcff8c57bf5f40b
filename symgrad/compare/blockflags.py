"""Which samples' blocks the block test (``symgrad.compare``'s module docstring, test 2)
flags: today's floors everywhere, and lower ones where a float64 re-run of the same code will
decide the suspicion (``symgrad.confirm``, experiment a).

A block is flagged at its sample when its projection p is resolved (``ok_rows``), has
``block_min_entries`` effective entries, and both |p| and |p - m| (m: the sample's common
mode, the median p over its blocks) exceed max(block_floor u, block_sigmas sigma). The
common mode is left out because correct code shares upstream roundings (BCE's dL/dz at a
saturated logit moves every block alike), and 2^14 u keeps a suspicion that no experiment
can refute from turning the run inconclusive.

Where the backend's own code re-runs in float64 (``rerun``: a user's torch code in a narrower
dtype) a suspicion costs one float64 run and nothing else: float64 reproduces a code's bias
and shrinks rounding by 2^29 (float32). There a block is also flagged when |p| exceeds
max(rerun_floor u, block_sigmas sigma) from ``rerun_min_entries`` effective entries and either
it departs from the common mode by as much, or the common mode itself exceeds rerun_floor u:
more than one shared rounding can move every entry (|delta| <= u / (1 + u)). A function of
one input has one block, its bias *is* the common mode: this is the only test that sees it.
Such a flag is ``rerun_only`` (today's floors would not raise it): the float64 re-run confirms
it or it is dropped, never left inconclusive.

>>> import numpy as np
>>> st = {"p": np.array([2.0, 2.0]) * 2**-24, "sigma": np.array([0.1, 0.1]) * 2**-24,
...       "n_eff": np.array([3.0, 3.0]), "ok_rows": np.array([True, True])}
>>> flag, _, low = block_flags(st, st["p"], 2**-24, Tolerance(), rerun=True)
>>> flag.tolist(), low.tolist()  # a 2 u bias on a one-block function, both samples
([True, True], [True, True])
>>> block_flags(st, st["p"], 2**-24, Tolerance(), rerun=False)[0].tolist()
[False, False]
"""

from __future__ import annotations

import numpy as np

from .tolerance import Tolerance


def block_flags(st: dict, common: np.ndarray, u: float, tol: Tolerance, *,
                rerun: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The block test's flags of one block over the samples (module docstring).

    Arguments:
        st: the block's per-sample ``p``, ``sigma``, ``n_eff`` and ``ok_rows`` (resolved).
        common: each sample's common mode m (the median p over its blocks).
        u: the unit roundoff of the compared dtype.
        tol: the tolerance settings.
        rerun: a float64 re-run of the same code decides the suspicion (the lower floors).
    Returns:
        (flagged, the threshold |p| had to exceed, rerun_only: flagged only by the lower
        floors), each per sample.
    """
    p, sigma, n_eff, ok = st["p"], st["sigma"], st["n_eff"], st["ok_rows"]
    with np.errstate(invalid="ignore"):
        noise = tol.block_sigmas * sigma
        thresh = np.maximum(tol.block_floor * u, noise)
        flag = (ok & (n_eff >= tol.block_min_entries) & (np.abs(p) > thresh)
                & (np.abs(p - common) > thresh))
        if not rerun:
            return flag, thresh, np.zeros_like(flag)
        low = np.maximum(tol.rerun_floor * u, noise)
        shared = np.abs(common) > tol.rerun_floor * u  # beyond one shared rounding
        lower = (ok & (n_eff >= tol.rerun_min_entries) & (np.abs(p) > low)
                 & ((np.abs(p - common) > low) | shared) & ~flag)
    return flag | lower, np.where(flag, thresh, low), lower
