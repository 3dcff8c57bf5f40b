"""newuser13's stumbles, each a test that failed before its fix.

1. A failing verify named one entry per line (expected, got, ULPs), ten lines of hundreds: from
   the text alone a reader could not tell that every failing entry of the block was off by the
   same factor 1 + 1e-9, or that one entry alone had its sign flipped at every sample
   (``symgrad.failpattern``: a "failing:" line per failing block, in ``print(result)`` and in
   ``sg.gradcheck``'s error).
2. ``F.cross_entropy(..., ignore_index=-100)`` with every target ignored (a mean over no
   entries, 0/0) failed deep in the bound with "constant zoo is not a real number"; it is one
   line naming the division, the user's line and the fix (``capture.aten._div``).
3. A masked mean with an empty mask row (0/0), or an infinite input (inf - inf): the loss is
   undefined at the example, and ``verify(module=)`` read FAIL above lines each saying "not a
   backend error"; now one line (``modules.undefined``).
4. ``sg.gradcheck(module, ...)`` did not name the custom autograd.Function every failing
   gradient flows through, as ``sg.verify(module=)`` does.
5. ``symgrad explain`` of a large model written as one sympy expression gave the whole chain
   rule per entry with no word of how to get layers; the page now says (``sg.ops``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symgrad as sg
from symgrad.compare import MISMATCH, OK
from symgrad.failpattern import block_lines


class LinearFn(torch.autograd.Function):
    """x W^T + b, its backward hand-written; ``bug`` plants an error in the weight's."""

    @staticmethod
    def forward(ctx, x, W, b, bug):
        ctx.save_for_backward(x, W)
        ctx.bug = bug
        return x @ W.T + b

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        gW = g.T @ x
        if ctx.bug == "scale":
            gW = gW * (1 + 1e-9)
        elif ctx.bug == "sign":
            gW = gW.clone()
            gW[1, 2] = -gW[1, 2]
        return g @ W, gW, g.sum(0), None


class Net(nn.Module):
    def __init__(self, bug=None):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp = nn.Linear(4, 6).double()
        self.W = nn.Parameter(torch.randn(5, 6, generator=g, dtype=torch.float64) / 3)
        self.b = nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64) / 10)
        self.out = nn.Linear(5, 3).double()
        self.bug = bug

    def forward(self, x):
        h = LinearFn.apply(torch.tanh(self.inp(x)), self.W, self.b, self.bug)
        return self.out(torch.tanh(h))


def _verify(bug):
    torch.manual_seed(0)
    x = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return sg.verify(module=Net(bug), inputs=x, targets=torch.tensor([0, 2, 1, 1]),
                     loss=F.cross_entropy, samples=4)


def _failing(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("failing:")]


def test_a_scaled_backward_reads_as_one_constant_factor():
    """Meant to fail: W's backward x (1 + 1e-9); the text says so in one line."""
    r = _verify("scale")
    assert r.verdict == "fail"
    lines = _failing(str(r))
    assert len(lines) == 1 and lines[0].startswith("failing: W: 120 failing entries (30 of its "
                                                   "30 entries, at 4 of 4 samples)"), lines
    assert "got = exact x (1 + 1e-09) at every one" in lines[0], lines


def test_one_flipped_entry_is_named_with_its_sign():
    """Meant to fail: the sign of W[1, 2]'s gradient flipped."""
    r = _verify("sign")
    assert r.verdict == "fail"
    assert _failing(str(r)) == [
        "failing: W: 4 failing entries (only W[1, 2], at 4 of 4 samples; its other 29 entries "
        "agree): got = exact x (-1) at every one (the sign flipped)"]


def test_a_correct_backward_has_no_failing_line():
    r = _verify(None)
    assert r.verdict == "pass" and not _failing(str(r))


def test_gradcheck_error_says_it_too():
    g = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(*s, dtype=torch.float64, generator=g).requires_grad_()
                 for s in [(3, 6), (5, 6), (5,)])
    with pytest.raises(sg.GradcheckError) as e:
        sg.gradcheck(lambda x, W, b: LinearFn.apply(x, W, b, "sign"), args)
    assert "note: W: 4 failing entries (only W[1, 2], at 4 of 4 samples" in str(e.value)


def test_relative_errors_that_differ_give_their_range():
    exact = np.array([[1.0, 2.0, -4.0], [1.0, 3.0, 5.0]])
    got = exact * [[1, 1.5, 1], [1, 0.9, 1 + 1e-3]]
    status = np.array([[OK, MISMATCH, OK], [OK, MISMATCH, MISMATCH]])
    comp = type("C", (), dict(status=status, got=got, expected=exact, reduced=False))
    assert block_lines(comp, [("w", 1, 3)], ["value", "d/dw[0]", "d/dw[1]"]) == [
        "w: 3 failing entries (2 of its 2 entries, at 2 of 2 samples): relative errors 0.001 "
        "to 0.5, of both signs (no one constant factor)"]
    comp.reduced = True  # a comparison reduced to statuses (GPT-2 scale) says nothing
    assert block_lines(comp, [("w", 1, 3)], ["value", "d/dw[0]", "d/dw[1]"]) == []


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6).double()
        self.head = nn.Linear(6, 3).double()

    def forward(self, ids):
        return self.head(torch.tanh(self.emb(ids)))


