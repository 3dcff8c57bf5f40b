"""Attention without a mask: torch 2.13's SDPA decomposition guards fully masked rows with
``where(all(scores == -inf), 0, softmax)``. On unmasked scores (a real-valued program node,
never -inf) that test is known False; equality with a finite float stays refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.testing import scale_backward


def _x(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def _attend(q, k, v):
    return F.scaled_dot_product_attention(q, k * 0.5, v)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sdpa_without_a_mask_passes(dtype):
    q, k, v = (_x(1, 2, 4, 3, seed=s, dtype=dtype) for s in (0, 1, 2))
    assert sg.gradcheck(_attend, (q, k, v))


def test_sdpa_without_a_mask_with_a_wrong_backward_fails_naming_the_input():
    q, k, v = (_x(1, 2, 4, 3, seed=s) for s in (0, 1, 2))
    with pytest.raises(sg.GradcheckError, match=r"gradient with respect to k\["):
        sg.gradcheck(lambda q, k, v: _attend(q, scale_backward(k, 1 + 1e-9), v), (q, k, v))


def test_multihead_attention_and_transformer_encoder_layer_pass():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Embedding(7, 8),
                        nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True),
                        nn.Linear(8, 7)).double()
    ids, tg = torch.tensor([[1, 4, 2, 6], [0, 3, 3, 5]]), torch.tensor([2, 0, 1, 6, 4, 4, 2, 1])
    r = sg.verify(module=enc, inputs=ids, targets=tg, samples=2,
                  loss=lambda o, t: F.cross_entropy(o.reshape(-1, 7), t))
    assert r.verdict == "pass", str(r)
    assert any(b.startswith("1.self_attn.in_proj_weight") for b, _, _ in r.blocks)


def test_equality_with_a_finite_float_is_still_refused():
    with pytest.raises(sg.SymgradError, match="== / != on a float tensor.*aten.eq"):
        sg.gradcheck(lambda x: torch.where(x == 1.5, x, 2 * x), (_x(3),))
