"""Capture (torch.export -> tensor program) and ``symgrad.gradcheck``: planted wrong backwards
that must be caught, correct code at kinks and in float32 that must pass, and the refusals."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.export import QUIET_LOGGERS, quiet_logs
from symgrad.testing import scale_backward
from symgrad.capture import ops_page
from symgrad.capture.aten import TABLE
from tests.clients import scaled_square


def _x(*shape, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 5), nn.Linear(5, 2)

    def forward(self, x):
        return F.log_softmax(self.l2(torch.tanh(self.l1(x))), -1).sum()


def attention(x, Wq, Wk, g, b):
    """A LayerNorm, then causal softmax attention with a -inf mask."""
    h = F.layer_norm(x, (x.shape[-1],), g, b)
    q, k = h @ Wq.T, h @ Wk.T
    s = (q @ k.T) / math.sqrt(q.shape[-1])
    mask = torch.tril(torch.ones(x.shape[0], x.shape[0], dtype=torch.bool))
    return F.softmax(s.masked_fill(~mask, float("-inf")), -1) @ h


Square = scaled_square(1.0)  # x^2 with its correct custom backward
ScaledSquare = scaled_square(1 + 1e-7)  # the planted bug: the backward off by a factor 1 + 1e-7


class Relu(torch.autograd.Function):
    at_zero = 0.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        d = torch.where(x > 0, 1.0, 0.0).to(g.dtype)
        return g * torch.where(x == 0, torch.full_like(d, Relu.at_zero), d)


class ReluAtZeroTwo(Relu):  # the planted bug: relu'(0) = 2
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        d = torch.where(x > 0, 1.0, 0.0).to(g.dtype)
        return g * torch.where(x == 0, torch.full_like(d, 2.0), d)


KINKS = torch.tensor([-1.5, 0.0, 0.0, 2.0, 0.25], dtype=torch.float64)


# ------------------------------------------------------------------------ capture itself
def test_module_blocks_are_its_parameter_names():
    c = sg.capture(MLP().double(), (_x(4, 3, grad=False),))
    assert [b.name for b in c.model.param_blocks] == ["l1_weight", "l1_bias", "l2_weight",
                                                      "l2_bias"]
    assert [b.name for b in c.model.input_blocks] == ["x"]
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(2), backends=("torch_fn",))
    assert r.ok, r


def test_module_with_scaled_backward_fails_on_its_parameter():
    class Bad(MLP):
        def forward(self, x):
            return ScaledSquare.apply(self.l1(x)).sum()
    c = sg.capture(Bad().double(), (_x(4, 3, grad=False),))
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(2), backends=("torch_fn",))
    assert r.verdict == "fail"
    assert {f.output.split("[")[0] for f in r.failures} <= {"d/dl1_weight", "d/dl1_bias"}


# ------------------------------------------------------------------------ gradcheck: bugs
def test_scaled_backward_passes_torch_gradcheck_but_not_symgrad():
    x = _x(6)
    assert torch.autograd.gradcheck(ScaledSquare.apply, (x,))  # finite differences miss it
    with pytest.raises(sg.GradcheckError, match=r"ScaledSquare.*\n.*gradient with respect to x\["):
        sg.gradcheck(ScaledSquare.apply, (x,))
    assert sg.gradcheck(ScaledSquare.apply, (x,), raise_exception=False) is False


def test_relu_backward_two_at_zero_is_caught():
    with pytest.raises(sg.GradcheckError, match=r"x\[1\].*outside the subdifferential"):
        sg.gradcheck(ReluAtZeroTwo.apply, (KINKS.clone().requires_grad_(),))


def test_gradcheck_error_is_a_runtime_error():
    assert issubclass(sg.GradcheckError, RuntimeError)


# ------------------------------------------------------------------------ gradcheck: correct
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_relu_at_a_kink_passes(dtype):
    x = KINKS.to(dtype).requires_grad_()
    assert sg.gradcheck(torch.relu, (x,))
    assert sg.gradcheck(Relu.apply, (x,))  # a custom Function choosing 0 at the kink


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_correct_custom_function_passes(dtype):
    assert sg.gradcheck(Square.apply, (_x(6, dtype=dtype),))


def test_float32_function_passes():
    def mlp(x, W1, W2):
        return F.softmax(torch.tanh(x @ W1.T) @ W2.T, -1)  # non-scalar: a random cotangent

    args = tuple(_x(*s, dtype=torch.float32, seed=i) for i, s in enumerate([(4, 3), (5, 3),
                                                                             (2, 5)]))
    assert sg.gradcheck(mlp, args)


def test_float32_attention_is_no_false_alarm_and_names_every_argument():
    args = tuple(_x(*s, dtype=torch.float32, seed=i)
                 for i, s in enumerate([(4, 6), (3, 6), (3, 6), (6,), (6,)]))
    c = sg.capture(attention, args)
    assert [b.name for b in c.model.param_blocks] == ["x", "Wq", "Wk", "g", "b"]
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(4, vary=["x", "Wq", "Wk", "g", "b"]),
                  dtype="float32", backends=("torch_fn",))
    # float32 cannot resolve every entry of a LayerNorm's cancelling gradient: some may be
    # inconclusive (gradcheck then raises saying so), none may fail
    assert r.verdict in ("pass", "inconclusive"), r


def test_float64_attention_passes():
    args = tuple(_x(*s, seed=i) for i, s in enumerate([(4, 6), (3, 6), (3, 6), (6,), (6,)]))
    assert sg.gradcheck(attention, args, samples=2)


def test_integer_input_and_several_outputs():
    def fn(W, ids, t):
        h = F.embedding(ids, W)
        return F.cross_entropy(h, t), torch.sigmoid(h), t + 1

    W, ids, t = _x(7, 4), torch.tensor([1, 5, 5, 0]), torch.tensor([2, 0, 3, 3])
    assert sg.gradcheck(fn, (W, ids, t))


def test_module_parameters_are_checked_by_their_names():
    """A bug only in a parameter's backward: torch.autograd.gradcheck checks the inputs only
    and passes it; symgrad.gradcheck checks the module's trainable parameters too (found by
    a new-user trial: it passed silently), and parameters=False holds them as torch does."""
    class Bad(MLP):
        def forward(self, x):
            return self.l2(torch.tanh(x @ scale_backward(self.l1.weight, 1.01).T
                                      + self.l1.bias)).sum()
    m, x = Bad().double(), _x(4, 3)
    assert torch.autograd.gradcheck(m, (x,))
    with pytest.raises(sg.GradcheckError, match=r"l1\.weight\[\d+, \d+\]"):
        sg.gradcheck(m, (x,))
    assert sg.gradcheck(m, (x,), parameters=False)
    with pytest.raises(sg.GradcheckError, match=r"l1\.weight\[\d+, \d+\]"):  # x need not require grad
        sg.gradcheck(m, (x.detach(),))
    assert sg.gradcheck(MLP().double(), (x,))
    c = sg.capture(m, (x,), module_params="input")
    assert [b.name for b in c.model.param_blocks] == ["x"]


# ------------------------------------------------------------------------ refusals
def test_unsupported_op_names_the_op_and_the_source_line():
    def fn(x):
        return torch.cumprod(x, 0).sum()  # the unsupported line

    with pytest.raises(sg.SymgradError) as err:
        sg.gradcheck(fn, (_x(5),))
    msg = str(err.value)
    assert "\n" not in msg
    assert "aten.cumprod" in msg and "test_capture.py" in msg and "the unsupported line" in msg


def test_untraceable_code_is_refused_in_one_line():
    def fn(x):
        return x.sum() if x.sum().item() > 0 else -x.sum()

    with pytest.raises(sg.SymgradError, match="torch.export cannot trace 'fn'") as err:
        sg.gradcheck(fn, (_x(3),))
    assert "\n" not in str(err.value)


def test_no_input_requires_grad():
    with pytest.raises(sg.SymgradError, match="requires_grad"):
        sg.gradcheck(torch.tanh, (_x(3, grad=False),))


def test_the_table_holds_the_first_ops():
    aten = torch.ops.aten
    for op in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten._softmax.default,
               aten._log_softmax.default, aten.native_layer_norm.default, aten.where.self,
               aten.embedding.default, aten.gather.default, aten.gelu.default):
        assert op in TABLE


def test_committed_ops_page_is_generated_from_the_table():
    page = (Path(__file__).resolve().parents[1] / "reports" / "capture_ops.md").read_text()
    assert page == ops_page.page(), "run scripts/capture_ops.py"
    assert all(f"`{op}`" in page for op in TABLE)


# ------------------------------------------------------------------------ opaque kernels
class NumpyTanh(torch.autograd.Function):
    """An opaque kernel: its forward leaves torch (export cannot see through it)."""

    scale = 1.0

    @staticmethod
    def forward(ctx, x):
        y = torch.from_numpy(np.tanh(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y) * NumpyTanh.scale


def test_opaque_kernel_is_refused_pointing_to_reference():
    with pytest.raises(sg.SymgradError, match="cannot trace 'NumpyTanh'.*reference="):
        sg.gradcheck(NumpyTanh.apply, (_x(5),))


def test_opaque_kernel_checked_against_a_reference(monkeypatch):
    x = _x(5)
    assert sg.gradcheck(NumpyTanh.apply, (x,), reference=torch.tanh)
    monkeypatch.setattr(NumpyTanh, "scale", 1 + 1e-7)
    with pytest.raises(sg.GradcheckError, match=r"'NumpyTanh'.*\n.*gradient with respect to x\["):
        sg.gradcheck(NumpyTanh.apply, (x,), reference=torch.tanh)


def test_a_reference_with_another_forward_is_caught_in_the_value():
    with pytest.raises(sg.GradcheckError, match="the loss value"):
        sg.gradcheck(NumpyTanh.apply, (_x(5),), reference=torch.sin)


def test_float_equality_is_refused():
    with pytest.raises(sg.SymgradError, match="== / != on a float tensor.*aten.eq"):
        sg.gradcheck(lambda x: torch.where(x == 0, x, 2 * x), (_x(3),))


def test_softplus_threshold_is_captured_as_a_branch():
    # torch's softplus returns x above threshold 20: a where() on x > 20, captured as a
    # Piecewise of log1p (a function row of symgrad.functions), so x = 25 is exact too
    x = torch.tensor([-3.0, 0.5, 19.0, 25.0], dtype=torch.float64, requires_grad=True)
    assert sg.gradcheck(F.softplus, (x,))
    assert torch.ops.aten.log1p.default in TABLE


class LeaksIntoY(torch.autograd.Function):
    """The planted bug: the forward ignores y, the backward gives y a gradient."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos(), g