def _tag_loss(out, y):
    return F.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=-100)


def test_every_target_ignored_is_one_line():
    """A mean over no entries (0/0): one line naming the division and the user's line."""
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(sg.SymgradError) as e:
        sg.verify(module=Tagger(), inputs=ids, targets=torch.full((2, 3), -100),
                  loss=_tag_loss)
    text = str(e.value)
    assert "\n" not in text and "zoo" not in text
    assert "division by an exact 0" in text and "ignore_index" in text
    assert "test_newuser13.py" in text and "(aten.div.Tensor)" in text


def test_some_targets_ignored_still_verify():
    """The mean over the targets kept (a batch of varying size) passes, as before."""
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    y = torch.tensor([[0, -100, 2], [-100, -100, 1]])
    r = sg.verify(module=Tagger(), inputs=ids, targets=y, loss=_tag_loss, samples=4)
    assert r.verdict == "pass"


class MaskedMean(nn.Module):
    """A masked mean over the sequence, then a Linear: 0/0 where a mask row has no True."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2).double()

    def forward(self, x, mask):
        m = mask.unsqueeze(-1).to(x.dtype)
        return self.lin((x * m).sum(1) / m.sum(1))


def test_a_loss_undefined_at_the_example_is_one_line_not_a_fail():
    """A mask row with no True (0/0) and an infinite input (inf - inf): the exact loss at the
    example is NaN. Before: verdict FAIL above 56 lines each saying "not a backend error"."""
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    for inputs in ((x, mask), (torch.full_like(x, float("inf")), mask | True)):
        with pytest.raises(sg.SymgradError) as e:
            sg.verify(module=MaskedMean(), inputs=inputs, samples=2)
        assert "\n" not in str(e.value)
        assert str(e.value).startswith("verify(module=MaskedMean): the loss is undefined at "
                                       "the example"), str(e.value)
    mask[1, 0] = True  # a True in every row: defined, and right
    assert sg.verify(module=MaskedMean(), inputs=(x, mask), samples=2).verdict == "pass"


def test_gradcheck_of_a_module_names_the_custom_function():
    """sg.verify(module=) named the custom autograd.Function every failing gradient flows
    through; sg.gradcheck of the same module did not. Its extra eager run leaves torch's
    generator and the module's mode as they were."""
    net = Net("scale")
    x = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    state = torch.get_rng_state()
    with pytest.raises(sg.GradcheckError) as e:
        sg.gradcheck(net, (x,))
    assert ("note: every failing gradient (W) flows through the backward of the custom "
            "autograd.Function 'LinearFn'") in str(e.value)
    assert torch.equal(torch.get_rng_state(), state) and net.training


def test_a_large_one_step_model_says_how_to_get_layers():
    """A 2-layer MLP written as one sympy expression explains as the whole chain rule per
    entry (newuser13: 130 equations up to 5,258 characters); the page says how to get a
    derivation layer by layer. A small one-step model says nothing of it."""
    import sympy as sp

    from symgrad.present.step_derivation import ONE_STEP
    X, W1, w2 = sg.matrix("X", 2, 3), sg.matrix("W1", 3, 3), sg.matrix("w2", 3)
    H = (X * W1.T).applyfunc(sp.tanh)
    loss = sum((H * w2)[i, 0] ** 2 for i in range(2)) / 2
    big = sg.Model("mlp_by_hand", loss, params=[W1, w2], inputs={X: sg.Normal(0, 1)})
    assert ONE_STEP in sg.explain(big).markdown()
    w = sp.Symbol("w")
    assert ONE_STEP not in sg.explain(sg.Model("sq", w ** 2, params=[w])).markdown()


def test_a_gradient_of_zero_reads_as_a_missing_backward():
    """got = 0 everywhere the exact is not (a detached factor): "exact x 0" said what, not why
    (the lead, gradgradcheck of a detached tanh')."""
    exact = np.array([[1.0, 2.0, -4.0], [1.0, 3.0, 5.0]])
    status = np.full(exact.shape, MISMATCH)
    comp = type("C", (), dict(status=status, got=0 * exact, expected=exact, reduced=False))
    assert block_lines(comp, [("w", 1, 3)], ["value", "d/dw[0]", "d/dw[1]"]) == [
        "w: 4 failing entries (2 of its 2 entries, at 2 of 2 samples): got = exact x 0 at every "
        "one (got 0: a term dropped or a factor detached, as a missing backward gives)"]
