"""``sg.gradcheck``'s own arguments and its error text: ``samples=`` below 1 is refused in
one line (it used to check one point silently and return True); the "… and N more" tail
counts the entries the headline counts, not the finding list's cap."""

from __future__ import annotations

import re

import pytest
import torch

import symgrad as sg
from symgrad.testing import scale_backward


def _x(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=g, dtype=torch.float64).requires_grad_()


@pytest.mark.parametrize("samples", [0, -1, 2.5, True])
@pytest.mark.parametrize("check", [sg.gradcheck, sg.gradgradcheck])
def test_samples_below_one_or_not_an_int_is_refused_naming_the_option(check, samples):
    with pytest.raises(sg.SymgradError, match=r"samples= must be a positive integer.*got "):
        check(torch.tanh, (_x(),), samples=samples)


def test_the_more_tail_adds_up_to_the_entries_in_the_headline():
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(lambda x: torch.tanh(scale_backward(x, 1 + 1e-6)), (_x(),))
    text = str(info.value)
    n = int(re.search(r"\((\d+) entries failing\)", text).group(1))
    shown = len(re.findall(r"^  mismatch in the gradient", text, re.M))
    more = re.search(r"… and (\d+) more", text)
    assert n == 24 and shown == 5, text        # 6 entries x the point and 3 around it
    assert more and shown + int(more.group(1)) == n, text


def _bf16(seed=0, n=12):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g, dtype=torch.float64) * 3).to(torch.bfloat16)


def test_an_undecided_value_alone_does_not_make_gradcheck_inconclusive():
    # bfloat16 sin at 12 entries: the cotangent sum of the outputs cancels below its
    # allowance ("inconclusive in the loss value"), every gradient entry is decided ok.
    # torch's gradcheck judges gradients only; without reference= so does symgrad's
    x = _bf16().requires_grad_()
    c = sg.capture(torch.sin, (x,))
    r = sg.verify(c.model, torch_fn=c.torch_fn(), at=c.at(4), backends=("torch_fn",),
                  dtype="bfloat16")
    assert r.verdict == "inconclusive" and r.outputs[0] == "value", str(r)
    status = r.comparisons["torch_fn"].status
    assert (status[:, 0] != 0).any() and (status[:, 1:] == 0).all(), str(r)
    assert sg.gradcheck(torch.sin, (x,)) is True


def test_a_wrong_backward_in_bfloat16_still_fails_and_an_undecided_gradient_stays_inconclusive():
    x = _bf16().requires_grad_()
    with pytest.raises(sg.GradcheckError, match=r"disagrees.*bfloat16"):
        sg.gradcheck(lambda x: torch.sin(scale_backward(x, 1.1)), (x,))
    with pytest.raises(sg.GradcheckError, match="inconclusive"):   # tanh's own entries
        sg.gradcheck(torch.tanh, (_bf16().requires_grad_(),))


def _cancelling(x):
    """d/dx = e^x - (1 + d) e^(x (1 + d)), d = fl32(1e-7): a few ULPs of its rounded terms."""
    return (torch.exp(x) - torch.exp(x * 1.0000001)).sum() + 1  # the value resolved: ~1


def test_an_inconclusive_headline_names_the_share_the_block_and_why():
    x = torch.tensor([0.25, 0.875], dtype=torch.float32, requires_grad=True)
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(_cancelling, (x,))
    head = str(info.value).splitlines()[0]
    m = re.search(r"inconclusive for '_cancelling' — (\d+) of (\d+) entries \(([\d.]+)%\) "
                  r"could not be decided in float32, none failing \(not a pass\): in x \((\d+)\)",
                  head)
    assert m and m.group(1) == m.group(4) and int(m.group(2)) == 12, head  # 4 points x (1 + 2)
    assert int(m.group(1)) < 12 and float(m.group(3)) == pytest.approx(  # the value decided
        100 * int(m.group(1)) / 12, rel=0.05), head
    assert "exact values lie within the rounding float32 allows" in head, head
    assert "e.g. dL/dx[" in head and "dtype=torch.float64" in head, head
    assert "try more points" not in head, head   # more points decide none of these
    assert sg.gradcheck(_cancelling, (x.detach().double().requires_grad_(),))  # float64: pass


def test_a_builtins_inputs_are_named_as_its_docstring_names_them():
    """``sg.gradcheck(torch.tanh, (x,))`` called its input ``input0`` (a builtin has no
    ``inspect.signature``): now torch's own names from the docstring's signature line
    (``tanh(input, *, out=None)``, ``mul(input, other, *, out=None)``); a builtin whose
    docstring names nothing keeps the positional fallback."""
    bad = torch.tensor([0.5, float("nan")], dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.SymgradError, match=r"^gradcheck\(tanh\): input 'input' is nan "):
        sg.gradcheck(torch.tanh, (bad,))
    with pytest.raises(sg.SymgradError, match=r"^gradgradcheck\(mul\): input 'other' is nan "
                                              r"\(sample 0, entry \[1\]\)"):
        sg.gradgradcheck(torch.mul, (_x(2), bad))
    with pytest.raises(sg.SymgradError, match=r"^gradcheck\(tanh\): input 'input0' is nan "):
        sg.gradcheck(torch.Tensor.tanh, (bad,))  # "tanh() -> Tensor": no name of its input


def test_a_non_scalar_output_says_which_cotangent_its_gradients_are_along():
    """A non-scalar output is checked as sum(output * c), c a fixed random cotangent: the
    failing lines' "expected" are that sum's gradient, which the message did not say (nor c,
    nor its seed; newuser12). The note's c is the one used: sample 0's expected entry is
    tanh'(x0) c0."""
    x = torch.tensor([0.3, -0.5, 0.9], dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(lambda x: torch.tanh(scale_backward(x, 1.5)), (x,), seed=5)
    note = next(t for t in str(info.value).splitlines() if "not a scalar" in t)
    assert note.startswith("  note: the output is not a scalar (shape (3,)): checked along a "
                           "random cotangent c = [") and "drawn from seed 5" in note
    c0 = float(re.search(r"c = \[([-0-9.e]+),", note).group(1))
    first = next(f for f in info.value.result.failures if f.output.endswith("x[0]")
                 and f.sample == 0)
    assert first.expected == pytest.approx((1 - float(torch.tanh(x[0].detach())) ** 2) * c0,
                                           rel=1e-3)
