"""An argument that nests tensors in a tuple, list or dict (an LSTM's initial state
``(h0, c0)``) is captured leaf by leaf: each float leaf is a block named after its argument and
place (``hx_0``, ``hx_1``, ``d_scale``), differentiated where it requires grad, with its own
hooks. Before, such a tuple was baked into the graph as a lifted constant (torch.export warned
that it required grad) and the capture refused it ("a constant array ... not exactly
representable")."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.export import leaf_names


def _lstm():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.LSTM(input_size=3, hidden_size=4, batch_first=True).double()


def _state():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    h0, c0 = (torch.randn(1, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
              for _ in range(2))
    return x, h0, c0


def _verify(h0, c0, x):
    return sg.verify(module=_lstm(), inputs=(x, (h0, c0)), samples=2,
                     loss=lambda out: out[0].pow(2).mean() + out[1][1].sum())


def test_an_lstm_with_its_initial_state_is_verified_by_the_states_own_names():
    x, h0, c0 = _state()
    r = _verify(h0, c0, x)
    assert r.ok, r
    assert [b for b, _, _ in r.blocks][-2:] == ["hx_0", "hx_1"]  # forward(input, hx)
    assert h0.grad is None and len(h0._backward_hooks or {}) == 0


@pytest.mark.parametrize("factor", [1.5, 1 + 1e-9])
def test_a_hook_on_a_nested_state_tensor_fails_naming_it(factor):
    x, h0, c0 = _state()
    c0.register_hook(lambda g: g * factor)
    r = _verify(h0, c0, x)
    assert r.verdict == "fail", r
    assert {f.output.split("[")[0] for f in r.findings("failures")} == {"d/dhx_1"}


class PairScale(torch.autograd.Function):
    """x * a + b for a pair (a, b); its backward's b-gradient is scaled by ``BUG``."""

    BUG = 1.0

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.save_for_backward(x, a)
        return x * a + b

    @staticmethod
    def backward(ctx, g):
        x, a = ctx.saved_tensors
        return g * a, g * x, g * PairScale.BUG


def _pair_fn(x, pair):
    return PairScale.apply(x, *pair).sum()


@pytest.mark.parametrize("bug, ok", [(1.0, True), (1 + 1e-7, False)])
def test_gradcheck_takes_a_tuple_argument_and_names_its_leaves(bug, ok, monkeypatch):
    monkeypatch.setattr(PairScale, "BUG", bug)
    g = torch.Generator().manual_seed(1)
    x, a, b = (torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    if ok:
        assert sg.gradcheck(_pair_fn, (x, (a, b)))
    else:
        with pytest.raises(sg.GradcheckError, match=r"with respect to pair_1\[\d\]"):
            sg.gradcheck(_pair_fn, (x, (a, b)))


def test_a_dict_argument_is_named_by_its_keys():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    d = {"scale": torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True),
         "steps": 2}
    assert leaf_names((x, d), ["x", "d"]) == ["x", "d_scale", "d_steps"]
    assert sg.gradcheck(lambda x, d: (torch.tanh(x * d["scale"]) ** d["steps"]).sum(), (x, d))
