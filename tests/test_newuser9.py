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


def test_gradcheck_of_a_name_or_an_integer_input_says_which_and_how():
    x = _x(4).requires_grad_()
    with pytest.raises(SymgradError, match=r"^gradcheck: func= must be a function or module, "
                                           r"got str 'tanh'; pass the callable itself"):
        sg.gradcheck("tanh", (x,))
    with pytest.raises(SymgradError, match=r"^gradcheck: reference= must be a function"):
        sg.gradcheck(torch.tanh, (x,), reference="tanh")
    with pytest.raises(SymgradError, match=r"requires_grad=True \(input 0 \(int64\): integer, "
                                           r"which cannot require grad; give a float tensor"):
        sg.gradcheck(torch.tanh, (torch.arange(4),))
    with pytest.raises(SymgradError) as err:  # a float input without grad: no integer hint
        sg.gradcheck(torch.add, (_x(4), torch.arange(4)))
    assert "integer" not in str(err.value), err.value


def test_an_integer_input_where_floats_are_meant_names_its_dtype():
    """torch's own words ("mixed dtype (CPU): expect parameter to have scalar type of
    Float") named no input; the shapes now carry an integer tensor's dtype."""
    with pytest.raises(SymgradError, match=r"check inputs= \(shapes \(4, 6\) int64\) / targets= "
                                           r"\(shapes \(4,\) int64\) / loss="):
        sg.verify(module=_Net().double(), inputs=torch.arange(24).view(4, 6),
                  targets=torch.tensor([0, 1, 2, 1]), loss=F.cross_entropy, samples=2)


class _Dropped(torch.autograd.Function):
    """Identity whose backward drops the gradient (returns zeros): a bug. (These tests used
    a forward's .detach(), which the capture now keeps as a stop-gradient: issue 18.)"""

    @staticmethod
    def forward(ctx, h):
        return h * 1.0

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g)


class _Detached(nn.Module):
    """No gradient reaches ``a``: its output goes through ``_Dropped``."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.b(_Dropped.apply(self.a(x)))


class _Stopped(_Detached):
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


def test_a_refused_op_in_a_lambda_on_the_callers_line_names_that_line_once():
    """``call = lambda: sg.gradcheck(lambda a: torch.cumprod(a, 0), (x,))`` read
    "at t.py:9 in <lambda> → t.py:9 in <lambda>: ..." (one line, two frames)."""
    x = _x(4).requires_grad_()
    call = lambda: sg.gradcheck(lambda a: torch.cumprod(a, 0) ** 2, (x,))  # noqa: E731
    with pytest.raises(SymgradError) as err:
        call()
    text = str(err.value)
    assert "aten.cumprod.default at " in text and "→" not in text, text
    assert text.count("test_newuser9.py:") == 1, text


def test_gradcheck_of_a_module_names_a_weights_hook_as_verify_does():
    """sg.verify(module=) names a failing weight's own gradient hook (newuser8); through
    sg.gradcheck(module, ...) the same planted hook failed with no word of it."""
    net = _Net().double()
    net.a.weight.register_hook(lambda g: g * (1 + 1e-9))
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(net, (_x(4, 6).requires_grad_(),))
    last = str(err.value).splitlines()[-1]
    assert last.startswith("  note: a.weight's gradient goes through a hook of yours (") and (
        "<lambda>, registered with register_hook" in last), err.value
    assert sg.gradcheck(_Net().double(), (_x(4, 6).requires_grad_(),))  # no hook, no note


def test_a_misspelled_path_and_a_backends_choice_that_does_not_apply_are_one_line():
    """paths=("eager", "compil") named no path meant; backends=("numpy",) beside module= and
    inputs= was silently ignored (only the module runs there) and the run passed."""
    kw = dict(module=_Net().double(), inputs=_x(4, 6), samples=2)
    with pytest.raises(SymgradError, match=r"^paths: unknown \['compil'\] \(did you mean "
                                           r"'compile'\?\); choose from eager, compile"):
        sg.verify(paths=("eager", "compil"), **kw)
    with pytest.raises(SymgradError, match=r"^verify: backends= chooses among a model's "
                                           r"programs .*; with module= and inputs= only your "
                                           r"module runs: drop it"):
        sg.verify(backends=("numpy",), **kw)


class _DotData(_Detached):
    def forward(self, x):
        return self.b(self.a(x).data)


def test_a_forward_reading_dot_data_is_a_stop_gradient_as_detach_is():
    """torch.export's words for it ("We found a fake tensor in the exported program
    constant's list") were followed by the opaque-kernel advice (reference=), which does not
    apply; then (newuser9) by "write .detach() there". Now .data is read as .detach() (issue
    18: the same value, no gradient, as autograd reads it) and named in the notes."""
    r = sg.verify(module=_DotData().double(), inputs=_x(4, 6), samples=2)
    assert r.verdict == "pass", r.failures
    notes = [n for n in r.notes if n.startswith("treated as stop-gradients")]
    assert len(notes) == 1 and "return self.b(self.a(x).data)" in notes[0], r.notes



def test_torchs_fake_constant_error_no_longer_blames_dot_data(monkeypatch):
    """Since .data reads as .detach() (above), torch.export's "fake tensor in the exported
    program constant's list" comes from another op it could not trace: the line says so,
    names torch's attribute, and no longer tells the user to replace .data by .detach()."""
    words = ("We found a fake tensor in the exported program constant's list. This typically "
             "means our tracing system encountered an op that we can't trace through. For the "
             "potential source, you can refer to following model attribute: lifted_tensor_0. "
             "Please file an issue on github.")

    def refuse(*args, **kwargs):
        raise RuntimeError(words)

    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(SymgradError) as err:
        sg.gradcheck(lambda a: a.tanh().sum(), (_x(3).requires_grad_(),))
    text = str(err.value)
    assert "cannot trace through and kept its value as a constant (torch calls it " \
        "lifted_tensor_0); not a .data read" in text, text
    assert "reference=" in text and "write .detach()" not in text, text

