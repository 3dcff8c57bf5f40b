"""Issue 18: a captured forward's stop-gradients (``.detach()``, ``.data``, ``torch.no_grad()``,
``torch.inference_mode()``) are part of the program, as autograd reads them
(``symgrad.capture.stops``): correct code that uses them passes in float64 and float32, through
``symgrad.gradcheck``, ``gradgradcheck`` and ``sg.verify(module=)``; a bug beside one still
fails, named; a detach the user should not have written is caught against ``reference=``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symgrad as sg
import symgrad.tensor.bound as bound
from symgrad.hvp_mutants import scaled_second

DTYPES = [torch.float64, torch.float32]
STOP_NOTE = "treated as stop-gradients, as autograd does"


def _x(*shape, dtype=torch.float64, seed=0, grad=True):
    x = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return x.requires_grad_(grad)


def straight_through(x):
    """A sign quantiser with the straight-through estimator: the value sign(x), gradient 1."""
    q = torch.where(x > 0, 1.0, -1.0)
    return (x + (q - x).detach()).pow(2).sum() + x.sin().sum()


def no_grad_block(x):
    with torch.no_grad():
        w = x.cos() * 2  # a constant of x
    return (x.sin() * w).sum()


def inference_block(x):
    with torch.inference_mode():
        w = x.cos() * 2
    return (x.sin() + w).sum()


def dot_data(x):
    return (x.sin() * x.data.cos()).sum()


@torch.no_grad()
def _target(x):
    return x.exp() / (1 + x.exp())


def decorated(x):
    return ((x.tanh() - _target(x)) ** 2).sum()


class Reinforce(nn.Module):
    """REINFORCE with a learned baseline: logp * (r - b).detach() + (r - b)^2."""

    def __init__(self):
        super().__init__()
        self.policy, self.baseline = nn.Linear(4, 3), nn.Linear(4, 1)

    def forward(self, x, actions, rewards):
        logp = F.log_softmax(self.policy(x), -1).gather(-1, actions[:, None])[:, 0]
        advantage = rewards - self.baseline(x)[:, 0]
        return -(logp * advantage.detach()).mean() + (advantage ** 2).mean()


class EMATeacher(nn.Module):
    """A student distilled from an EMA teacher evaluated under torch.no_grad()."""

    def __init__(self):
        super().__init__()
        self.student, self.teacher = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        with torch.no_grad():
            target = F.softmax(self.teacher(x), -1)
        return -(target * F.log_softmax(self.student(x), -1)).sum(-1).mean()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [straight_through, no_grad_block, inference_block, dot_data,
                                decorated])
def test_correct_code_with_a_stop_gradient_passes(fn, dtype):
    assert sg.gradcheck(fn, (_x(6, dtype=dtype),)) is True


class RunningCentre(nn.Module):
    """A custom norm: in train mode its running mean is updated in place under no_grad,
    then read (the update's value, no gradient through the batch mean)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("mu", torch.zeros(4))

    def forward(self, x):
        h = self.lin(x)
        if self.training:
            with torch.no_grad():
                self.mu.mul_(0.9).add_(h.mean(0) * 0.1)
        return torch.tanh(h - self.mu).sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_in_place_update_under_no_grad_keeps_its_value(dtype):
    """The tensor an in-place op writes under no_grad is the buffer itself (its update is
    read after the block); what it reads from outside is stopped. Main: a proven FAIL."""
    m = RunningCentre().to(dtype)
    r = sg.verify(module=m, inputs=_x(5, 4, dtype=dtype, grad=False), train=True,
                  dtype=str(dtype)[6:], samples=3)
    assert r.verdict == "pass", r.failures
    assert not m.mu.any(), m.mu  # the module's buffer restored after the runs


@pytest.mark.parametrize("dtype", DTYPES)
def test_reinforce_and_an_ema_teacher_pass_as_modules_with_the_line_named(dtype):
    x = _x(6, 4, dtype=dtype, grad=False)
    actions = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(1))
    rewards = _x(6, dtype=dtype, seed=2, grad=False)
    for module, inputs, line in [
            (Reinforce().to(dtype), (x, actions, rewards),
             "return -(logp * advantage.detach()).mean()"),
            (EMATeacher().to(dtype), (x,),
             "target = F.softmax(self.teacher(x), -1) (grad mode off)")]:
        r = sg.verify(module=module, inputs=inputs, dtype=str(dtype)[6:], samples=3)
        assert r.verdict == "pass", r.summary() if hasattr(r, "summary") else r.failures
        notes = [n for n in r.notes if n.startswith(STOP_NOTE)]
        assert len(notes) == 1 and "test_capture_stops.py:" in notes[0] and line in notes[0], \
            r.notes
        assert sg.gradcheck(module, inputs) is True


class _Scaled(torch.autograd.Function):
    """Identity whose backward is x (1 + 1e-6): a planted bug."""

    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        return g * (1 + 1e-6)


