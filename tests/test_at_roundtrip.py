"""The README's ``at=`` forms: one sample in the blocks' shapes, or N with a leading axis; a
failure's ``point`` is such a dict, and pasting it back reruns that sample (same failure)."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch

import symgrad as sg
from symgrad.testing import scale_block_backward


def _model() -> sg.Model:
    W, x = sg.matrix("W", 2, 3), sg.matrix("x", 3)
    return sg.Model("lin_tanh", sum(sp.tanh(e) for e in W @ x), params=[W],
                    inputs={x: sg.Normal()})


def _fn(W, x):
    return torch.tanh(W @ x).sum()


def test_one_sample_and_n_samples_with_a_leading_axis():
    rng = np.random.default_rng(0)
    at = {"W": rng.normal(size=(3, 2, 3)), "x": rng.normal(size=(3, 3))}
    r = sg.verify(_model(), torch_fn=_fn, at=at)
    assert r.verdict == "pass" and len(r.oracle_samples) == 3
    one = sg.verify(_model(), torch_fn=_fn, at={k: v[1] for k, v in at.items()})
    assert one.verdict == "pass" and len(one.oracle_samples) == 1


def test_a_failures_point_pasted_back_reruns_that_sample():
    bad = scale_block_backward(_fn, "W", 1 + 1e-9)
    r = sg.verify(_model(), torch_fn=bad, samples=6, seed=0)
    assert r.verdict == "fail"
    f = r.failures[0]
    again = sg.verify(_model(), torch_fn=bad, at=f.point)
    assert again.verdict == "fail"
    same = [g for g in again.failures if g.output == f.output and g.backend == f.backend]
    assert same and same[0].expected == f.expected and same[0].got == f.got
