"""Dropout in a captured module or function, fed symgrad's keep-masks (issue 18, item 1;
``symgrad.capture.dropout``): in train mode (and wherever the code calls F.dropout with
training=True) dropout is ``x * keep / (1 - p)``, ``keep`` an input of the captured program
named by the module's own name, drawn per sample from the run's seed, and the same mask reaches
the user's code, its float64 re-run and the exact program.

Meant to pass: an MLP with nn.Dropout(0.3) in float64 and float32, a TransformerEncoderLayer
(dropout=0.1), a CNN with Dropout2d (channel masks), p = 1, gradcheck/gradgradcheck of a
function calling F.dropout. Meant to fail: the same MLP with a planted backward bug (a
parameter hook, a custom Function) is failed and named by its parameter; SDPA's own dropout
is refused in one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.captured import capture
from symgrad.errors import SymgradError
from symgrad.result_text import SAVED_FILE
from tests.clients import Gain, HFLoss, Scaled, gain_factor, planted_hook, seeded
from tests.test_modules import HF, _hf_module

Y = torch.tensor([0, 2, 1, 1, 0])
FED = "dropout fed symgrad's keep-masks ("  # the train-mode note


def _x(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _mlp(dtype=torch.float64, p=0.3):
    with seeded(0):
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(p), nn.Linear(6, 3)).to(dtype)


def _verify(module, dtype=torch.float64, **kw):
    return sg.verify(module=module, inputs=_x(5, 4, dtype=dtype), targets=Y,
                     loss=F.cross_entropy, train=True, dtype=dtype, **kw)


def _failing(r):
    return {f.output.split("[")[0] for f in r.findings("failures")}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mlp_with_dropout_in_train_mode_passes(dtype):
    """Meant to pass: the masks the program holds are the ones the module ran with (a
    different mask would fail every gradient entry by far more than its allowance)."""
    net = _mlp(dtype).eval()
    r = _verify(net, dtype)
    assert r.verdict == "pass", r
    assert not net.training  # the user's mode is back
    assert [b for b, _, _ in r.blocks] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert any("keep-masks (2.keep p=0.3)" in n for n in r.notes), r.notes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_planted_hook_behind_dropout_fails_named_by_its_parameter(dtype):
    """Meant to fail: 0.weight's gradient x (1 + 1e-6), float32 too."""
    r = _verify(planted_hook(_mlp(dtype), "0.weight", 1 + 1e-6), dtype)
    assert r.verdict == "fail" and _failing(r) == {"d/d0.weight"}, r
    saved = torch.load(r.failures[0].point[SAVED_FILE])  # the sample's own mask saved too
    keep = saved["keep"]["2.keep"]
    assert keep.shape == (5, 6) and set(keep.flatten().tolist()) <= {0.0, 1.0}
    assert len(saved["inputs"]) == 1 and saved["inputs"][0].shape == (5, 4)


def test_float32_bug_below_its_rounding_is_proven_by_the_float64_rerun_with_the_same_masks():
    """Meant to fail: x (1 + 1e-7) hides in float32's rounding; the float64 re-run of the
    user's code (``backends.float64``), fed the same masks, reproduces the factor."""
    r = _verify(planted_hook(_mlp(torch.float32), "0.weight", 1 + 1e-7), torch.float32)
    assert r.verdict == "fail" and _failing(r) == {"d/d0.weight"}, r
    assert "module in float64" in r.comparisons
    assert "proven in float64" in r.failures[0].message()


