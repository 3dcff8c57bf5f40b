"""One ``at=`` validation for both model kinds (``symgrad.points``): a non-integer value for an
Integers input and a mistyped block name are one-line errors, never a silent truncation."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
import symgrad.tensor as st
from symgrad.domains import Integers
from symgrad.errors import SymgradError
from symgrad.tensor.model import TensorModel


def _tensor_model() -> TensorModel:
    W = st.param("W", (3, 2))
    k = st.input("k", (1,), Integers(0, 2))
    return TensorModel("pick", st.sum_(st.take(st.tanh(W), k)))


def _scalar_model() -> sg.Model:
    w, k = sp.symbols("w k", real=True)
    return sg.Model("scaled", sp.tanh(w) * k, params=[w], inputs={k: Integers(0, 3)})


def _tensor_at(**over):
    at = {"W": np.full((1, 3, 2), 0.5), "k": np.array([[2]])}
    at.update(over)
    return at


def test_tensor_at_refuses_a_non_integer_token():
    with pytest.raises(SymgradError, match=r"at: input 'k' is Integers\(low=0, high=2\) but "
                                           r"got the non-integer value 1.5; give whole numbers"):
        sg.verify(_tensor_model(), at=_tensor_at(k=np.array([[1.5]])))


def test_tensor_at_refuses_a_mistyped_block_name():
    at = _tensor_at()
    at["Wq"] = at.pop("W")
    with pytest.raises(SymgradError, match=r"at: unknown name\(s\) \['Wq'\]; missing \['W'\]; "
                                           r"the blocks are W, k"):
        sg.verify(_tensor_model(), at=at)


def test_tensor_at_accepts_whole_numbers_and_one_sample():
    r = sg.verify(_tensor_model(), at={"W": np.full((3, 2), 0.5), "k": [2.0]})
    assert r.ok and r.values["k"].dtype == np.int64 and r.values["k"].tolist() == [[2]]


def test_scalar_at_refuses_a_non_integer_and_a_typo():
    m = _scalar_model()
    with pytest.raises(SymgradError, match="input 'k' is .* non-integer value 2.5"):
        sg.verify(m, at={"w": [0.3], "k": [2.5]})
    with pytest.raises(SymgradError, match=r"unknown name\(s\) \['kk'\]; missing \['k'\]"):
        sg.verify(m, at={"w": [0.3], "kk": [2.0]})


def test_tensor_at_refuses_an_id_out_of_range():
    with pytest.raises(SymgradError, match=r"input 'k' is Integers\(low=0, high=2\) but got 4\.0; "
                                           r"give ids in 0\.\.2"):
        sg.verify(_tensor_model(), at={"W": np.full((3, 2), 0.5), "k": [4.0]})


def test_integer_input_without_domain_takes_the_range_it_indexes():
    """st.input(integer=True) with no domain drew Normal(0, 1) ids and crashed deep in verify
    ('an id is outside 0..3'); it now draws 0..V-1 of the smallest table it indexes."""
    E, t = st.param("E", (4, 3)), st.input("t", (5,), integer=True)
    y = st.input("y", (5,), integer=True)
    m = TensorModel("ids", st.cross_entropy(st.dense(st.embedding(t, E), st.param("V", (6, 3))), y))
    domains = {b.name: b.domain for b in m.blocks}
    assert domains["t"] == Integers(0, 3) and domains["y"] == Integers(0, 5)
    assert sg.verify(m, samples=4).verdict == "pass"
    with pytest.raises(SymgradError, match=r"input 'z': integer=True with the non-integer domain"):
        st.input("z", (2,), sg.Normal(), integer=True)


def _domains_model() -> sg.Model:
    w, y, m, u, s = sp.symbols("w y m u s", real=True)
    return sg.Model("domains", w * y * m * u * s, params=[w],
                    inputs={y: sg.Choice([0, 1]), m: sg.Bernoulli(0.9), u: sg.Uniform(-1, 2),
                            s: sg.LogUniform(0.1, 10)})


_GOOD = {"w": [0.5, 0.5], "y": [0, 1], "m": [1, 0], "u": [-1, 2], "s": [0.1, 10]}


@pytest.mark.parametrize("name, value, message", [
    ("y", 0.5, r"at: input 'y' is Choice\(values=\(0\.0, 1\.0\)\) but got 0\.5; give one of 0, 1 "
               r"\(sample 1\)"),
    ("m", 2.0, r"at: input 'm' is Bernoulli\(p=0\.9\) but got 2\.0; give 0 or 1 \(sample 1\)"),
    ("u", 2.5, r"at: input 'u' is Uniform\(low=-1, high=2\) but got 2\.5; give values in "
               r"\[-1, 2\] \(sample 1\)"),
    ("s", -1.0, r"at: input 's' is LogUniform\(low=0\.1, high=10\) but got -1\.0; give values "
                r"in \[0\.1, 10\]"),
    ("y", float("nan"), r"input 'y' is Choice.* but got nan; give one of 0, 1")])
def test_at_refuses_a_value_outside_its_domain(name, value, message):
    """sg.Choice([0, 1]) accepted 0.5 (and Bernoulli 2, Uniform a value past its range): one
    line naming the block, the entry and the allowed values, for both model kinds."""
    at = {**_GOOD, name: [_GOOD[name][0], value]}
    with pytest.raises(SymgradError, match=message):
        sg.verify(_domains_model(), at=at)


def test_at_accepts_every_value_inside_the_domains():
    assert sg.verify(_domains_model(), at=_GOOD).ok


def test_tensor_at_refuses_a_choice_value_and_names_the_entry():
    W, y = st.param("W", (3,)), st.input("y", (3,), sg.Choice([0, 1]))
    m = TensorModel("choice", st.sum_(st.map_(sp.tanh(st.X[0]) * st.X[1], W, y)))
    assert sg.verify(m, at={"W": [0.1, 0.2, 0.3], "y": [1, 0, 1]}).ok
    with pytest.raises(SymgradError, match=r"at: input 'y' is Choice\(values=\(0\.0, 1\.0\)\) "
                                           r"but got 0\.5; give one of 0, 1 \(sample 0, entry "
                                           r"\[2\]\)"):
        sg.verify(m, at={"W": [0.1, 0.2, 0.3], "y": [1, 0, 0.5]})


def test_at_shape_messages_offer_one_sample_and_name_the_other_count():
    """newuser4 S3-2: a wrong shape offered only (N, 4, 3) though one sample in the block's own
    shape is accepted; a count mismatch said "(N, ) with the same N" without the other N."""
    X, W1 = sg.matrix("X", 2, 3), sg.matrix("W1", 4, 3)
    m = sg.Model("lin", sg.ops.total(sg.ops.tanh(sg.ops.dense(X, W1))), params=[W1],
                 inputs={X: sg.Normal(0, 1)})
    with pytest.raises(SymgradError, match=r"^at: 'W1' must have its block's shape \(4, 3\) for "
                                           r"one sample or \(N, 4, 3\) for N samples; got shape "
                                           r"\(3, 4\)$"):
        sg.verify(m, at={"W1": np.zeros((3, 4)), "X": np.zeros((2, 3))})
    a, c = sp.symbols("a c")
    h = sg.Model("h", (a + c) ** 2, params=[a, c])
    with pytest.raises(SymgradError, match=r"^at: 'c' has 1 sample\(s\) but 'a' has 2; give "
                                           r"every block the same number of samples$"):
        sg.verify(h, at={"a": [1.0, 2.0], "c": [0.0]})
    with pytest.raises(SymgradError, match=r"'a' must have its block's shape \(\) for one sample "
                                           r"or \(N,\) for N samples; got shape \(1, 2\)"):
        sg.verify(h, at={"a": [[1.0, 2.0]], "c": [0.0]})
    assert sg.verify(h, at={"a": 1.0, "c": 0.5}).verdict == "pass"


def test_at_refuses_nan_and_an_infinite_parameter_before_anything_runs():
    """newuser5: at= with w = NaN (or inf) ran and ended FAIL, every entry "domain: log/sqrt of
    a negative, division by zero" - a verdict about a point where nothing can be verified."""
    w, x = sp.symbols("w x")
    m = sg.Model("sq", (w * x - 1) ** 2, params=[w], inputs={x: sg.Normal(0, 1)})
    with pytest.raises(SymgradError, match=r"^at: parameter 'w' is nan; give finite numbers: "
                                           r"the loss and its gradient are undefined there$"):
        sg.verify(m, at={"w": float("nan"), "x": 1.0})
    with pytest.raises(SymgradError, match=r"^at: parameter 'w' is -inf \(sample 1\); give "):
        sg.verify(m, at={"w": [1.0, -np.inf], "x": [1.0, 2.0]})
    with pytest.raises(SymgradError, match=r"^at: input 'x' is nan \(sample 0\); give finite"):
        sg.verify(m, at={"w": [1.0, 2.0], "x": [np.nan, 2.0]})
    with pytest.raises(SymgradError, match=r"^explain: at: parameter 'w' is inf; give finite"):
        sg.explain(m, at={"w": np.inf, "x": 1.0})  # printed an "exact" dL/dw = -2.0 before
    with pytest.raises(SymgradError, match=r"^exact_at: parameter 'w' is nan; give finite"):
        sg.exact_at(m, {"w": "nan", "x": 1.0})  # gave value 1.0, d/dw -2.0 before
    assert sg.verify(m, at={"w": 0.5, "x": 3.0}).verdict == "pass"


