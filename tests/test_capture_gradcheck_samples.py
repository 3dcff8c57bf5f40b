"""sg.gradcheck's leftovers (issue 18, capture22): a failing gradcheck saves its failing
samples as sg.verify(module=) does (one .pt per sample, written atomically, named in each
finding's line with how to run it again, and running it again gives the same gradient); a
module finding whose sample was not saved says the run that draws it again (seed and samples:
sample k's draws depend on both); and a module whose forward clamps a norm below eps gets the
named cause that a torch_fn gets ("norm's eps clamp not differentiated")."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.modules import replay
from tests.clients import scaled_tanh

F64 = torch.float64


def _x(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(grad)


Scaled = scaled_tanh(1 + 1e-6)  # tanh with its backward scaled by 1 + 1e-6 (the planted bug)


def wrong_tanh(x, w):
    return (Scaled.apply(x) * w).sum()


def _files(text: str) -> list[str]:
    return re.findall(r"file='([^']+)'", text)


# ----------------------------------------------------------------- a failing gradcheck's file
def test_a_failing_gradcheck_saves_its_samples_and_they_run_again(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    x, w = _x(5), _x(5, seed=1, grad=False)
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(wrong_tanh, (x, w), samples=3)
    text = str(err.value)
    lines = [ln for ln in text.splitlines()[1:] if "mismatch" in ln]
    assert lines and all(_files(ln) for ln in lines), text  # every line names its file
    assert all(f.startswith(str(tmp_path)) for f in _files(text))
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".pt"]  # no half-written file
    assert ("to run one again: p = torch.load(path); sg.gradcheck(wrong_tanh, p['inputs'], "
            "samples=1)") in text, text
    f = err.value.result.failures[0]
    p = torch.load(f.point["file"])
    assert p["inputs"][0].requires_grad and not p["inputs"][1].requires_grad  # as given
    with pytest.raises(sg.GradcheckError) as again:  # the same entry, the same numbers
        sg.gradcheck(wrong_tanh, p["inputs"], samples=1)
    g = next(h for h in again.value.result.failures if h.output == f.output)
    assert (g.expected, g.got) == (f.expected, f.got)


def test_a_failing_gradcheck_of_a_module_saves_its_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    m[0].weight.register_hook(lambda g: g * (1 + 1e-9))
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(m, (_x(5, 3),), samples=2)
    text = str(err.value)
    assert "module.load_state_dict(p['state'], strict=False); sg.gradcheck(module, " in text
    f = next(f for f in err.value.result.failures if f.sample == 1)  # around the example
    p = torch.load(f.point["file"])
    assert sorted(p["state"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert not torch.equal(p["state"]["0.weight"], m[0].weight.detach())  # sample 1's own
    m.load_state_dict(p["state"], strict=False)
    with pytest.raises(sg.GradcheckError) as again:
        sg.gradcheck(m, p["inputs"], samples=1)
    g = next(h for h in again.value.result.failures if h.output == f.output)
    assert (g.expected, g.got) == (f.expected, f.got)


def test_a_passing_gradcheck_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    assert sg.gradcheck(torch.tanh, (_x(4),))
    assert sg.gradgradcheck(torch.tanh, (_x(4),), samples=2)
    assert not list(tmp_path.iterdir())


def test_a_quiet_failing_gradcheck_keeps_its_samples_as_the_raising_one(tmp_path, monkeypatch,
                                                                        caplog, capsys):
    """api23: raise_exception=False saved nothing (the raising path saves the failing samples).
    Now both save the same files; False stays silent (torch prints nothing either) and the
    error's lines, files named, are logged at INFO."""
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    args = (_x(5), _x(5, seed=1, grad=False))
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(wrong_tanh, args, samples=3)
    raised = sorted(p.name for p in tmp_path.iterdir())
    for p in tmp_path.iterdir():
        p.unlink()
    with caplog.at_level("INFO", logger="symgrad.capture.gradcheck"):
        assert sg.gradcheck(wrong_tanh, args, samples=3, raise_exception=False) is False
    quiet = sorted(p.name for p in tmp_path.iterdir())
    assert raised and quiet == raised  # the same samples, the same files (content-named)
    printed = capsys.readouterr()
    assert not printed.err and not printed.out  # nothing printed
    logged = [r for r in caplog.records if r.name == "symgrad.capture.gradcheck"]
    assert len(logged) == 1 and logged[0].levelname == "INFO"
    assert logged[0].getMessage() == str(err.value)  # the raised lines, files and all
    assert all(f in logged[0].getMessage() for f in map(str, tmp_path.iterdir()))


# ----------------------------------------------------------- an unsaved finding's reproduction
def test_a_module_finding_whose_sample_is_not_saved_names_the_run_that_draws_it(tmp_path,
                                                                              monkeypatch):
    """One sample saved (SAVED_MAX = 1): the other failing samples' lines say seed= and
    samples= (a bare seed=0 drew other points at another samples=), and that run draws
    them again: the same numbers at the same sample."""
    monkeypatch.setattr(replay, "DIRECTORY", tmp_path)
    monkeypatch.setattr(replay, "SAVED_MAX", 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    m[0].weight.register_hook(lambda g: g * (1 + 1e-9))
    r = sg.verify(module=m, inputs=_x(5, 3), samples=3, seed=2)
    unsaved = [f for f in r.failures if "file" not in f.point]
    assert unsaved and all(f.point == {"seed": 2, "samples": 3} for f in unsaved)
    assert "sample values: seed=2, samples=3" in unsaved[0].message()
    again = sg.verify(module=m, inputs=_x(5, 3), samples=3, seed=2)
    f = unsaved[0]
    g = next(h for h in again.failures if (h.output, h.sample) == (f.output, f.sample))
    assert (g.expected, g.got) == (f.expected, f.got)


# ------------------------------------------------------------ the clamp cause, on every path
class Cosine(nn.Module):
    """A module whose forward clamps its input's norm (F.cosine_similarity's eps = 1e-8)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[1.0, 2.0, -0.5]], dtype=F64))

    def forward(self, x):
        return F.cosine_similarity(x, self.w).sum()


SMALL = [[3e-9, -4e-9, 1e-9]]  # |x| = 5.1e-9 < eps: the clamp active
CAUSE = "[cause: derivative wrong: norm's eps clamp not differentiated]"


def test_a_module_whose_forward_clamps_an_input_names_the_clamp():
    """It read "[cause: derivative wrong: real derivative error]" on the module path, while
    torch_fn and gradcheck named the clamp."""
    x = torch.tensor(SMALL, dtype=F64, requires_grad=True)
    r = sg.verify(module=Cosine(), inputs=x, samples=2)
    assert r.verdict == "fail"
    lines = [f.message() for f in r.failures]
    assert all(ln.startswith("module: ") and CAUSE in ln and "< eps = 1e-08" in ln
               for ln in lines), lines
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(Cosine(), (x,), samples=2)
    found = [ln for ln in str(err.value).splitlines() if "mismatch" in ln]
    assert found and all("F.cosine_similarity clamps its norms in place" in ln
                         for ln in found), found


def test_a_module_clamp_that_is_inactive_is_not_blamed():
    """Meant to fail if the clamp were named by its presence alone: the same module at
    norms ~1 with a planted 1e-6 scale on the weight's gradient is a real derivative error."""
    m = Cosine()
    m.w.register_hook(lambda g: g * (1 + 1e-6))
    r = sg.verify(module=m, inputs=_x(1, 3), samples=2)
    assert r.verdict == "fail" and r.failures
    assert all("eps clamp" not in f.message() for f in r.failures)