def test_a_gradient_for_an_unused_input_is_caught():
    x, y = _x(3), _x(3, seed=1)
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(LeaksIntoY.apply, (x, y))
    findings = str(err.value).splitlines()[1:]
    assert findings and all("with respect to y[" in f for f in findings
                            if "more" not in f and "note:" not in f)
    assert sg.gradcheck(lambda x, y: x.sin(), (x, y))  # unused and no gradient: fine


def test_torch_gradcheck_keywords_are_accepted():
    x = _x(4)
    assert sg.gradcheck(torch.tanh, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
    with pytest.raises(TypeError, match="tolerance"):
        sg.gradcheck(torch.tanh, (x,), tolerance=1)


def test_random_ops_are_refused_not_folded():
    with pytest.raises(sg.SymgradError, match="native_dropout.*random.*F.dropout.*eval()"):
        sg.gradcheck(lambda x: torch.dropout(x, 0.5, True).sum(), (_x(2, 3),))  # below
    #   F.dropout: symgrad cannot feed it (train-mode nn.Dropout is fed: test_capture_dropout)
    with pytest.raises(sg.SymgradError, match=r"aten.rand.* draws random numbers"):
        sg.gradcheck(lambda x: (x * torch.rand(3, dtype=x.dtype)).sum(), (_x(3),))
    assert sg.gradcheck(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)).double().eval(),
                        (_x(2, 3),))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ties_in_max_pass(dtype):
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0], [0.5, 0.5, -1.0, 0.5]], dtype=dtype,
                     requires_grad=True)
    assert sg.gradcheck(lambda x: x.amax(-1), (x,))  # torch splits the gradient evenly
    assert sg.gradcheck(lambda x: x.max(-1).values, (x,))  # torch picks one entry
    assert sg.gradcheck(lambda x: F.max_pool1d(x[None], 2, 1), (x,))


