"""nanoGPT and Hugging Face GPT-2 captured whole, with no layout table: the same verdict as the
layout path (``sg.verify(model, module=...)``) at a small config in eval mode; the tied
``lm_head`` / ``wte`` weight is one block; a planted backward bug is caught on its parameter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.testing import scale_backward
from tests.clients import HFLoss, NanoLoss
from tests.gptmodels import nanogpt
from tests.test_modules import HF, NANO, _hf_module, tiny

IDS, TARGETS = torch.tensor([[1, 4, 2]]), torch.tensor([[4, 2, 5]])


def _captured_verdict(wrapper: torch.nn.Module, name: str):
    c = sg.capture(wrapper, (IDS, TARGETS), name=name)
    return c, sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(3), backends=("torch_fn",))


def test_nanogpt_captured_matches_the_layout_path():
    cfg = {**NANO, "drop_rate": 0.0}
    torch.manual_seed(0)
    m = nanogpt.from_book_config(cfg).double().eval()
    c, r = _captured_verdict(NanoLoss(m), "nanoGPT")
    names = [b.name for b in c.model.param_blocks]
    # tied: lm_head.weight is wte.weight, one block whose gradient sums both uses
    assert "m_transformer_wte_weight" in names and "m_lm_head_weight" not in names
    assert [s.source for s in c.slots if s.key == "fn.m.lm_head.weight"] == ["tied"]
    assert r.ok, r
    layout = sg.verify(tiny(cfg), module=m, samples=3, seed=0)
    assert r.verdict == layout.verdict == "pass"


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_hf_gpt2_captured_matches_the_layout_path(impl):
    """eager attention adds finfo(float64).min where masked (a mask, as -inf); sdpa is SDPA."""
    cfg = {**HF, "drop_rate": 0.0}
    m = _hf_module(cfg, impl=impl).eval()
    c, r = _captured_verdict(HFLoss(m), "gpt2")
    assert "m_transformer_h_0_attn_c_attn_weight" in {b.name for b in c.model.param_blocks}
    assert r.ok, r
    layout = sg.verify(tiny(cfg), module=m, samples=3, seed=0)
    assert r.verdict == layout.verdict == "pass"


def test_hf_gpt2_labels_loss_in_float32_is_a_different_function():
    """GPT-2's own ``labels=`` loss casts the logits with ``.float()``: in a float64 model the
    loss is computed in float32, which the captured (one-dtype) forward sees as a function
    that differs from the float64 one - a real finding, not a false alarm, named as the user's
    own conversion to a lower precision."""
    m = _hf_module({**HF, "drop_rate": 0.0}).eval()

    class Labels(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = m

        def forward(self, idx, targets):
            return self.m(input_ids=idx, labels=targets).loss

    _, r = _captured_verdict(Labels(), "gpt2-labels")
    assert r.verdict == "fail"
    assert any("lower precision in user code" in f.message()  # the cause: HF's .float()
               and "float() gave float32 in a float64 run" in f.explanation
               for f in r.findings("failures"))


class ScaledGELU(torch.nn.Module):
    """GELU whose backward is scaled by 1 + 1e-9 (a planted bug)."""

    def forward(self, x):
        return scale_backward(F.gelu(x), 1 + 1e-9)


def test_nanogpt_planted_backward_bug_is_caught_on_its_parameter():
    cfg = {**NANO, "drop_rate": 0.0}
    torch.manual_seed(0)
    m = nanogpt.from_book_config(cfg).double().eval()
    m.transformer.h[0].mlp.gelu = ScaledGELU()
    _, r = _captured_verdict(NanoLoss(m), "nanoGPT")
    assert r.verdict == "fail"
    failing = {f.output for f in r.findings("failures")}
    assert any("mlp_c_fc_weight" in o for o in failing), failing
