"""A top-2 mixture of experts captured whole: topk (exact: ranks from pairwise Piecewise
comparisons, ties broken by the lower index as torch's CPU topk) and dense gates by scatter;
a router whose gradient is dropped is caught on the router; exact ties in routing give no
false alarm; other uses of topk's indices are refused in one line."""

from __future__ import annotations

import pytest
import torch

import symgrad as sg
from tests.clients import MoE, route


def _x(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _verify(fn, args, samples=3):
    c = sg.capture(fn, args)
    return c, sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(samples),
                        backends=("torch_fn",))


def test_top2_moe_passes():
    torch.manual_seed(0)
    c, r = _verify(MoE().double(), (_x(5, 4),), samples=4)
    assert {"router_weight", "w1", "w2"} <= {b.name for b in c.model.param_blocks}
    assert r.ok, r


def test_router_whose_gradient_is_dropped_is_caught_on_the_router():
    torch.manual_seed(0)
    _, r = _verify(MoE(router_grad=0.0).double(), (_x(5, 4),))
    assert r.verdict == "fail"
    assert {f.output.split("[")[0] for f in r.findings("failures")} == {"d/drouter_weight"}


@pytest.mark.parametrize("row", [[2.0, 1.0, 1.0, 0.0],   # a tie at the top-2 border
                                 [1.0, 1.0, 0.5, 0.0],   # a tie inside the top 2
                                 [3.0, 1.0, 2.0, 0.0]])  # no tie
def test_ties_in_routing_give_no_false_alarm(row):
    logits = torch.tensor([row], dtype=torch.float64, requires_grad=True)
    E = _x(1, 4, 3, seed=1).requires_grad_()
    for samples in (1, 4):  # the tie itself, then points around it
        _, r = _verify(route, (logits, E), samples)
        assert r.verdict != "fail", r


def test_topk_values_and_float32_gradcheck():
    x = _x(3, 5).float().requires_grad_()
    assert sg.gradcheck(lambda x: x.topk(3, -1).values.exp().sum(), (x,))
    assert sg.gradcheck(lambda x: x.topk(2, -1, largest=False).values.pow(2).sum(),
                        (_x(2, 4).requires_grad_(),))


def test_other_uses_of_topk_indices_are_refused_in_one_line():
    x = _x(2, 4).requires_grad_()
    with pytest.raises(sg.SymgradError, match="topk's indices are used by .*scatter") as err:
        sg.capture(lambda x: (x.topk(2, -1).indices.unsqueeze(-1) * x[..., :1]).sum(), (x,))
    assert "\n" not in str(err.value)
    with pytest.raises(sg.SymgradError, match="topk along an axis other than the last"):
        sg.capture(lambda x: x.topk(1, 0).values.sum(), (x,))