class MaxBothTies(torch.autograd.Function):
    """The planted bug: at a tie, the gradient goes in full to every tied entry."""

    @staticmethod
    def forward(ctx, x):
        y = x.amax(-1)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g[..., None] * (x == y[..., None]).to(g.dtype)


def test_a_tie_given_twice_its_gradient_is_caught():
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0]], dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.GradcheckError, match=r"x\[0, [12]\]"):
        sg.gradcheck(MaxBothTies.apply, (x,))
    assert sg.gradcheck(MaxBothTies.apply, (torch.tensor([[1.0, 3.0, 2.5]], dtype=torch.float64,
                                                         requires_grad=True),))


# ------------------------------------------------------------------------ second order
class Cube(torch.autograd.Function):
    """x^3 whose backward is written with torch ops (so torch can differentiate it again)."""

    scale = 1.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x * x * Cube.scale


def test_gradgradcheck_catches_a_scaled_double_backward(monkeypatch):
    x, W = _x(5), _x(3, 5, seed=1)
    assert sg.gradgradcheck(lambda x, W: torch.tanh(W @ x), (x, W))
    assert sg.gradgradcheck(Cube.apply, (x,))
    monkeypatch.setattr(Cube, "scale", 1 + 1e-7)
    assert torch.autograd.gradgradcheck(Cube.apply, (x,))  # finite differences miss it
    with pytest.raises(sg.GradcheckError, match=r"gradgradcheck: the double backward of "
                                                r"'Cube'.*\n.*Hessian-vector product.* x\["):
        sg.gradgradcheck(Cube.apply, (x,))


