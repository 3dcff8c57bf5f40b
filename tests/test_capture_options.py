"""sg.verify(module=, inputs=) and sg.gradcheck options (issue 18): a dict given as inputs= is
refused in one line that gives the tuple to pass; frozen= ("check", the default, or "hold")
decides whether requires_grad=False parameters are checked; a failing sample is saved as a
.pt file that runs the failure again (the same gradient, bit for bit)."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn as nn

import symgrad as sg
from symgrad.errors import KeywordError
from symgrad.modules import replay

F64 = torch.float64


def _x(*shape, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(grad)


class Gate(nn.Module):
    def forward(self, x, mask):
        return torch.tanh(x) * mask


# ------------------------------------------------------------------------ dict as inputs=
def test_a_dict_as_inputs_is_refused_with_the_tuple_in_forwards_order():
    d = {"mask": _x(2, 3, seed=1), "x": _x(2, 3, grad=True)}
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(module=Gate(), inputs=d)
    text = str(err.value)
    assert "\n" not in text and text.startswith("verify: inputs= is a dict (keys 'mask', 'x')")
    assert "Gate.forward's order, e.g. inputs=(d['x'], d['mask'])" in text


def test_a_dict_as_targets_is_refused_naming_targets():
    with pytest.raises(sg.SymgradError, match=r"^verify: targets= is a dict .* the order "
                       r"loss\(output, \*targets\) takes them"):
        sg.verify(module=nn.Linear(3, 2).double(), inputs=_x(2, 3), targets={"y": _x(2, 2)},
                  loss=nn.functional.mse_loss)


# ------------------------------------------------------------------------------- frozen=
class Scaled(torch.autograd.Function):
    """x * w with the weight's gradient twice what it is (the planted bug)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, 2 * (g * x).sum(0)