class _GainDrop(nn.Module):
    """tests.clients.Scaled (a custom Function's gain) with dropout before it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.drop = Scaled(), nn.Dropout(0.25)

    def forward(self, x):
        return self.inner(self.drop(x))


def test_custom_function_bug_behind_dropout_fails_named_by_its_parameter():
    """Meant to fail, then pass: a custom Function whose backward for ``gain`` is x (1 + 1e-6)."""
    with seeded(1):
        m = _GainDrop().double()
    x = _x(4, 3)
    with gain_factor(1 + 1e-6):
        bad = sg.verify(module=m, inputs=x, train=True)
    assert bad.verdict == "fail" and _failing(bad) == {"d/dinner.gain"}, bad
    assert sg.verify(module=m, inputs=x, train=True).verdict == "pass"


def test_masks_differ_between_samples_and_repeat_with_the_seed():
    """Each sample's mask is drawn afresh from the run's seed; the user's code runs with the
    mask of the sample (recorded by a hook on the dropout), the same on a second run."""
    net = _mlp()
    seen = []
    net[2].register_forward_hook(lambda m, i, out: seen.append((out == 0).clone()) if type(
        out) is torch.Tensor else None)  # a real run's, not the export's traced tensors

    def run(seed):
        seen.clear()
        r = _verify(net, samples=4, seed=seed)
        assert r.verdict == "pass", r
        return [s for s in seen if s.shape == (5, 6)]
    first, again, other = run(0), run(0), run(1)
    assert len({tuple(s.flatten().tolist()) for s in first}) >= 3  # samples differ
    assert len(first) == len(again) and all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(a, b) for a, b in zip(first, other))
    c = capture(_mlp().train(), (_x(5, 4),), seed=0)
    at, at2 = c.at(4, 0), c.at(4, 0)
    keep = at["p_2_keep"]
    assert keep.shape == (4, 5, 6) and set(keep.flatten().tolist()) <= {0.0, 1.0}
    assert len({row.tobytes() for row in keep}) == 4 and (at2["p_2_keep"] == keep).all()
    block = next(b for b in c.model.blocks if b.name == "p_2_keep")  # drawn from its own
    assert block.domain == sg.Bernoulli(0.7) and not block.is_param  # domain: 0/1 too


def test_dropout2d_masks_have_the_channel_shape():
    with seeded(0):
        net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Dropout2d(0.5), nn.Flatten(),
                            nn.Linear(12, 2)).double()
    x = _x(2, 2, 4, 4)
    c = capture(net.train(), (x,), seed=3)
    assert [(s.label, s.shape, s.call) for s in c.call.feed.sites] == [
        ("1.keep", (2, 3, 1, 1), "F.dropout2d")]
    r = sg.verify(module=net, inputs=x, targets=torch.tensor([0, 1]), loss=F.cross_entropy,
                  train=True)
    assert r.verdict == "pass", r


def test_transformer_encoder_layer_with_dropout_verifies_in_train_mode():
    """Its attention dropout runs inside F.scaled_dot_product_attention: computed there in that
    call's math form with a fed mask (named by the attention module), said in a note."""
    with seeded(0):
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.1,
                                           batch_first=True).double()
    r = sg.verify(module=layer, inputs=_x(2, 3, 8), train=True)
    assert r.verdict == "pass", r
    note = next(n for n in r.notes if "keep-masks" in n)
    assert "self_attn.keep p=0.1, dropout1.keep p=0.1, dropout.keep p=0.1 ..." in note, note
    assert "math form" in note


def test_sdpa_dropout_is_refused_in_one_line_naming_the_call_and_the_fix():
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(4, 12)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, -1)
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.2)
    with seeded(0):
        m = Attention().double()
    with pytest.raises(SymgradError) as err:
        sg.verify(module=m, inputs=_x(2, 3, 4), train=True)
    text = str(err.value)
    assert "\n" not in text and text.startswith("verify(module=Attention): F.scaled_dot_product_"
                                                "attention(dropout_p=0.2) at test_capture_"
                                                "dropout.py:"), text
    assert "in forward" in text and "pass dropout_p=0" in text and "F.dropout" in text
    with pytest.raises(SymgradError, match="dropout_p=0.2"):  # hard-coded: eval mode too
        sg.gradcheck(m.eval(), (_x(2, 3, 4),))


def test_eval_mode_is_unchanged_and_p_0_or_1_are_handled():
    net = _mlp()
    r = sg.verify(module=net, inputs=_x(5, 4), targets=Y, loss=F.cross_entropy)
    assert r.verdict == "pass" and not any(n.startswith(FED) for n in r.notes)
    assert any("train=True checks batch norm's batch statistics and dropout" in n
               for n in r.notes), r.notes  # verified in eval mode, said
    assert not capture(net.eval(), (_x(5, 4),)).call.feed.sites
    r0 = _verify(_mlp(p=0.0))
    assert r0.verdict == "pass" and not any(n.startswith(FED) for n in r0.notes)
    r1 = _verify(_mlp(p=1.0))  # every entry dropped: 0.weight's exact gradient is 0
    assert r1.verdict == "pass" and any("2.keep p=1" in n for n in r1.notes), r1


