"""A constant array the forward computes (a RoPE cos/sin table from ``torch.arange``, as Hugging
Face's LlamaRotaryEmbedding builds in its forward): in a float64 run it is exact data at the
run's dtype, held as an input block (as a float64 buffer is), so the module verifies and a wrong
backward is still caught; with float32 tensors a float64 table is refused in one line naming
the dtype, the user's line and ``register_buffer``."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import symgrad as sg
from symgrad.capture.values import Held
from tests.clients import LlamaBlock, rope_tables, seeded


def _x(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))


class Table(nn.Module):
    """``lin(x) * t + t * x`` with ``t = cos(0.3 k)`` computed in forward in ``table_dtype``
    (None: the input's dtype)."""

    def __init__(self, table_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.table_dtype = table_dtype

    def forward(self, x):
        t = torch.cos(torch.arange(4, dtype=self.table_dtype or x.dtype) * 0.3)
        return self.lin(x) * t + t * x


def test_the_float64_tables_are_not_float32_exact():
    cos, sin = rope_tables(4, 4, torch.float64)
    assert not torch.equal(cos.float().double(), cos)
    assert not torch.equal(sin.float().double(), sin)


@pytest.mark.parametrize("factor", [1.0, 1 + 1e-8])
def test_llama_block_with_tables_computed_in_forward_in_float64(factor):
    with seeded(0):
        m = LlamaBlock(tables="forward").double()
    hook = m.q.weight.register_hook(lambda g: g * factor)
    try:
        r = sg.verify(module=m, inputs=_x(1, 4, 8), samples=2)
    finally:
        hook.remove()
    assert r.verdict == ("pass" if factor == 1.0 else "fail"), str(r)
    if factor != 1.0:
        assert {f.output.split("[")[0] for f in r.failures} == {"d/dq.weight"}, str(r)


def test_the_held_table_is_an_input_block_at_its_float64_values():
    with seeded(0):
        m = Table().double()
    c = sg.capture(m, (_x(3, 4),))
    held = [b.name for b in c.model.blocks if b.name.startswith("constant")]
    assert len(held) == 1, [b.name for b in c.model.blocks]  # one tensor used twice: one block
    want = torch.cos(torch.arange(4, dtype=torch.float64) * 0.3).numpy()
    assert (c.example[held[0]] == want).all()
    at = c.at(3)
    assert (at[held[0]] == want).all()  # held at every sample, never scaled


@pytest.mark.parametrize("factor", [1.0, 1 + 1e-9])
def test_gradcheck_of_a_function_building_a_float64_table(factor):
    class Bug(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.cos(torch.arange(x.shape[-1], dtype=x.dtype) * 0.3)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.cos(torch.arange(x.shape[-1], dtype=x.dtype) * 0.3) * factor

    x = _x(3, 4).requires_grad_(True)
    assert sg.gradcheck(Bug.apply, (x,), raise_exception=False) is (factor == 1.0)


def test_a_float64_table_with_float32_tensors_is_refused_in_one_line():
    with seeded(0):
        m = Table(torch.float64)
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(module=m, inputs=_x(3, 4, dtype=torch.float32), dtype="float32")
    text = str(err.value)
    assert len(text.splitlines()) == 1, text
    assert "float64" in text and "register_buffer" in text, text
    assert "test_capture_forward_constants.py" in text, text  # the user's line


def test_a_float32_table_in_a_float32_run_stays_a_constant():
    with seeded(0):
        m = Table()
    c = sg.capture(m, (_x(3, 4, dtype=torch.float32),))
    assert not [b for b in c.model.blocks if b.name.startswith("constant")]
    assert sg.verify(module=m, inputs=_x(3, 4, dtype=torch.float32), dtype="float32",
                     samples=2).verdict in ("pass", "inconclusive")


def test_held_blocks_skip_taken_names_and_one_tensor_is_one_block():
    held = Held(exact=True, taken=frozenset({"constant1"}))
    tables = [torch.full((2,), 0.1 * k, dtype=torch.float64) for k in range(3)]
    names = [held.hold(t, t.numpy()).name for t in tables]
    assert names == ["constant0", "constant2", "constant3"]
    assert held.hold(tables[0], tables[0].numpy()).name == "constant0"
    assert sorted(held.values()) == names
