"""newuser10's trial of "any torch code in" (issue 18) from the README only: each stumble
answered, a test per fix that failed before it (``reports/newuser10.md``)."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symgrad as sg


def _x(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


class _SetupContext(torch.autograd.Function):
    """A ``setup_context``-style Function: its forward has no ctx."""

    @staticmethod
    def forward(x, w):
        return torch.tanh(x @ w)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1], output)

    @staticmethod
    def backward(ctx, g):
        x, w, y = ctx.saved_tensors
        gz = g * (1 - y * y)
        return gz @ w.T, x.T @ gz * (1 + 1e-9)  # w's gradient wrong


def test_a_setup_context_function_names_its_inputs_by_its_forward():
    """A setup_context Function's forward(x, w) has no ctx: the first name was dropped as if it
    were ctx, so w's wrong gradient was reported as 'input1' and x was called 'w'."""
    x, w = _x(4, 3).requires_grad_(), _x(3, 2, seed=1).requires_grad_()
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(_SetupContext.apply, (x, w))
    lines = [ln for ln in str(err.value).splitlines() if "mismatch in the gradient" in ln]
    assert lines and all("with respect to w[" in ln for ln in lines), err.value


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(9, 6)
        self.mid = nn.Linear(6, 6)
        self.out = nn.Linear(6, 9, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        return self.out(torch.tanh(self.mid(self.emb(ids))))


def test_a_tied_weight_keeps_its_own_dotted_name():
    """The tied weight's row read 'd/demb_weight' (symgrad's block name) beside 'd/dmid.weight'."""
    torch.manual_seed(0)
    ids = torch.randint(0, 9, (3, 4), generator=torch.Generator().manual_seed(0))
    r = sg.verify(module=_Tied().double(), inputs=ids, targets=ids, samples=2,
                  loss=lambda o, t: F.cross_entropy(o.flatten(0, 1), t.flatten()))
    assert r.ok
    assert [b for b, _, _ in r.blocks] == ["emb.weight", "mid.weight", "mid.bias"], r.blocks


@dataclass
class _Out:
    logits: torch.Tensor
    hidden: torch.Tensor


class _DataclassOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return _Out(logits=h * 2, hidden=h)


def test_a_dataclass_output_without_a_loss_is_checked_by_its_fields():
    """With no loss=, a forward returning a dataclass was refused as untraceable, with the
    opaque-kernel advice (reference=), which does not apply."""
    torch.manual_seed(0)
    r = sg.verify(module=_DataclassOut().double(), inputs=_x(5, 4), samples=2)
    assert r.ok, r


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


def test_a_compiled_module_is_verified_by_its_own_names_on_the_compile_path():
    """sg.verify(module=torch.compile(m)) raised torch's 'MLP does not support len()' (a
    Sequential passed, its rows named '_orig_mod.0.weight')."""
    torch.manual_seed(0)
    m = torch.compile(_MLP().double())
    r = sg.verify(module=m, inputs=_x(5, 4), targets=torch.tensor([0, 1, 2, 0, 1]),
                  loss=F.cross_entropy, samples=2)
    assert r.ok, r
    assert [b for b, _, _ in r.blocks][:2] == ["fc1.weight", "fc1.bias"], r.blocks
    assert "compile" not in r.module.skipped and any(
        "torch.compile" in n for n in r.notes), (r.module.skipped, r.notes)
    assert any("[compile]" in c for c in r.comparisons), list(r.comparisons)


@pytest.mark.slow
def test_gradcheck_of_a_compiled_module():
    torch.manual_seed(0)
    assert sg.gradcheck(torch.compile(_MLP().double()), (_x(5, 4).requires_grad_(),), samples=2)


def test_a_function_undefined_at_the_inputs_says_so_in_its_headline():
    """log of negative inputs raised 'the backward of ... disagrees with the exact derivative'
    while its lines said 'not a backend error'."""
    x = _x(6).requires_grad_()
    with pytest.raises(sg.GradcheckError) as err:
        sg.gradcheck(torch.log, (x,), samples=2)
    head = str(err.value).splitlines()[0]
    assert "undefined" in head and "disagrees" not in head, head


def test_a_complex_input_is_named_not_a_dtype_never_given():
    """A complex128 input read "dtype=torch.complex128 is not supported" with no dtype= given."""
    z = torch.randn(4, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    with pytest.raises(sg.SymgradError, match=r"^gradcheck\(<lambda>\): input a is complex128: "
                                              r"complex inputs are not supported"):
        sg.gradcheck(lambda a: (a * a.conj()).real, (z.requires_grad_(),))


class _Leaky(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 8), act, nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.1), nn.ReLU6(), nn.Hardtanh(-0.5, 0.5)],
                         ids=["leaky_relu", "relu6", "hardtanh"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_leaky_relu_and_hardtanh_are_captured(act, dtype):
    """nn.LeakyReLU, nn.Hardtanh and nn.ReLU6 were refused ('ATen op aten.leaky_relu.default /
    aten.hardtanh.default is not supported yet'); correct code passes in both dtypes, a planted
    weight-gradient bug beside them is caught."""
    torch.manual_seed(0)
    t = getattr(torch, dtype)
    m = _Leaky(act).to(t)
    x = (_x(5, 6) * 3).to(t)
    y = torch.tensor([0, 1, 2, 3, 0])
    assert sg.verify(module=m, inputs=x, targets=y, loss=F.cross_entropy, dtype=dtype).ok
    m.fc1.weight.register_hook(lambda g: g * 1.001)
    r = sg.verify(module=m, inputs=x, targets=y, loss=F.cross_entropy, dtype=dtype, samples=2)
    assert r.verdict == "fail" and all("fc1.weight" in f.output for f in r.failures), r


def test_leaky_relu_gradcheck_at_its_kink():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.0, 0.25, 3.0], dtype=torch.float32, requires_grad=True)
    assert sg.gradcheck(lambda a: F.leaky_relu(a, 0.2) * 3, (x,))
    assert sg.gradcheck(F.relu6, (torch.tensor([-1.0, 0.0, 3.0, 6.0, 7.0],
                                               dtype=torch.float64, requires_grad=True),))


