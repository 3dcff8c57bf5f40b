"""No false "proven" failure on torch's own functions whose backward formulas cancel.

torch's BCE-with-logits backward is sigmoid(x) - y, logsigmoid's double backward (s - 1) s,
softplus' (1 - s) s (s = sigmoid(x) rounded): correct formulas, rounded, that lose digits where
s saturates. symgrad keeps these ops whole in a capture (``capture/composites``) and its op
table holds torch's formulas (``optable``: ``torch_second``; ``tensor/torch_vjp``), so the
allowance and the enclosure hold torch's rounding: correct torch code passes or is
inconclusive, never fails; a planted wrong backward x (1 + 1e-6) in float64 still fails.
The wide sweep: ``scripts/wolf_torch_functions.py`` -> ``reports/wolf_torch_functions.md``.
"""

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import symgrad as sg
from symgrad.capture.gradcheck import GradcheckError
from symgrad.optable import OPS, X0, logsigmoid_torch_backward
from symgrad.tensor.derive import _local
from symgrad.tensor.localdiff import diff
from symgrad.tensor.program import X
from symgrad.tensor.torch_vjp import second_order_rows
from symgrad.testing import scale_backward

Y = torch.tensor([0.0, 1.0, 1.0, 0.3])
FUNCTIONS = {
    "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, Y.to(x.dtype)),
    "logsigmoid": lambda x: -F.logsigmoid(x).sum(),
    "softplus": lambda x: F.softplus(x).sum(),
    "silu": lambda x: F.silu(x).sum(),
    "mish": lambda x: F.mish(x).sum(),
    "sigmoid": lambda x: torch.sigmoid(x).sum(),
    "bce": lambda x: F.binary_cross_entropy(torch.sigmoid(x), Y.to(x.dtype)),
    "cross_entropy": lambda x: F.cross_entropy(x.view(2, 2), torch.tensor([0, 1])),
}
POINTS = [-12.0, 5.25, 9.0, 30.0]  # a saturated logit of each sign; the x ~ 5
# F.binary_cross_entropy divides by max(s (1 - s), 1e-12): beyond |x| ~ 27.6 that clamp is a
# real departure of torch's gradient (test_bce_clamp_is_a_real_finding), so its points stop at 20
BCE_POINTS = [-12.0, 5.25, 9.0, 20.0]


def _verdict(fn, x, order: int) -> str:
    check = sg.gradcheck if order == 1 else sg.gradgradcheck
    try:
        check(fn, (x,), samples=2)
    except GradcheckError as exc:
        return exc.result.verdict
    return "pass"


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_correct_torch_function_never_fails(name, dtype, order):
    if name == "bce" and order == 2 and dtype == torch.float64:
        pytest.skip("torch's BCE double backward departs by ~2e-12: a real finding "
                    "(test_bce_double_backward_departs_beyond_rounding)")
    x = torch.tensor(BCE_POINTS if name == "bce" else POINTS, dtype=dtype, requires_grad=True)
    assert _verdict(FUNCTIONS[name], x, order) in ("pass", "inconclusive")


def test_bce_double_backward_departs_beyond_rounding():
    """F.binary_cross_entropy's Hessian in float64 at x = -3, y = 0 is 2.2e-12 relative from
    the exact s (1 - s) (mpmath): ~2e4 ULPs, far beyond any rounding of a formula at s = 0.047
    (its cause inside torch's double-backward formula not traced here); symgrad fails it."""
    x = torch.tensor([-3.0], dtype=torch.float64, requires_grad=True)
    y = torch.zeros(1, dtype=torch.float64)
    g, = torch.autograd.grad(F.binary_cross_entropy(torch.sigmoid(x), y), x, create_graph=True)
    h, = torch.autograd.grad(g.sum(), x)
    with mpmath.workdps(50):
        s = 1 / (1 + mpmath.exp(3))
        exact = float(s * (1 - s))
    assert abs(float(h[0]) - exact) / exact > 1e-12
    x2 = torch.tensor(BCE_POINTS, dtype=torch.float64, requires_grad=True)
    assert _verdict(FUNCTIONS["bce"], x2, 2) == "fail"


def test_bce_clamp_is_a_real_finding():
    """At x = 30 F.binary_cross_entropy's eps clamp makes torch's gradient 0.016 where the
    exact one is 0.175: a proven failure that names the clamp, not a rounding."""
    x = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="BCELoss clamp") as caught:
        sg.gradcheck(FUNCTIONS["bce"], (x,), samples=2)
    assert caught.value.result.verdict == "fail"


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", ["bce_with_logits", "logsigmoid", "softplus"])
def test_planted_wrong_backward_still_fails(name, order):
    x = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)

    def wrong(x):
        return FUNCTIONS[name](scale_backward(x, 1 + 1e-6))
    assert _verdict(wrong, x, order) == "fail"