def test_a_module_with_nan_is_refused_in_its_own_names():
    """newuser8: sg.verify(module=) with a NaN weight said "at: parameter 'fc1_weight' is nan":
    symgrad's block name, and at=, an argument the user never gave. Now the module's own
    names (0.weight, 1.running_var) and what each is (parameter, buffer, input)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double().eval()
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    run = lambda inputs=x: sg.verify(module=net, inputs=inputs, targets=y,  # noqa: E731
                                     loss=F.cross_entropy, samples=2)
    who = r"^verify\(module=Sequential\): "
    with pytest.raises(SymgradError, match=who + r"input 'input' is nan \(sample 0, entry "
                       r"\[1, 2\]\); give finite numbers"):
        run(x.index_put((torch.tensor(1), torch.tensor(2)), torch.tensor(float("nan"), dtype=torch.float64)))
    with torch.no_grad():
        net[0].weight[1, 2] = float("inf")
    with pytest.raises(SymgradError, match=who + r"parameter '0.weight' is inf \(sample 0, "
                       r"entry \[1, 2\]\)"):
        run()
    with torch.no_grad():
        net[0].weight[1, 2] = 0.5
        net[1].running_var[2] = float("nan")
    with pytest.raises(SymgradError, match=who + r"buffer '1.running_var' is nan"):
        run()
    net[1].running_var[2] = 1.0
    assert run().verdict == "pass"


def test_an_infinite_input_is_accepted_as_a_mask_may_be():
    from symgrad.points import given_samples
    W, mask = st.param("W", (2,)), st.input("mask", (2,))
    m = TensorModel("masked", st.sum_(st.map_(sp.tanh(st.X[0]) + st.X[1], W, mask)))
    v = given_samples(m, {"W": [0.1, 0.2], "mask": [0.0, -np.inf]}, "at")
    assert v["mask"].tolist() == [[0.0, -np.inf]]
