"""The rigorous enclosure of a plain model with an integer (token id) input, as its tensor
program (symgrad/rigorous/exact_int.py).

``to_program`` reads an id as ``einsum("iv,i,v->", onehot(ids), one-hot, 0..V-1)``; the
rounded-ball einsum used to widen it, so the GPT's embedding ``Piecewise(.., Eq(id, k))``
could not pick a branch and every entry of the enclosure was NaN: a planted bug beyond the
fast bound stayed inconclusive with ``at=``. These tests fail on that code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flint import arb

import symgrad as sg
from symgrad import zoo
from symgrad.rigorous import tensor_balls
from symgrad.rigorous.exact_int import exact_integer_einsum
from symgrad.tensor.front import to_program
from symgrad.testing import scale_block_backward


SMALL_GPT = {"vocab_size": 5, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
             "drop_rate": 0.1, "qkv_bias": False}


def _balls(values) -> np.ndarray:
    out = np.empty(np.shape(values), dtype=object)
    for i, v in np.ndenumerate(np.asarray(values)):
        out[i] = arb(int(v)) if float(v) == int(v) else arb(float(v))
    return out


def test_an_integer_einsum_below_2p_is_exact_and_at_2p_is_refused():
    one = _balls([1])
    got = exact_integer_einsum("i,i->", [_balls([2**24 - 1]), one], digits=23)
    assert got is not None and got.shape == () and got.item() == 2**24 - 1
    assert got.item().is_exact()
    # G = 2^24 (not held by float32 in every order: 2^23 + 2^23 + 1 is not): refused
    assert exact_integer_einsum("i,i->", [_balls([2**23, 2**23]), _balls([1, 1])],
                                digits=23) is None
    # a zero factor does not shrink the bound: a partial product 4097 * 4097 rounds in float32
    assert exact_integer_einsum("i,i,i->", [_balls([4097]), _balls([4097]), _balls([0])],
                                digits=23) is None
    # the same operands in float64 are exact
    assert exact_integer_einsum("i,i,i->", [_balls([4097]), _balls([4097]), _balls([0])],
                                digits=52).item() == 0


def test_a_non_integer_or_inexact_operand_takes_the_general_path():
    assert exact_integer_einsum("i,i->", [_balls([0.5]), _balls([1])], digits=52) is None
    wide = np.array([arb(1, 1e-20)], dtype=object)
    assert exact_integer_einsum("i,i->", [wide, _balls([1])], digits=52) is None


@pytest.mark.parametrize("spec,shapes", [("iv,i,v->", [(6, 7), (6,), (7,)]),
                                         ("ij,jk->ik", [(5, 9), (9, 4)]),
                                         ("bij,bj->bi", [(3, 4, 8), (3, 8)])])
def test_every_accepted_integer_einsum_is_what_float32_torch_computes(spec, shapes):
    """Meant to fail if the bound G < 2^p were too loose: torch's float32 einsum (its own
    order, BLAS or not) of every accepted draw equals the exact integer einsum."""
    rng = np.random.default_rng(0)
    accepted = 0
    for trial in range(60):
        hi = [2, 30, 300, 3000][trial % 4]
        ints = [rng.integers(-hi, hi + 1, size=s) for s in shapes]
        got = exact_integer_einsum(spec, [_balls(a) for a in ints], digits=23)
        if got is None:
            continue
        accepted += 1
        exact = np.asarray(np.einsum(spec, *[a.astype(object) for a in ints]), dtype=object)
        f32 = torch.einsum(spec, *[torch.tensor(a, dtype=torch.float32) for a in ints])
        assert np.array_equal(np.asarray(got, dtype=object).astype(float), exact.astype(float))
        assert np.array_equal(f32.double().numpy(), exact.astype(float))
    assert accepted >= 15


@pytest.mark.parametrize("build", [lambda: to_program(zoo.get("gpt_embedding")),
                                   lambda: zoo.get("tiny_gpt", config=SMALL_GPT)],
                         ids=["gpt_embedding", "tiny_gpt"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_enclosure_of_a_gpt_program_with_token_ids_is_finite(build, dtype):
    model = build()
    values = model.draw(2, np.random.default_rng(1), "float64")
    for row in range(2):
        balls = tensor_balls(model, values, row, dtype, 1.0)
        assert all(b.is_finite() for b in balls), f"NaN/inf enclosure in row {row}"


def test_the_enclosure_holds_torchs_own_gradient_of_the_embedding():
    model = zoo.get("gpt_embedding")
    values = model.draw(3, np.random.default_rng(2), "float64")
    program = to_program(model)
    for row in range(3):
        balls = tensor_balls(program, values, row, "float64", 1.0)
        t = {k: torch.tensor(v[row], dtype=torch.float64) for k, v in values.items()}
        tok = t["tok_emb"].requires_grad_()
        pos = t["pos_emb"].requires_grad_()
        loss = model.reference(tok_emb=tok, pos_emb=pos, ids=t["ids"].long())
        loss.backward()
        got = [float(loss.detach())] + tok.grad.reshape(-1).tolist() + pos.grad.reshape(-1).tolist()
        assert len(got) == len(balls)
        assert all(b.contains(arb(g)) for b, g in zip(balls, got))


@pytest.mark.parametrize("factor", [1 + 1e-9, 1 + 1e-12])
def test_a_planted_bug_on_an_id_model_is_proven_without_fresh_samples(factor):
    """at= gives no fresh samples: only the enclosure can turn the suspicion into a fail."""
    model = zoo.get("gpt_embedding")
    at = model.draw(2, np.random.default_rng(0), "float64")
    r = sg.verify(to_program(zoo.get("gpt_embedding")),
                  torch_fn=scale_block_backward(model.reference, "tok_emb", factor),
                  at=at, seed=0)
    assert r.verdict == "fail", r.verdict


def test_the_correct_id_model_still_passes_with_the_enclosure():
    model = zoo.get("gpt_embedding")
    at = model.draw(2, np.random.default_rng(0), "float64")
    r = sg.verify(to_program(zoo.get("gpt_embedding")), torch_fn=model.reference, at=at, seed=0)
    assert r.verdict == "pass", r.verdict
