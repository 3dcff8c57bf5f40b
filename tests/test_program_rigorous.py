"""The rigorous enclosure on the program path (ported from tests/test_rigorous.py before the
scalar enclosure, ``symgrad/rigorous/scalar.py``, is deleted): the enclosure of a plain
``sg.Model``'s tensor program (``rigorous.tensor_enclosure``) and its rounding model
(``rigorous.RoundedArbOps``).

Soundness tests are *meant to fail* if the widening is too small: what correct code computes
(symgrad's own numpy and torch views of the program and each zoo model's native torch
reference), in float64 and float32, must lie inside the enclosure; and it must be bounded (a
proof) nearly everywhere, else no bug could be proven with it."""

import numpy as np
import pytest
import sympy as sp
import torch.nn.functional as F

import symgrad as sg
from symgrad import rigorous, zoo
from symgrad.backends import torch as torch_backend
from symgrad.compare import MISMATCH
from symgrad.tensor.front import to_program
from symgrad.tensor.tables import oracle_ops
from symgrad.tensor.views import numpy_view, oracle_view, torch_view
from symgrad.testing import scale_backward

MODELS = {"neuron": 8, "simplenet": 8, "gpt_layer_norm": 8, "gpt_softmax": 8,
          "gpt_attention": 4}  # name: samples per seed (tiny_gpt: test_rigorous's tensor GPT)
# simplenet's native reference is nn.BCELoss, wrong at a saturated sigmoid (its clamp): proven
# outside the enclosure at some draws (tests/test_rigorous.py::test_bce_loss_clamp_is_still_
# proven_wrong), so it is no "correct code" here
WRONG_REFERENCE = {"simplenet"}


def _contained(name: str, dtype: str, samples: int, seed: int) -> dict:
    """Per computation (numpy, torch, the native reference): (largest error / radius, share of
    unbounded entries, entries outside the enclosure), over every entry of every sample."""
    m = to_program(zoo.get(name))
    vals = m.draw(samples, np.random.default_rng(seed), dtype)
    hi, lo = oracle_view(m, vals, oracle_ops(50))
    r = rigorous.tensor_enclosure(m, vals, hi, lo, dtype, 4.0)(np.arange(samples))
    runs = {"numpy": numpy_view(m, vals, dtype),
            "torch": torch_view(m, vals, dtype=dtype, device="cpu")}
    if name not in WRONG_REFERENCE:
        runs["reference"], _ = torch_backend.run_torch_fn(m.reference, m.blocks, vals,
                                                          device="cpu", dtype=dtype,
                                                          batching="loop")
    out = {}
    for backend, got in runs.items():
        err = np.abs((got - hi) - lo)
        known = np.isfinite(r) & np.isfinite(err)
        out[backend] = (float(np.max(err[known] / np.where(r[known] > 0, r[known], np.inf),
                                     initial=0.0)),
                        float(np.mean(~np.isfinite(r))), int((known & (err > r)).sum()))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(MODELS))
def test_enclosure_contains_what_correct_code_computes(name, dtype):
    for seed in (0, 1):
        for backend, (worst, unbounded, outside) in _contained(name, dtype, MODELS[name],
                                                                seed).items():
            assert outside == 0, (backend, worst)
            assert worst <= 1.0
            assert unbounded <= 0.05, (backend, unbounded)  # a proof nearly everywhere


# ------------------------------------------------------------------ the rounding model
X, Y, Z = sp.symbols("x y z", real=True)
U32 = 2.0**-24


def _ball(expr, dtype: str, **values):
    ops = rigorous.RoundedArbOps(dtype, 4.0)
    sym = {"x": X, "y": Y, "z": Z}
    return ops.map(expr, {sym[k]: ops.asarray(np.array([v], dtype=dtype))
                          for k, v in values.items()})[0]


def _radius(ball, centre: float) -> float:
    return float(rigorous.radius_about([[ball]], np.array([[centre]]), np.zeros((1, 1)))[0, 0])


def test_rounding_model_widens_each_operation():
    """1/3 in float32: the ball holds 1/3 and fl32(1/3), radius u/3; a sum of 3 terms gets
    gamma_2 sum |terms|, unless it is exact in any order (3 + 3 + 3), as is a product by 0 or
    of small integers."""
    third = _ball(1 / X, "float32", x=3.0)
    assert third.lower() <= float(np.float32(1 / 3)) <= third.upper()
    assert third.lower() <= 1 / 3 <= third.upper()
    assert U32 / 3 * 0.99 < _radius(third, 1 / 3) < 1.1 * U32 / 3 + 1e-37
    assert _radius(_ball(X + Y + Z, "float32", x=3.0, y=3.0, z=3.0), 9.0) == 0
    assert _radius(_ball(X * Y * Z, "float32", x=3.0, y=3.0, z=3.0), 27.0) == 0
    v = [float(np.float32(t)) for t in (0.1, 0.2, 0.3)]
    r = _radius(_ball(X + Y + Z, "float32", x=v[0], y=v[1], z=v[2]), sum(v))
    assert 2 * U32 * sum(v) * 0.99 < r < 2.1 * U32 * sum(v)  # gamma_2 (|x| + |y| + |z|)
    assert _ball(X * Y * Z, "float32", x=0.0, y=v[1], z=v[2]).is_zero()


def test_out_of_range_is_unbounded():
    """exp(100) overflows float32: no finite ball (nothing is proven with it); in float64 it
    is an ordinary bounded ball."""
    assert not _ball(sp.exp(X), "float32", x=100.0).is_finite()
    assert _ball(sp.exp(X), "float64", x=100.0).is_finite()


# ------------------------------------------------------------------ failures it proves
def test_a_planted_error_outside_the_enclosure_is_proven():
    """Meant to fail: the neuron's program against torch code whose d/dw is x (1 + 1e-9) - a
    relative error far below any fixed tolerance - is a proven mismatch: error beyond the
    rigorous radius on the failing entries, and the note says so; the correct code computes
    no enclosure at all."""
    tm = to_program(zoo.get("neuron"))

    def wrong(w, b, x, y):
        z = scale_backward(w, 1 + 1e-9) * x + b
        return F.binary_cross_entropy_with_logits(z, y)
    good = sg.verify(tm, samples=20, seed=0,
                     torch_fn=lambda w, b, x, y: F.binary_cross_entropy_with_logits(w * x + b, y))
    assert good.ok and good.timings["rigorous_s"] == 0.0, str(good)
    r = sg.verify(tm, torch_fn=wrong, samples=20, seed=0)
    c = r.comparisons["torch_fn"]
    assert not r.ok and (c.status[:, 1] == MISMATCH).mean() > 0.9
    failing = c.status == MISMATCH
    assert (c.error[failing] > c.rigorous[failing]).any()
    assert all("outside the rigorous enclosure" in f.note or "confirmed by" in f.note
               for f in r.failures if f.kind == "mismatch")