class _DetachInside(torch.autograd.Function):
    """sin, its forward written with a .detach() (the forward is the function its own
    backward differentiates: no stop-gradient there)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.detach().sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_backward_bug_beside_a_detach_still_fails_named(dtype):
    def f(x):
        return (_Scaled.apply(x).sin() * x.cos().detach()).sum()
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(f, (_x(6, dtype=dtype),))
    text = str(err.value)
    assert "gradient with respect to x[" in text and "cause: derivative wrong" in text, text
    assert f"note: {STOP_NOTE}" in text and "x.cos().detach()" in text, text


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_detach_inside_a_custom_functions_forward_is_no_stop_gradient(dtype):
    assert sg.gradcheck(_DetachInside.apply, (_x(6, dtype=dtype),)) is True


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_custom_function_inside_a_no_grad_block_is_a_constant(dtype):
    """Its forward runs with grad off anyway (torch's own switch, not the user's); inside
    the user's no_grad block its result is a constant of x, as autograd makes it."""
    def f(x):
        with torch.no_grad():
            w = _DetachInside.apply(x)
        return (w * x).sum() + _DetachInside.apply(x).sum()
    assert sg.gradcheck(f, (_x(6, dtype=dtype),)) is True


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_detach_is_caught_against_an_independent_reference(dtype):
    """``s.detach()`` where the gradient should flow: the program as written passes (its
    derivative has none there); ``reference=`` the intended program names s."""
    def written(x, s):
        return (x * s.detach()).sin().sum()

    def meant(x, s):
        return (x * s).sin().sum()
    args = (_x(6, dtype=dtype), _x(6, dtype=dtype, seed=1))
    assert sg.gradcheck(written, args) is True
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(written, args, reference=meant)
    text = str(err.value)
    assert "gradient with respect to s[" in text and "no gradient reaches s" in text, text
    assert "x[" not in text.split("\n")[1], text


@pytest.mark.parametrize("dtype", DTYPES)
def test_second_order_through_a_stop_gradient(dtype):
    """The HVP path: second order through a stop-gradient is zero; correct code passes, a
    second derivative x (1 + 1e-6) beside the detach fails."""
    def h(x):
        return ((x.sin() * x.detach().exp()).sum()
                + (x + (torch.where(x > 0, 1.0, -1.0) - x).detach()).pow(3).sum())
    x = _x(6, dtype=dtype)
    assert sg.gradgradcheck(h, (x,)) is True
    bad = scaled_second(torch.sin, 1 + 1e-6)

    def wrong(x):
        return (bad(x) * x.detach().exp()).sum()
    with pytest.raises(sg.GradcheckError, match="double backward"):
        sg.gradgradcheck(wrong, (x,), dtype=torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_stopped_values_rounding_is_allowed_for(dtype, monkeypatch):
    """x * (e^y - e^x).detach() with y near x: the detached difference cancels, its rounding
    error is most of its value, and the gradient is that value. The bound carries the
    operand's error through a user's stop-gradient (``bound._b_stop``): a pass; with the
    softmax shift's rule (no error) the same entries are out of bounds (not a pass)."""
    def cancel(x, y):
        return (x * (y.exp() - x.exp()).detach()).sum()
    x = _x(6, dtype=dtype)
    y = x.detach() * (1 + (1e-5 if dtype == torch.float32 else 1e-13))
    assert sg.gradcheck(cancel, (x, y)) is True
    monkeypatch.setitem(bound.RULES, "stop", bound._b_zero)
    monkeypatch.setitem(bound.SIGMA_RULES, "stop", bound._worst_rule(bound._b_zero))
    assert sg.gradcheck(cancel, (x, y), raise_exception=False) is False


def test_the_marking_mode_is_gone_after_a_capture_even_one_that_fails():
    """The mode is on only while torch.export traces (symgrad's eager runs of the user's code
    run it as written), and torch's mode stack is as it was after a failed trace too."""
    from symgrad.capture import stops
    depth = torch._C._len_torch_function_stack()

    def branch(x):
        with torch.no_grad():
            if x.sum() > 0:  # a Python branch on a value: export cannot trace it
                return x.sin().sum()
        return x.cos().sum()
    assert sg.gradcheck(no_grad_block, (_x(4),)) is True
    with pytest.raises(sg.SymgradError, match="a Python branch on a tensor's value"):
        sg.gradcheck(branch, (_x(4),))
    assert torch._C._len_torch_function_stack() == depth and not stops._MARKING


def test_a_tie_under_a_stop_gradient_is_a_kink_site(monkeypatch):
    """sign(sin(x) - 1/2).detach() at x = asin(1/2) in float64: the float difference is 0.0
    (torch takes -1), the exact one 4.6e-17 (+1), and the gradient is that value. A user's
    stop-gradient is passed through by ``sided.live``, so the tie is a kink site and torch's
    side is within rounding: a pass. With the softmax shift's rule (nothing under a stop is
    a site) the entry is out of bounds: not a pass."""
    import symgrad.tensor.sided as sided

    def f(x):
        return (x * torch.where(x.sin() - 0.5 > 0, 1.0, -1.0).detach()).sum()
    x = torch.tensor([0.5235987755982989, 0.3, -0.7], dtype=torch.float64, requires_grad=True)
    assert float(x[0].detach().sin() - 0.5) == 0.0  # the tie, in float64
    assert sg.gradcheck(f, (x,), samples=1) is True

    def shift_only(loss):
        out, stack = set(), [loss]
        while stack:
            n = stack.pop()
            if n.id not in out:
                out.add(n.id)
                stack.extend(n.args if n.op not in ("stop", "onehot") else ())
        return out
    monkeypatch.setattr(sided, "live", shift_only)
    assert sg.gradcheck(f, (x,), samples=1, raise_exception=False) is False
