"""symgrad's own programs are stable where the math is finite (log-sum-exp with a max shift,
torch.sigmoid, softmax as exp(x - lse), NaN-safe branches): its own rows never fail there, and a
user's correct code is not sunk by them."""

import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad import zoo


@pytest.mark.parametrize("dtype, logits", [("float32", [0.0, 200.0]), ("float64", [0.0, 1000.0]),
                                           ("float32", [-300.0, 0.0, 300.0])])
def test_log_softmax_at_large_logits(dtype, logits):
    a = sg.matrix("a", 1, len(logits))
    m = sg.Model("lse", sg.ops.total(sg.ops.log_softmax(a)), params=[a])
    r = sg.verify(m, at={"a": np.array([[logits]])}, dtype=dtype,
                  torch_fn=lambda a: torch.log_softmax(a, dim=-1).sum())
    assert r.ok, str(r)


def test_cross_entropy_at_large_logits_float32():
    logits, t = sg.matrix("L", 1, 3), sg.matrix("t", 1)
    m = sg.Model("ce", sg.ops.cross_entropy(logits, t), params=[logits],
                 inputs={t: sg.Integers(0, 2)})
    r = sg.verify(m, at={"L": np.array([[[0.0, 150.0, -150.0]]]), "t": np.array([[0.0]])},
                  dtype="float32")
    assert r.ok, str(r)


def test_sigmoid_far_in_the_tail_float32():
    z = sp.Symbol("z")
    m = sg.Model("sig", 3 * sg.ops.sigmoid(z), params=[z])
    r = sg.verify(m, at={"z": np.array([-100.0, -30.0, 0.0, 100.0])}, dtype="float32",
                  torch_fn=lambda z: 3 * torch.sigmoid(z))
    assert r.ok, str(r)


def test_safe_branch_does_not_poison_symgrads_torch_program():
    w = sp.Symbol("w")
    m = sg.Model("safe", sp.Piecewise((sp.log(w), w > 1), (w - 1, True)), params=[w])
    r = sg.verify(m, at={"w": np.array([-2.0, 0.0, 0.5, 1.0, 3.0])})
    assert r.comparisons["torch"].ok and r.comparisons["numpy"].ok, str(r)


@pytest.mark.parametrize("seed", [4, 8])
def test_gpt_attention_float32(seed):
    r = sg.verify(zoo.get("gpt_attention"), seed=seed, dtype="float32")
    assert r.ok, str(r)


def test_heaviside_in_a_model_runs_in_torch():
    """torch.heaviside has no derivative; symgrad's row gives it a zero one."""
    w, x = sp.symbols("w x")
    m = sg.Model("step", sp.Heaviside(w * x - 1) * w**2 + w, params=[w], inputs=[x])
    assert sg.verify(m, samples=50, seed=0).ok
