"""A bug inside the user's own torch code (a ``torch_fn``, a module's forward, a custom
Function's backward) is one ``SymgradError`` line: what raised, the user's own frame (file,
line, function), the shapes it received and what to check; raised from None (no chained
traceback through symgrad's frames)."""

from __future__ import annotations

import inspect
import re

import pytest
import sympy as sp
import torch
import torch.nn as nn

import symgrad as sg
from symgrad.config import VerifyConfig
from symgrad.errors import SymgradError
from tests.clients import tiny_gpt
from tests.gptmodels import book

W1 = sg.matrix("W1", 5, 4)
X = sg.matrix("x", 4)
MODEL = sg.Model("lin", sum(sp.tanh(e) for e in W1 * X), params=[W1], inputs={X: sg.Normal()})


def fn(W1, x):
    return torch.tanh(x @ W1).sum()  # the bug: x @ W1 instead of W1 @ x


def _line(f, text):
    lines, start = inspect.getsourcelines(f)
    return start + next(i for i, s in enumerate(lines) if text in s)


def _raised(**kwargs):
    with pytest.raises(SymgradError) as err:
        sg.verify(MODEL, torch_fn=fn, samples=2, **kwargs)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_a_shape_bug_in_torch_fn_is_one_line_naming_the_users_frame_and_shapes(batching):
    msg = _raised(config=VerifyConfig(torch_fn_batching=batching))
    assert msg.startswith("torch_fn 'fn' raised RuntimeError: mat1 and mat2 shapes cannot be "
                          "multiplied (1x4 and 5x4)"), msg
    assert f"(at test_torch_fn_errors.py:{_line(fn, 'x @ W1')}, in fn)" in msg, msg
    assert "it received W1 (5, 4), x (4,)" in msg and "; check " in msg, msg


class Broken(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g[:2] * 2  # the bug: a gradient of the wrong shape


def test_a_custom_functions_backward_that_raises_names_the_backward():
    m = sg.Model("twice", sum(2 * e for e in W1), params=[W1])
    with pytest.raises(SymgradError) as err:
        sg.verify(m, torch_fn=lambda W1: Broken.apply(W1).sum(), samples=2)
    msg = str(err.value)
    assert msg.startswith("the backward of torch_fn '<lambda>' raised RuntimeError"), msg
    assert "it received W1 (5, 4)" in msg and "\n" not in msg, msg


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 5)

    def forward(self, x):
        return (x @ self.lin.weight).sum()  # the bug: weight, not weight.T


def test_a_modules_forward_that_raises_names_its_line_and_the_inputs_shapes():
    with pytest.raises(SymgradError) as err:
        sg.verify(module=Net().double(), inputs=torch.zeros(2, 4, dtype=torch.float64))
    msg = str(err.value)
    line = _line(Net.forward, "self.lin.weight")
    assert re.fullmatch(r"verify\(module=Net\): running it on inputs= raised RuntimeError: mat1 "
                        r"and mat2 shapes cannot be multiplied \(2x4 and 5x4\) \(at "
                        rf"test_torch_fn_errors\.py:{line}, in forward\); check inputs= "
                        r"\(shapes \(2, 4\)\)", msg), msg


class BadGPT(book.GPTModel):
    def forward(self, in_idx):
        w = self.out_head.weight.T  # (4, 6)
        return super().forward(in_idx) @ w  # the bug: logits (3, 6) @ (4, 6)


def test_the_gpt_layout_paths_module_raising_names_its_line():
    cfg = {"vocab_size": 6, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
           "drop_rate": 0.0, "qkv_bias": False}
    with pytest.raises(SymgradError) as err:
        sg.verify(tiny_gpt(cfg), module=BadGPT(cfg).double(), samples=2)
    msg = str(err.value)
    line = _line(BadGPT.forward, "# the bug")
    assert "the module raised RuntimeError: mat1 and mat2 shapes cannot be multiplied" in msg
    assert f"(at test_torch_fn_errors.py:{line}, in forward)" in msg and "\n" not in msg, msg