def test_the_reported_cases_pass():
    """The issue's two: BCE-with-logits in float32 at logits ~5 (107 ULPs against 55.8
    allowed, "proven") and the double backward of -logsigmoid in float64 (~1e4 ULPs)."""
    x = torch.tensor([5.0, 4.8, 5.3, -5.1], dtype=torch.float32, requires_grad=True)
    assert sg.gradcheck(lambda x: F.binary_cross_entropy_with_logits(x, Y), (x,))
    x = torch.tensor([12.0, 20.0, -3.0, 30.0], dtype=torch.float64, requires_grad=True)
    assert sg.gradgradcheck(lambda x: -F.logsigmoid(x).sum(), (x,))


def test_softplus_threshold_is_kept():
    """F.softplus returns x above its threshold: the capture keeps torch's cut-off, so a
    gradient of exactly 1 at x = 25 is right (sigmoid(25) would be 1 - 1.4e-11)."""
    x = torch.tensor([25.0, 3.0, -2.0], dtype=torch.float64, requires_grad=True)
    assert sg.gradcheck(lambda x: F.softplus(x).sum(), (x,))
    assert sg.gradcheck(lambda x: F.softplus(x, beta=2.0, threshold=10.0).sum(), (x,))


def test_bce_with_logits_options():
    """weight, pos_weight and every reduction lowered; a wrong backward still caught."""
    x = torch.tensor([[5.0, -3.0], [0.5, 9.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [0.2, 1.0]], dtype=torch.float64)
    w = torch.tensor([0.5, 2.0], dtype=torch.float64)
    pw = torch.tensor([3.0, 0.5], dtype=torch.float64)
    for red in ("mean", "sum", "none"):
        def f(x, red=red):
            out = F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                                     reduction=red)
            return out if red != "none" else (out * torch.tensor([[1.0, 2.0], [3.0, 4.0]],
                                                                 dtype=x.dtype)).sum()
        assert sg.gradcheck(f, (x,)), red
    with pytest.raises(GradcheckError):
        sg.gradcheck(lambda x: F.binary_cross_entropy_with_logits(
            scale_backward(x, 1 + 1e-6), y, weight=w, pos_weight=pw), (x,))


def test_torch_gradient_is_the_rounded_formula():
    """Certified: at the issue's float32 point torch's BCE-with-logits gradient is > 50 ULPs
    from the exact derivative (mpmath, 50 digits), yet it is sigmoid(x) - 1 of torch's own
    sigmoid(x), which is within one float32 ULP of the exact sigmoid: a correct formula,
    rounded, not a bug."""
    x = torch.tensor([5.253], dtype=torch.float32, requires_grad=True)
    y = torch.tensor([1.0])
    F.binary_cross_entropy_with_logits(x, y, reduction="sum").backward()
    got = float(x.grad[0])
    with mpmath.workdps(50):
        xe = mpmath.mpf(float(x.detach()[0]))
        exact = 1 / (1 + mpmath.exp(-xe)) - 1
        s_exact = 1 / (1 + mpmath.exp(-xe))
    ulp = float(np.spacing(np.float32(abs(float(exact)))))
    assert abs(got - float(exact)) / ulp > 50
    s = float(torch.sigmoid(x.detach())[0])
    assert abs(s - float(s_exact)) <= float(np.spacing(np.float32(s)))
    assert got == float(np.float32(s) - np.float32(1.0))


def test_rows_match_the_bodies_derive_writes():
    """The order-2 keys are the first derivatives as a VJP body holds them, and logsigmoid's
    own derivative is torch's log_sigmoid_backward formula (so it needs no torch_backward)."""
    rows = second_order_rows()
    for name in ("softplus", "logsigmoid"):
        body, _ = _local(OPS[name].computed, 0, 1)
        key = diff(OPS[name].computed, X0)
        assert key in rows and body.has(key.xreplace({X0: X[1]})), name
    assert diff(OPS["logsigmoid"].computed, X0) == logsigmoid_torch_backward(X0)


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_wide_sweep_never_fails(dtype, order):
    # (not x = 20 exactly: softplus' threshold, a kink whose second-order sides torch takes
    # differently, before this change too: reports/wolf_torch_functions.md; bce to |x| <= 19.5,
    # below its eps clamp)
    chunks = [[-30.0, -19.0, -10.0, -5.0], [-1.0, 0.5, 5.0, 10.0], [19.5, 30.0, 7.5, -7.5]]
    bce_chunks = [[-19.0, -10.0, -5.0, -1.0], [0.5, 5.0, 10.0, 19.5]]
    for name, fn in FUNCTIONS.items():
        if name == "bce" and order == 2 and dtype == torch.float64:
            continue  # a real finding (test_bce_double_backward_departs_beyond_rounding)
        for pts in bce_chunks if name == "bce" else chunks:
            x = torch.tensor(pts, dtype=dtype, requires_grad=True)
            assert _verdict(fn, x, order) in ("pass", "inconclusive"), (name, pts)
