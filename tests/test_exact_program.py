"""``sg.exact_at`` on the tensor program: a TensorModel directly, a plain model through
``as_program``, certified in arb balls; the tutorial's numbers, sympy.diff's, the one-line point
errors, and a clear error where the derivative does not exist."""

import re

import mpmath
import numpy as np
import pytest
import sympy as sp

import symgrad as sg
import symgrad.tensor as st
from symgrad import SymgradError, zoo
from symgrad.tensor.model import TensorModel

DPS = 50


def _point(model, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    drawn = model.draw(1, rng, "float64")
    return {b.name: np.asarray(drawn[b.name])[0].tolist() for b in model.blocks}


def _agree(a: dict, b: dict, digits: int = 45) -> None:
    assert list(a) == list(b)
    with mpmath.workdps(DPS + 10):
        for k in a:
            scale = max(abs(b[k]), mpmath.mpf(1))
            assert abs(a[k] - b[k]) <= scale * mpmath.mpf(10) ** -digits, (k, a[k], b[k])


def test_tutorial_numbers():
    at = {"x": 1.1, "w": 2.2, "b": 0, "y": 1}
    g = sg.exact_at(zoo.get("neuron"), at)
    assert (round(float(g["d/dw"]), 4), round(float(g["d/db"]), 4)) == (-0.0898, -0.0817)


def test_tensor_model_against_sympy_diff_in_mpmath():
    """A small TensorModel, gradient entry by entry against sympy.diff of the same loss
    written out by hand, evaluated by mpmath at 60 digits."""
    W, x = st.param("W", (2, 3)), st.input("x", (3,))
    m = TensorModel("small", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
    ws = sp.symbols("w0:6")
    xs = sp.symbols("x0:3")
    loss = sum(sp.tanh(sum(ws[3 * i + j] * xs[j] for j in range(3))) for i in range(2))
    Wv, xv = [[0.3, -1.2, 0.7], [2.0, 0.25, -0.5]], ["0.1", 1.5, -2.0]
    got = sg.exact_at(m, {"W": Wv, "x": xv}, dps=DPS)
    subs = dict(zip(ws, [sp.Float(v, 60) for row in Wv for v in row]))
    subs.update(zip(xs, [sp.Float(v, 60) for v in xv]))
    with mpmath.workdps(60):
        want = {"value": mpmath.mpf(str(loss.evalf(60, subs=subs)))}
        for k, w in enumerate(ws):
            want[f"d/dW[{k // 3},{k % 3}]"] = mpmath.mpf(str(sp.diff(loss, w).evalf(60, subs=subs)))
    _agree(got, want)
    assert list(got) == ["value"] + [f"d/d{e}" for e in m.entries]


def test_tiny_gpt_program_gives_every_entry_certified():
    m = zoo.get("tiny_gpt")
    point = _point(m, seed=1)
    g = sg.exact_at(m, point, dps=30)
    assert len(g) == 1 + m.n_parameters
    assert all(mpmath.isfinite(v) for v in g.values())
    assert float(g["value"]) > 0
    # moving one weight by h changes the loss by ~ h * its derivative (a finite difference
    # at 30 digits: agrees to ~h)
    b = m.param_blocks[0]
    h = 1e-12
    moved = {k: np.array(v, dtype=np.float64) for k, v in point.items()}
    moved[b.name].reshape(-1)[0] += h
    step = float(moved[b.name].reshape(-1)[0]) - float(np.asarray(point[b.name]).reshape(-1)[0])
    g2 = sg.exact_at(m, {k: v.tolist() for k, v in moved.items()}, dps=30)
    with mpmath.workdps(30):
        fd = (g2["value"] - g["value"]) / step
        assert abs(fd - g[f"d/d{b.entry(0)}"]) <= 1e-9 * max(1, abs(fd))


def test_point_errors_are_the_same_one_line_errors():
    w, k = sp.symbols("w k")
    m = sg.Model("ints", w * k, params=[w], inputs={k: sg.Integers(0, 9)})
    with pytest.raises(SymgradError, match="exact_at: input 'k' is Integers.*non-integer"):
        sg.exact_at(m, {"w": 1.0, "k": 2.5})
    with pytest.raises(SymgradError, match=r"exact_at: no value for 'k'"):
        sg.exact_at(m, {"w": 1.0})
    with pytest.raises(SymgradError, match=r"exact_at: unknown name\(s\) \['kk'\]"):
        sg.exact_at(m, {"w": 1.0, "kk": 2})
    t = zoo.get("tiny_gpt")
    point = _point(t)
    ids = next(b for b in t.blocks if b.domain.integer)
    bad = dict(point, **{ids.name: (np.asarray(point[ids.name]) + 0.5).tolist()})
    with pytest.raises(SymgradError, match=f"exact_at: input '{ids.name}' is Integers.*non-integer"):
        sg.exact_at(t, bad)
    blk = t.param_blocks[0]
    wrong = dict(point, **{blk.name: np.zeros(blk.size + 1).tolist()})
    with pytest.raises(SymgradError, match=re.escape(f"exact_at: '{blk.name}' has shape {blk.shape}")):
        sg.exact_at(t, wrong)
    with pytest.raises(SymgradError, match="exact_at: unknown name"):
        sg.exact_at(t, dict(point, nope=1.0))


def test_a_point_where_the_derivative_does_not_exist_is_one_line():
    x = sp.Symbol("x")
    m = sg.Model("sqrt", sp.sqrt(x), params=[x])
    with pytest.raises(SymgradError, match=r"exact_at: d/dx of sqrt could not be certified"):
        sg.exact_at(m, {"x": 0.0})
    assert abs(sg.exact_at(m, {"x": 4.0})["d/dx"] - mpmath.mpf(1) / 4) < mpmath.mpf(10) ** -45
    v = st.param("v", (2,))
    t = TensorModel("logs", st.sum_(st.log(v)))
    with pytest.raises(SymgradError, match=r"exact_at: (value|d/dv\[1\]) of logs could not be "
                                           r"certified to 50 digits.*move the point$"):
        sg.exact_at(t, {"v": [1.0, 0.0]})
    assert sg.exact_at(t, {"v": [1.0, 0.5]})["d/dv[1]"] == 2