def test_token_ids_are_an_integer_input_with_the_table_range():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.E, self.head = nn.Embedding(7, 4), nn.Linear(4, 7)

        def forward(self, ids, targets):
            return F.cross_entropy(self.head(torch.tanh(self.E(ids))), targets)

    c = sg.capture(Tiny().double(), (torch.tensor([1, 5, 5, 0]), torch.tensor([2, 0, 3, 3])))
    ids = c.model.input_blocks[0]
    assert (ids.name, ids.domain) == ("ids", sg.Integers(0, 6))  # targets: held (folded)
    r = sg.verify(c.model, torch_fn=c.torch_fn(), samples=3, backends=("torch_fn",))
    assert r.ok, r  # drawn ids, not only the example's


def test_gradcheck_names_a_shape_mistake_and_accepts_torch_dtypes(capfd):
    W = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.SymgradError, match=r"^gradcheck\(<lambda>\): running it on inputs= "
                       r"raised RuntimeError: .*check inputs= \(shapes \(3, 2\), \(3,\)\)$"):
        sg.gradcheck(lambda W, x: torch.tanh(W @ x).sum(), (W, torch.randn(3, dtype=W.dtype)))
    assert "Traceback" not in capfd.readouterr().err
    assert sg.gradcheck(lambda W, x: torch.tanh(W @ x).sum(), (W, torch.randn(2)),
                        dtype=torch.float64)
    assert sg.gradcheck(torch.tanh, (W,), dtype="torch.float64")


def test_export_loggers_are_quiet_while_tracing_and_restored_after():
    lg = logging.getLogger(QUIET_LOGGERS[0])
    before = lg.level
    with quiet_logs():
        assert not lg.isEnabledFor(logging.ERROR)
    assert lg.level == before
