"""newuser9's trial (a new user from the README only): each mistake answered in one line
naming what is wrong and the fix, and what a run does that the user may not assume said in a
note (``reports/newuser9.md``)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symgrad as sg
from symgrad.errors import SymgradError


def _x(*shape):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 3)

    def forward(self, x):
        return self.a(x)


@pytest.mark.parametrize("kwargs,want", [
    (dict(module=_Net, inputs=_x(4, 6)),
     r"^verify: module= is the class _Net, not a module; pass an instance: module=_Net\(...\)$"),
    (dict(model=_Net, inputs=_x(4, 6)), r"^verify: model= is the class _Net"),
    (dict(module=_Net().double(), inputs=_x(4, 6), targets=torch.tensor([0, 1, 2, 1]),
          loss="cross_entropy"),
     r"^verify: loss= must be a function loss\(output, \*targets\) -> scalar tensor, got str "
     r"'cross_entropy'; e\.g\. loss=torch\.nn\.functional\.cross_entropy$"),
])
def test_a_class_or_a_name_where_an_object_is_meant_is_one_line(kwargs, want):
    """A class as module= read "module= must be a torch.nn.Module, got type"; a loss named by
    a string read "running it on inputs= raised TypeError: 'str' object is not callable;
    check inputs= ..." (the inputs were fine)."""
    with pytest.raises(SymgradError, match=want):
        sg.verify(samples=2, **kwargs)


def test_an_integer_input_where_floats_are_meant_names_its_dtype():
    """torch's own words ("mixed dtype (CPU): expect parameter to have scalar type of
    Float") named no input; the shapes now carry an integer tensor's dtype."""
    with pytest.raises(SymgradError, match=r"check inputs= \(shapes \(4, 6\) int64\) / targets= "
                                           r"\(shapes \(4,\) int64\) / loss="):
        sg.verify(module=_Net().double(), inputs=torch.arange(24).view(4, 6),
                  targets=torch.tensor([0, 1, 2, 1]), loss=F.cross_entropy, samples=2)


class _Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.b(self.a(x).detach())


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.extra = nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x):
        return self.a(x).sum()


def test_a_cause_names_the_block_by_the_modules_own_name():
    """The line said "with respect to a.weight[...]" and its cause "no gradient reaches
    a_weight" (symgrad's block name)."""
    r = sg.verify(module=_Detached().double(), inputs=_x(4, 6), samples=2)
    assert r.verdict == "fail"
    causes = {f.cause for f in r.failures}
    assert any("no gradient reaches a.weight:" in c for c in causes), causes
    assert not any("a_weight" in c or "a_bias" in c for c in causes), causes


def test_a_parameter_that_does_not_reach_the_loss_is_named_in_a_note():
    """An sg.Model's unused parameter is named in a warning; a module's was a silent row of
    zeros."""
    r = sg.verify(module=_Unused().double(), inputs=_x(4, 6), samples=2)
    assert r.verdict in ("pass", "inconclusive")
    notes = [n for n in r.notes if "do not reach the loss" in n]
    assert notes == ["2 parameter(s) do not reach the loss (extra.weight, extra.bias): exact "
                     "gradient 0, torch's .grad None; if not meant, check that forward uses "
                     "them"], r.notes
    used = sg.verify(module=_Net().double(), inputs=_x(4, 6), loss=lambda o: o.sum(), samples=2)
    assert not any("do not reach the loss" in n for n in used.notes), used.notes
