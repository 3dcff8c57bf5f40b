import json

import symgrad as sg


def test_table_has_a_row_per_parameter_block(models):
    r = sg.verify(models["simplenet"], samples=20, seed=0)
    text = str(r)
    for row in ("value", "d/dW1", "d/db1", "d/dW2", "d/db2"):
        assert row in text
    assert "numpy worst ULPs" in text and "torch worst ULPs" in text and "verdict" in text


def test_as_dict_is_json_and_carries_the_tolerance(models):
    d = sg.verify(models["neuron"], samples=20, seed=0).as_dict()
    doc = json.loads(json.dumps(d))
    assert doc["config"]["tolerance"]["rule"].startswith("|got - exact|")
    assert doc["backends"]["torch"]["counts"]["ok"] > 0


def test_exact_zero_is_measured_against_its_terms():
    import numpy as np
    from symgrad.compare import Tolerance, compare
    from symgrad.config import VerifyConfig
    from symgrad.result import measures
    exact = np.array([[0.0, 1.0]])
    got = np.array([[3e-16, 1.0 + 2.0**-52]])
    bound = np.array([[2.0, 1.0]])  # the zero came from terms of size ~2
    c = compare(exact, np.zeros_like(exact), got, bound, backend="numpy", dtype="float64",
                tol=Tolerance())
    assert c.ulps[0, 0] > 1e300  # ULPs of zero count subnormal steps: meaningless
    m = measures(c, VerifyConfig())
    assert np.all(np.isfinite(m.ulps)) and m.ulps[0, 0] < 10  # ULPs of the terms' scale
    assert abs(m.relative[0, 0] - 3e-16 / 2.0) < 1e-20
    assert abs(m.ulps[0, 1] - 1.0) < 1e-9 and 0 < m.ratio[0, 1] < 1


def test_large_results_are_measured_in_column_chunks_with_the_same_figures(models, monkeypatch):
    # GPT-2's 163M entries cannot hold five float64 measure arrays per backend: above
    # MEASURE_WHOLE a Result measures column chunks; every figure must be the same
    import symgrad.result as res
    small = sg.verify(models["simplenet"], samples=30, seed=1)
    whole = (small.as_dict(), [small.measure(f) for f in small.worst])
    monkeypatch.setattr(res, "MEASURE_WHOLE", 10)
    monkeypatch.setattr(res, "MEASURE_CHUNK", 64)  # a few columns per chunk
    small._memo.clear()
    chunked = (small.as_dict(), [small.measure(f) for f in small.worst])
    for name, b in whole[0]["backends"].items():  # the median is taken over float32 ULPs
        got = chunked[0]["backends"][name].pop("median_ulps")
        assert abs(got - b.pop("median_ulps")) <= 1e-6 * got
    assert chunked == whole
    assert not any(k[0] == "measures" for k in small._memo)  # nothing held whole


def test_printing_a_result_never_scans_the_entry_names():
    # GPT-2 has 163M entry names, formatted on demand: `symgrad verify gpt2` without --json
    # once hung for 26 minutes looking each finding up with outputs.index(). A finding must be
    # found from its own column (O(1)), so str() reads only the names it prints.
    import symgrad.tensor as st
    from symgrad.tensor.model import TensorModel

    W, x = st.param("W", (40, 50)), st.input("x", (50,))
    model = TensorModel("wide", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))

    def wrong(W, x):  # forward right, backward x2: every entry fails
        import torch
        from symgrad.testing import scale_backward
        return torch.tanh(scale_backward(W, 2.0) @ x).sum()
    r = sg.verify(model, torch_fn=wrong, samples=2, seed=0, backends=("torch_fn",))
    assert not r.ok and r.failures

    class Counting(list):
        reads = 0

        def __getitem__(self, k):
            Counting.reads += 1
            return list.__getitem__(self, k)

        def index(self, *a):
            raise AssertionError("a finding was looked up by scanning the entry names")
    r.outputs = Counting(r.outputs)
    text = str(r)
    assert "torch_fn" in text and Counting.reads < 50  # 2,001 names; only the shown ones read
    assert all(r.locate(f)[1] == f.column for f in r.failures)


def test_a_message_shows_a_large_models_inputs_not_every_parameter_block():
    # tiny_gpt's point has 38 blocks: a one-line message shows the inputs (last, after the
    # parameters) and counts the rest; the Failure keeps the whole point for the JSON
    from symgrad.result import Failure
    point = {f"p{i}": [float(i)] * 5 for i in range(36)}
    point.update(ids=[1, 2, 3], targets=[2, 3, 4])
    f = Failure("torch_fn", "mismatch", "d/dp0[0]", 3, point, 1.0, 2.0, 1e16, 4.0)
    msg = f.message()
    assert "34 earlier blocks as drawn" in msg and "ids=[1, 2, 3]" in msg and "p0=" not in msg
    assert len(msg) < 400 and len(f.as_dict()["point"]) == 38