class Frozen(nn.Module):
    """A trainable linear layer, then a frozen scale whose backward (to the scale) is wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.scale = nn.Parameter(torch.tensor([0.5, 1.5, -2.0]), requires_grad=False)

    def forward(self, x):
        return Scaled.apply(torch.tanh(self.lin(x)), self.scale).pow(2).mean()


def _frozen() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Frozen().double()


def test_frozen_parameters_are_checked_by_default_and_named():
    r = sg.verify(module=_frozen(), inputs=_x(4, 3), samples=2)
    assert r.verdict == "fail" and {f.output for f in r.failures} == {"d/dscale[0]",
                                                                       "d/dscale[1]",
                                                                       "d/dscale[2]"}
    assert any("frozen parameter(s) (requires_grad=False: scale) are checked as if trainable"
               in n for n in r.notes)


def test_frozen_hold_holds_them_and_still_checks_the_trainable_ones():
    m = _frozen()
    r = sg.verify(module=m, inputs=_x(4, 3), samples=2, frozen="hold")
    assert r.ok, r
    assert "d/dscale[0]" not in r.outputs and "d/dlin.weight[0, 0]" in r.outputs
    assert any('held at their values (frozen="hold")' in n for n in r.notes)
    m.lin.weight.register_hook(lambda g: g * (1 + 1e-9))  # a trainable one: still caught
    r = sg.verify(module=m, inputs=_x(4, 3), samples=2, frozen="hold")
    assert r.verdict == "fail" and {f.output[3:].partition("[")[0] for f in r.failures} == {
        "lin.weight"}


def test_gradcheck_takes_frozen_too():
    with pytest.raises(sg.GradcheckError, match=r"with respect to scale\["):
        sg.gradcheck(_frozen(), (_x(4, 3),), samples=2)
    assert sg.gradcheck(_frozen(), (_x(4, 3),), samples=2, frozen="hold")


@pytest.mark.parametrize("call", ["verify", "gradcheck"])
def test_a_bad_frozen_value_is_one_line(call):
    with pytest.raises(sg.SymgradError, match=r"^\w+: frozen='skip' is not an option; "
                       r"frozen=\"check\" .* or frozen=\"hold\""):
        if call == "verify":
            sg.verify(module=_frozen(), inputs=_x(4, 3), frozen="skip")
        else:
            sg.gradcheck(_frozen(), (_x(4, 3),), frozen="skip")


def test_frozen_without_inputs_is_refused():
    with pytest.raises(sg.SymgradError, match="frozen= goes with module= and inputs="):
        sg.verify(sg.zoo.get("neuron"), module=_frozen(), frozen="hold")


# --------------------------------------------------------------- the failing sample, saved
def test_a_failing_sample_is_saved_and_runs_the_failure_again(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    clean = copy.deepcopy(m)
    m[0].weight.register_hook(lambda g: g * (1 + 1e-9))
    loss = lambda out, y: (out - y).pow(2).mean()  # noqa: E731
    r = sg.verify(module=m, inputs=_x(5, 3), targets=_x(5, 1, seed=2), loss=loss)
    assert r.verdict == "fail"
    f = next(f for f in r.failures if f.sample > 0)  # a point around the example
    path = f.point["file"]
    assert path.startswith(str(tmp_path)) and f"file='{path}'" in f.message()
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".pt"]  # no half-written file
    entry = tuple(int(i) for i in f.output.partition("[")[2].rstrip("]").split(","))
    for module, want in ((m, f.got), (clean, f.expected)):
        p = torch.load(path)
        module.load_state_dict(p["state"], strict=False)
        module.zero_grad()
        loss(module(*p["inputs"]), *p["targets"]).backward()
        got = float(module[0].weight.grad[entry])
        assert abs(got - want) <= 1e-14 * abs(want), (got, want)  # the same gradient again
    assert any("saved" in n and "torch.load(path)" in n for n in r.notes)


def test_an_undecided_sample_is_saved_as_undecided_not_failing(tmp_path, monkeypatch):
    """newuser8: an inconclusive run (none failing) said "note: failing sample(s) 0 saved".
    Here dL/dweight is a float32 cancellation (residuals -0.1, +0.1 on inputs one ulp apart):
    its exact value is below its allowance, so the entries are undecided, not failing."""
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.75, -0.5]]))
    x = torch.tensor([[1.0, 1.0], [1.0 + 2 ** -23, 1.0]])
    y = torch.tensor([[0.25 + 0.1], [0.25 - 0.1]])
    r = sg.verify(module=lin, inputs=x, targets=y, loss=lambda o, t: ((o - t) ** 2).sum(),
                  dtype="float32", samples=1)
    assert r.verdict == "inconclusive" and not r.failures and r.undecided
    saved = [n for n in r.notes if "saved" in n]
    assert len(saved) == 1 and saved[0].startswith("undecided sample(s) 0 saved"), r.notes
    assert "failing sample" not in str(r), str(r)


# ------------------------------------------------------------------------ a misspelled keyword
def test_a_misspelled_gradcheck_keyword_names_the_one_it_meant():
    """newuser7: ``raise_exeption=False`` was "unexpected keyword argument(s)
    ['raise_exeption']", naming no fix; torch's own keywords stay accepted (and ignored).
    api23: it is symgrad's one-line KeywordError (still a TypeError), as sg.verify's."""
    x = _x(3, grad=True)
    with pytest.raises(KeywordError) as err:
        sg.gradcheck(torch.tanh, (x,), raise_exeption=False)
    assert ("gradcheck: unknown keyword 'raise_exeption' (did you mean 'raise_exception'?); "
            "its keywords: func, inputs, dtype, samples, ") in str(err.value)
    with pytest.raises(TypeError, match=r"^gradgradcheck: unknown keyword 'fastmode' \(did you "
                       r"mean 'fast_mode'\?\)"):
        sg.gradgradcheck(torch.tanh, (x,), fastmode=True)
    with pytest.raises(KeywordError, match=r"'tolerance'; its keywords: func, inputs, dtype, "
                       r".*; torch.autograd.gradcheck's own, accepted and ignored: atol, "):
        sg.gradcheck(torch.tanh, (x,), tolerance=1)  # nothing near: the keywords it has
    own = [n for n, p in inspect.signature(sg.gradcheck).parameters.items()
           if p.kind is not p.VAR_KEYWORD]
    assert f"its keywords: {', '.join(own)};" in str(err.value)  # the line's list: the signature
    assert sg.gradcheck(torch.tanh, (x,), eps=1e-6, atol=1e-5, fast_mode=True)  # torch's: kept


# ------------------------------------------------------------------------------- train=
def test_train_that_is_not_a_bool_or_has_no_module_is_one_line():
    """newuser7: train="yes" reached torch's "training mode is expected to be boolean" (a
    ValueError from nn.Module.train, naming no symgrad option); train=True with a model and no
    module= was silently ignored."""
    m = nn.Linear(3, 2).double().eval()
    with pytest.raises(sg.SymgradError, match=r"^verify: train= is True .* got 'yes'$"):
        sg.verify(module=m, inputs=_x(2, 3), train="yes")
    assert not m.training  # refused before anything ran
    with pytest.raises(sg.SymgradError, match=r"^verify: train=True runs module= in train mode"):
        sg.verify(sg.zoo.get("neuron"), train=True, samples=4)