def _dropped(x, w):
    return F.dropout(torch.tanh(x @ w), 0.4).sum()


@pytest.mark.parametrize("check", [sg.gradcheck, sg.gradgradcheck])
def test_gradcheck_of_a_function_calling_f_dropout(check):
    x = _x(3, 4).requires_grad_()
    w = _x(4, 5, seed=1).requires_grad_()
    assert check(_dropped, (x, w))


def test_gradcheck_of_a_dropout_function_with_a_wrong_backward_fails():
    """Meant to fail: F.dropout then a custom Function whose backward is x (1 + 1e-6)."""

    def f(x, g):
        return Gain.apply(F.dropout(x, 0.5), g).sum()
    x = _x(4, 3).requires_grad_()
    g = _x(3, seed=2).requires_grad_()
    with gain_factor(1 + 1e-6), pytest.raises(sg.GradcheckError, match=r"g\["):
        sg.gradcheck(f, (x, g))
    assert sg.gradcheck(f, (x, g))


class _Twice(nn.Module):
    """One nn.Dropout called twice, and F.dropout in its own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.drop = nn.Linear(3, 3), nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(self.lin(x))
        return F.dropout(self.drop(h), 0.2, self.training)


def test_sites_are_named_by_the_calling_submodule_each_call_its_own_mask():
    with seeded(0):
        m = _Twice().double().train()
    c = capture(m, (_x(2, 3),))
    assert [(s.label, s.block, s.p) for s in c.call.feed.sites] == [
        ("drop.keep", "drop_keep", 0.5), ("drop.keep1", "drop_keep1", 0.5),
        ("dropout.keep", "dropout_keep", 0.2)]
    assert sg.verify(module=m, inputs=_x(2, 3), train=True).verdict == "pass"


def test_multihead_attention_weights_dropout_goes_through_f_dropout_and_is_fed():
    """nn.MultiheadAttention returning its weights (need_weights=True, the default) drops them
    with F.dropout: fed, named by the attention module."""
    class Att(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(8, 2, dropout=0.2, batch_first=True)

        def forward(self, x):
            return self.att(x, x, x)[0]
    with seeded(0):
        m = Att().double()
    r = sg.verify(module=m, inputs=_x(2, 3, 8), train=True)
    assert r.verdict == "pass", r
    note = next(n for n in r.notes if n.startswith(FED))
    assert "att.keep p=0.2" in note and "math form" not in note


def test_gradcheck_with_a_reference_feeds_both_the_same_masks():
    """The reference is captured; func runs with the reference's masks, call for call."""
    def f(x):
        return F.dropout(torch.tanh(x), 0.5).sum()

    def ref(x):
        return F.dropout(torch.tanh(x), 0.5).sum()
    assert sg.gradcheck(f, (_x(4, 3).requires_grad_(),), reference=ref)


def test_hf_gpt2_captured_in_train_mode_eager_attention_passes_sdpa_is_refused():
    """A real client: Hugging Face GPT-2 (tiny config, dropout 0.1) captured with no layout
    table in train mode: eager attention drops its weights with nn.Dropout (fed); sdpa
    attention passes dropout_p to the kernel (refused, naming HF's line and the fix)."""
    ids, targets = torch.tensor([[1, 4, 2]]), torch.tensor([[4, 2, 5]])
    r = sg.verify(module=HFLoss(_hf_module({**HF, "drop_rate": 0.1}, impl="eager")),
                  inputs=(ids, targets), train=True, samples=4)
    assert r.verdict == "pass", r
    assert "m.transformer.h.0.attn.resid_dropout.keep" in next(
        n for n in r.notes if n.startswith(FED))
    with pytest.raises(SymgradError, match=r"dropout_p=0.1\) at sdpa_attention.py:\d+.*"
                       r"attn_implementation=\"eager\""):
        sg.verify(module=HFLoss(_hf_module({**HF, "drop_rate": 0.1}, impl="sdpa")),
                  inputs=(ids, targets), train=True, samples=4)