def test_two_samples_say_sample_1_not_1_to_1():
    r = sg.verify(module=_Detached().double(), inputs=_x(4, 6), samples=2)
    note = [n for n in r.notes if n.startswith("samples: 0 is the example")]
    assert note and "; 1 scales each parameter" in note[0] and "1..1" not in note[0], r.notes
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(_Detached().double(), (_x(4, 6),), samples=2)
    assert "; sample 1 scales each differentiated entry" in str(err.value), err.value


def test_an_integer_output_beside_the_value_is_skipped_as_torchs_gradcheck_skips_it():
    """``return a.tanh(), a.argmax(-1)`` read "ATen op aten.argmax.default ... is not
    supported yet" where torch.autograd.gradcheck checks the float output alone; an argmax
    the value reads (cast to float) is still refused, and a wrong backward beside the integer
    output is still caught."""
    x = _x(4, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: (a.tanh(), a.argmax(-1)), (x,))
    assert sg.gradcheck(lambda a: (a.tanh(), a.argmax(-1)), (x,))
    with pytest.raises(SymgradError, match=r"aten\.argmax\.default at .* is not supported yet"):
        sg.gradcheck(lambda a: (a.tanh(), a.argmax(-1).double()), (x,))

    class Tanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a.tanh()

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * (1 - a.tanh() ** 2) * (1 + 1e-9)
    with pytest.raises(sg.GradcheckError, match=r"disagrees with the exact derivative"):
        sg.gradcheck(lambda a: (Tanh.apply(a), a.argmax(-1)), (x,))


class _Mish(torch.autograd.Function):
    """x tanh(softplus(x)); its backward's second term x (1 - t²) sigmoid(x) written
    (1 - t)(1 + t) × (1 + 1e-9): a constant slightly off in one term."""

    @staticmethod
    def forward(ctx, x):
        t = torch.tanh(F.softplus(x))
        ctx.save_for_backward(x, t)
        return x * t

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        return g * (t + x * (1 - t) * (1 + t) * (1 + 1e-9) * torch.sigmoid(x))


def test_a_constant_off_in_one_term_is_not_called_float32_alone():
    """The scatter evidence for float32 arithmetic (relative errors of both signs and sizes)
    is also what a wrong constant on one term of a sum leaves; the cause said only "float32
    arithmetic inside the float64 backward, likely", and the user hunted for a .float()."""
    x = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(_Mish.apply, (x,))
    lines = [ln for ln in str(err.value).splitlines() if "mismatch in the gradient" in ln]
    assert lines and all("a constant slightly off in one term of the backward scatters alike"
                         in ln for ln in lines), lines


def test_gradcheck_of_a_function_or_module_class_asks_for_apply_or_an_instance():
    """sg.gradcheck(Mish, ...) read as an export failure ("Found <class ...> in output, which
    is not a known type ... register a pytree"); sg.gradcheck(Net, ...) as the class's
    __init__ raising on the inputs."""
    x = _x(5, 6).requires_grad_()
    with pytest.raises(SymgradError, match=r"^gradcheck: func= is the autograd\.Function class "
                                           r"_Mish; pass _Mish\.apply$"):
        sg.gradcheck(_Mish, (x,))
    with pytest.raises(SymgradError, match=r"^gradcheck: func= is the class _Net, not a module; "
                                           r"pass an instance: _Net\(\.\.\.\)$"):
        sg.gradcheck(_Net, (x,))


def test_a_detach_in_the_forward_is_a_stop_gradient_named_in_a_note():
    """A forward's ``.detach()`` failed as "no gradient reaches a.weight" (the capture
    differentiated through it), with a note that such failures are expected; now the exact
    derivative keeps the stop-gradient, as the user's autograd does (issue 18): a pass, the
    line named."""
    r = sg.verify(module=_Stopped().double(), inputs=_x(4, 6), samples=2)
    assert r.verdict == "pass", r.failures
    notes = [n for n in r.notes if n.startswith("treated as stop-gradients, as autograd does")]
    assert len(notes) == 1 and "test_newuser9.py:" in notes[0] and (
        "return self.b(self.a(x).detach())" in notes[0]), r.notes
    assert sg.gradcheck(lambda a: a.sin().detach() * a, (_x(4).requires_grad_(),)) is True
    with pytest.raises(sg.GradcheckError) as err:  # a bug beside it: the note in the error
        sg.gradcheck(lambda a: _Dropped.apply(a).sin() * a.detach(), (_x(4).requires_grad_(),))
    assert "\n  note: treated as stop-gradients" in str(err.value), err.value
    unrelated = sg.verify(module=_Unused().double(), inputs=_x(4, 6), samples=2)  # no detach
    assert not any("stop-gradient" in n for n in unrelated.notes), unrelated.notes