def test_a_value_mask_index_is_one_line_with_the_rewrite():
    """x[x > 0] raised "AttributeError: 'Pred' object has no attribute 'dtype'"."""
    x = _x(5, 4).requires_grad_()
    with pytest.raises(sg.SymgradError, match=r"bool mask computed from a parameter or float "
                                              r"input .* torch\.where\(mask, x, 0\)"):
        sg.gradcheck(lambda a: a[a > 0].sum(), (x,))
    assert sg.gradcheck(lambda a: torch.where(a > 0, a, 0).sum(), (x,))
    keep = torch.tensor([True, False, True, True, False])  # a known mask: still supported
    assert sg.gradcheck(lambda a, k: a[k].exp().sum(), (x, keep))


class _Once(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sigmoid()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = x.sigmoid()
        return g * s * (1 - s)


def test_gradgradcheck_of_a_once_differentiable_backward_names_the_decorator():
    """A @once_differentiable backward failed gradgradcheck as "real second-derivative error,
    got 0.0", with no word of why; its first order passes."""
    x = _x(3, 4).requires_grad_()
    assert sg.gradcheck(lambda a: _Once.apply(a) * 2, (x,), samples=2)
    with pytest.raises(sg.GradcheckError, match=r"note: the backward of the custom autograd"
                                                r"\.Function '_Once' is @once_differentiable"):
        sg.gradgradcheck(lambda a: _Once.apply(a) * 2, (x,), samples=2)


class _Scaled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1

    @staticmethod
    def backward(ctx, g):
        return g * 1.0001


def _assigns(a, w):
    b = a * w
    b[0] = 0
    b[:, 1] = a[:, 0].tanh()
    b[1:, 2:] = w[0, 0]
    b[:, ::2] = b[:, ::2] * 2
    return b


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_slice_assignment_is_captured(dtype):
    """b[0] = 0 and b[1:, 2:] = v were refused ('ATen op aten.copy.default /
    aten.slice_scatter.default is not supported yet'); a wrong backward routed through an
    assigned slice is still caught."""
    a, w = (_x(3, 4, seed=s).to(dtype).requires_grad_() for s in (0, 1))
    assert sg.gradcheck(_assigns, (a, w))

    def planted(a):
        b = a * 2
        b[1:, 1:3] = _Scaled.apply(a[:2, :2])
        return b
    with pytest.raises(sg.GradcheckError, match=r"with respect to a\[[01], [01]\]"):
        sg.gradcheck(planted, (_x(3, 4).requires_grad_(),))


def test_a_saved_file_path_does_not_hide_the_only_input():
    """A finding on the value of sg.gradcheck(torch.log, (x,)) read "sample values: 1 more
    block in the error's .result, file='...'": the saved file's path used up the point's
    character budget, hiding x, the function's only input."""
    from symgrad.result_text import point_text
    text = point_text({"x": [1.54, -0.29, -2.18, 0.57],
                       "file": "/tmp/symgrad-samples/log-sample0-d9f26273ca.pt"})
    assert text == "x=[1.54, -0.29, -2.18, …], file='/tmp/symgrad-samples/log-sample0-d9f26273ca.pt'"
