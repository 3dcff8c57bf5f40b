import numpy as np
import sympy as sp
from hypothesis import given, settings

import symgrad as sg
from symgrad.strategies import inputs

W = sg.matrix("W", 2, 3)
y = sp.Symbol("y")
MODEL = sg.Model("m", sg.ops.total(W) * y, params=[W],
                 inputs={y: sg.Choice([0.0, 1.0])})


@settings(max_examples=60, derandomize=True, deadline=None)
@given(inputs(MODEL))
def test_samples_respect_shapes_and_domains(sample):
    assert sample["W"].shape == (1, 2, 3) and np.all(np.isfinite(sample["W"]))
    assert sample["y"].shape == (1,) and set(sample["y"].ravel()) <= {0.0, 1.0}


def test_edge_classes_are_hit():
    from hypothesis import find
    find(inputs(MODEL), lambda s: (s["W"] == 0).any(), settings=settings(derandomize=True))
    find(inputs(MODEL), lambda s: (np.abs(s["W"]) >= 20).any(),
         settings=settings(derandomize=True))
