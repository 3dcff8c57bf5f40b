"""In-place forms of a stop-gradient in a captured forward (issue 18's stop-34 follow-up,
``symgrad.capture.stops``): ``t.detach_()``, ``b.data = v`` and an in-place write with grad off
to a computed tensor are honoured as autograd reads them (later reads: the new value; the
gradient: none through ``detach_``, ``b``'s own graph for the others), so correct code passes
(each was a proven FAIL before: the capture differentiated through them); a planted wrong
backward beside one is still caught; a parameter or input changed in place in the forward (its
change persists from call to call) is refused in one line naming the user's line."""

import pytest
import torch
from torch import nn

import symgrad as sg
from symgrad.capture.gradcheck import GradcheckError
from symgrad.testing import scale_backward

DTYPES = [torch.float64, torch.float32]


def _x(dtype=torch.float64, seed=0):
    x = torch.randn(3, 4, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return x.requires_grad_()


def detach_in_place(x):
    y = x.sin() * 2
    y.detach_()  # from here y is a constant of x
    return (y * x.exp()).sum()


def truncated_bptt(x):
    """A recurrent state cut with detach_ every other step (truncated backprop)."""
    h = torch.zeros(x.shape[1], dtype=x.dtype)
    out = 0
    for t in range(x.shape[0]):
        h = torch.tanh(x[t] + 0.5 * h)
        if t == 1:
            h.detach_()
        out = out + (h * h).sum()
    return out


def data_assigned(x):
    b = x * x
    b.data = x.detach().cos()  # b's values replaced; its gradient still reaches x * x
    return (b * x.sin()).sum()


def written_with_grad_off(x):
    y = x.tanh() * 3
    with torch.no_grad():
        y.mul_(0.5)  # the value halved, the gradient y's own (autograd records no mul)
        y.add_(x.cos())
    return (y * x).sum()


def view_written_with_grad_off(x):
    y = x.tanh() * 3
    with torch.no_grad():
        y[1:].mul_(0.5)  # a view's write reaches y (its storage), y's gradient its own
    return (y * x).sum()


CORRECT = {"detach_": detach_in_place, "truncated bptt": truncated_bptt,
           "b.data = v": data_assigned, "mul_/add_ under no_grad": written_with_grad_off,
           "a view's mul_ under no_grad": view_written_with_grad_off}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_in_place_forms_pass(name, dtype):
    """Meant to fail on main: each was differentiated through (a proven FAIL)."""
    assert sg.gradcheck(CORRECT[name], (_x(dtype),), samples=3, seed=0)


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_planted_wrong_backward_beside_one_is_caught(name):
    fn = CORRECT[name]
    with pytest.raises(GradcheckError) as err:
        sg.gradcheck(lambda x: fn(scale_backward(x, 1 + 1e-9)), (_x(),), samples=3, seed=0)
    text = str(err.value)
    assert "disagrees" in text.splitlines()[0] and "respect to x[" in text, text


def test_the_detach_in_place_is_named_in_the_stop_note():
    r = sg.verify(module=_Wrap(detach_in_place), inputs=_x(), samples=2)
    assert r.verdict == "pass", str(r)
    assert "y.detach_()" in str(r), str(r)


class _Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _Clipped(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-2, 2, 4, dtype=torch.float64))
        self.how = how

    def forward(self, x):
        if self.how == "no_grad":
            with torch.no_grad():
                self.w.clamp_(-1, 1)  # the user's line
        elif self.how == "data":
            self.w.data.clamp_(-1, 1)  # the user's line
        elif self.how == "view":
            with torch.no_grad():
                self.w[1:].clamp_(-1, 1)  # the user's line
        else:
            self.w.data = self.w.detach().clamp(-1, 1)  # the user's line
        return (x * self.w).sum()


@pytest.mark.parametrize("how, what", [
    ("no_grad", "clamp_ writes a parameter in place with grad off"),
    ("data", "clamp_ writes the .data of a parameter in place"),
    ("view", "clamp_ writes a view of a parameter in place with grad off"),
    ("assign", ".data = ... replaces the values of a parameter"),
])
def test_a_parameter_changed_in_the_forward_is_refused_naming_the_line(how, what):
    """Meant to fail on main: a false FAIL each (the write lost in the capture: .data.clamp_,
    a view's clamp_; or differentiated through)."""
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(_Clipped(how), (_x(),), samples=2, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"gradcheck(_Clipped): {what} at "), msg
    assert "test_capture_inplace.py:" in msg and "# the user's line" in msg, msg
    assert "persists from call to call" in msg and "(v - w).detach()" in msg, msg


def test_an_input_detached_in_place_is_refused_naming_the_line():
    def fn(x, y):
        y.detach_()  # the user's line
        return (x * y.exp()).sum()
    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (_x(), _x(seed=1)), samples=2, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("gradcheck(fn): detach_() of an input at "), msg
    assert "# the user's line" in msg and "t = t.detach()" in msg, msg


class _Decayed(nn.Module):
    """A buffer updated through .data (no gradient either way): the write reaches the buffer."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-2, 2, 4, dtype=torch.float64))
        self.register_buffer("b", torch.ones(4, dtype=torch.float64))

    def forward(self, x):
        self.b.data.mul_(0.5).add_(1.0)
        return (x * self.w * self.b).sum()


def test_a_buffer_written_through_dot_data_passes():
    """Meant to fail on main: the write went to .data's copy, so the capture read b = 1 where
    the code reads 1.5 (a proven FAIL)."""
    assert sg.gradcheck(_Decayed(), (_x(),), samples=2, seed=0)
