"""A user's gradient hooks on a module's parameters (``p.register_hook``) are what
``loss.backward()`` writes into ``.grad``: symgrad's eager run on substitute tensors carries
them, so a hook that changes the gradient fails (it is not the derivative of the loss), an
identity hook passes, and a post-accumulate-grad hook is refused in one line naming the
parameter."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.captured import capture
from symgrad.errors import SymgradError
from tests.clients import tiny_gpt
from tests.gptmodels import book


def _net():
    with torch.random.fork_rng(devices=[]):  # a fixed net; the global RNG restored after
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)).double()


def _data():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(3, 4, generator=g, dtype=torch.float64),
            torch.rand(3, 1, generator=g, dtype=torch.float64))


def _verify(net):
    x, y = _data()
    return sg.verify(module=net, inputs=x, targets=y, loss=F.binary_cross_entropy_with_logits,
                     samples=2)


def _failing(result):
    return {f.output.split("[")[0] for f in result.findings("failures")}


@pytest.mark.parametrize("factor", [1.5, 1 + 1e-9])
def test_a_hook_that_scales_a_parameters_gradient_fails_naming_it(factor):
    net = _net()
    net[2].weight.register_hook(lambda g: g * factor)
    r = _verify(net)
    assert r.verdict == "fail", r
    assert _failing(r) == {"d/d2.weight"}
    assert "2.weight[" in r.findings("failures")[0].message()
    # and the hook is named as where to look (newuser8: "real derivative error", no word of it)
    assert re.search(r"\n  note: 2\.weight's gradient goes through a hook of yours \(\S*"
                     r"<lambda>, registered with register_hook\)", str(r)), r
    assert "hook of yours" not in str(_verify(_net()))  # none without one


def test_sg_gradcheck_catches_a_hook_and_names_the_parameter():
    net = _net()
    net[2].weight.register_hook(lambda g: g * 1.5)
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(net, (_data()[0],))
    assert re.search(r"gradient with respect to 2\.weight\[\d+, \d+\]", str(err.value))


def test_a_hook_on_a_function_input_is_seen_by_gradcheck_as_by_torchs():
    x = _data()[0].requires_grad_(True)
    x.register_hook(lambda g: g * 1.5)
    f = lambda x: torch.tanh(x).sum()  # noqa: E731
    assert not torch.autograd.gradcheck(f, (x,), raise_exception=False)  # torch sees it too
    with pytest.raises(sg.GradcheckError, match=r"with respect to x\["):
        sg.gradcheck(f, (x,))
    y = _data()[0].requires_grad_(True)
    y.register_hook(lambda g: g)
    assert sg.gradcheck(f, (y,)) and len(y._backward_hooks) == 1


@pytest.mark.parametrize("hook", [lambda g: g, lambda g: None])
def test_an_identity_hook_passes_and_the_users_hooks_are_left_as_they_were(hook):
    net = _net()
    net[0].weight.register_hook(hook)
    r = _verify(net)
    assert r.ok, r
    assert len(net[0].weight._backward_hooks) == 1  # carried, not added to the real one
    assert sg.gradcheck(net, (_data()[0],))


def test_the_eager_run_computes_what_backward_writes_into_grad():
    net = _net()
    net[2].weight.register_hook(lambda g: g.clamp(-0.05, 0.05))  # a clipping hook
    x, y = _data()
    F.binary_cross_entropy_with_logits(net(x), y).backward()
    c = capture(net, (x, y), loss=F.binary_cross_entropy_with_logits, n_targets=1,
                names=["x", "targets"])
    blocks = {b.name: torch.as_tensor(c.example[b.name]).requires_grad_(b.name in {
        p.name for p in c.model.param_blocks}) for b in c.model.blocks}
    c.torch_fn()(**blocks).backward()
    block = {s.key: s.name for s in c.slots}
    for key in ("2.weight", "0.weight", "0.bias"):
        assert torch.equal(blocks[block["fn." + key]].grad, net.get_parameter(key).grad), key


def test_a_post_accumulate_grad_hook_is_refused_in_one_line_naming_the_parameter():
    net = _net()
    net[2].bias.register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(SymgradError) as err:
        _verify(net)
    msg = str(err.value)
    assert "\n" not in msg and "'2.bias'" in msg and "register_post_accumulate_grad_hook" in msg
    assert "remove it" in msg


def test_the_gpt_layout_path_carries_a_hook_and_names_the_parameter():
    from_cfg = {"vocab_size": 6, "context_length": 3, "emb_dim": 4, "n_heads": 2,
                "n_layers": 1, "drop_rate": 0.1, "qkv_bias": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = book.GPTModel(from_cfg).double()
    name = "trf_blocks.0.ff.layers.0.weight"
    module.get_parameter(name).register_hook(lambda g: g * (1 + 1e-9))
    r = sg.verify(tiny_gpt(from_cfg), module=module, samples=2, seed=0)
    assert r.verdict == "fail", r
    assert {f.output.split("[")[0] for f in r.findings("failures") if f.backend == "module"} \
        == {f"d/d{name}"}
    module.get_parameter(name)._backward_hooks.clear()
    module.get_parameter(name).register_hook(lambda g: g)
    assert sg.verify(tiny_gpt(from_cfg), module=module, samples=2, seed=0).ok
    with pytest.raises(SymgradError, match=r"'out_head\.weight' has a post-accumulate-grad hook"):
        module.get_parameter("out_head.weight").register_post_accumulate_grad_hook(print)
        sg.verify(tiny_gpt(from_cfg), module=module, samples=2, seed=0)


def _verify_input(x, **kw):
    return sg.verify(module=_net(), inputs=x, targets=_data()[1],
                     loss=F.binary_cross_entropy_with_logits, samples=2, **kw)


@pytest.mark.parametrize("factor", [1.5, 1 + 1e-9])
def test_a_hook_on_an_input_passed_to_verify_module_fails_naming_it(factor):
    x = _data()[0].requires_grad_(True)
    x.register_hook(lambda g: g * factor)
    r = _verify_input(x)
    assert r.verdict == "fail", r
    assert _failing(r) == {"d/dinput"}  # Sequential's argument: input
    assert "input[" in r.findings("failures")[0].message()
    assert len(x._backward_hooks) == 1 and x.grad is None  # the user's tensor left alone


@pytest.mark.parametrize("hook", [lambda g: g, lambda g: None, lambda g: g.clamp(-9, 9)])
def test_an_identity_or_unbinding_clip_hook_on_an_input_passes(hook):
    x = _data()[0].requires_grad_(True)
    x.register_hook(hook)
    assert _verify_input(x).ok


@pytest.mark.parametrize("bound, ok", [(1e-3, False), (9.0, True)])
def test_an_input_clipping_hook_sees_and_returns_what_backward_would(bound, ok):
    """The gradient of the input that symgrad's eager run produces is, at the example point,
    bit for bit what ``loss.backward()`` leaves in ``x.grad`` under the same hook (a clip
    that binds changes the gradient: fail; one that does not: ok)."""
    seen = []

    def clip(g):
        seen.append(g.clamp(-bound, bound))
        return seen[-1]
    x, y = _data()
    x.requires_grad_(True)
    x.register_hook(clip)
    F.binary_cross_entropy_with_logits(_net()(x), y).backward()
    expected, seen[:] = x.grad.clone(), []
    x.grad = None
    r = _verify_input(x)
    assert r.ok is ok, r
    assert any(torch.equal(s, expected) for s in seen)  # the example point's run
    assert (expected.abs().max() == bound) is not ok  # the clip bound where it failed


def test_a_post_accumulate_grad_hook_on_an_input_is_refused_naming_it():
    x = _data()[0].requires_grad_(True)
    x.register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(SymgradError) as err:
        _verify_input(x)
    assert "\n" not in str(err.value) and "'input' has a post-accumulate-grad hook" in str(
        err.value)
    with pytest.raises(SymgradError, match=r"'x' has a post-accumulate-grad hook"):
        sg.gradcheck(lambda x: torch.tanh(x).sum(), (x,))
