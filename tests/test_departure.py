"""Where the forward first departs: a user module's submodule outputs (forward hooks) against
the exact intermediates of symgrad's tensor program and their rounding bound."""

import numpy as np
import pytest
import torch

import symgrad as sg
import symgrad.tensor as st
from symgrad.compare import Tolerance
from symgrad.tensor.departure import Capture, first_departure
from symgrad.modules import departure, glue, plan
from symgrad.testing import scale_backward
from symgrad.zoo import gpt2, native_gpt
from tests.gptmodels.bugs import BUGS
from tests.test_modules import HF, SMALL, _book_module, _hf_module, tiny

N = 3
BY_NAME = {b.name: b for b in BUGS}
# the submodule a planted forward bug must be located at (1 layer): its first departure
FIRST = {"layernorm-unbiased": "trf_blocks.0.norm1 (LayerNorm)",
         "gelu-0.0447": "trf_blocks.0.ff.layers.1 (GELU)",
         "attention-scale": "trf_blocks.0.att (MultiHeadAttention)",
         "mask-off-by-one": "trf_blocks.0.att (MultiHeadAttention)",
         "float32-constant": "trf_blocks.0.ff.layers.1 (GELU)"}
CAUSE = {"float32-constant": "a float32 constant in a float64 forward (sqrt(2/pi) rounded to "
                             "float32: relative error 2.8e-08)"}


@pytest.mark.parametrize("bug", list(FIRST))
def test_planted_forward_bug_names_its_first_departing_submodule(bug):
    model, module = tiny(SMALL), _book_module()
    with BY_NAME[bug].book(module):
        r = sg.verify(model, module=module, samples=N, seed=0)
    assert r.verdict == "fail"
    search = r.module.departures["module"]
    assert search.departure is not None
    assert f"{search.departure.site} ({search.departure.kind})" == FIRST[bug]
    f = r.failures[0]
    assert f.cause == "function differs: forward departs"
    message = f.message()
    cause = CAUSE.get(bug, "")  # a recognised cause comes right after the site
    assert (f"the function differs: the forward first departs at {FIRST[bug]}"
            + (f": {cause}; " if cause else " ") + "output[0,") in message
    assert "ULPs > allowance" in message and "\n" not in message
    assert len(message) < 500 + len(cause)  # one line; a named cause adds its own words
    # every intermediate before it was compared and agreed
    assert search.checked[-1] == search.departure.site and len(search.checked) >= 2


def test_backward_only_bug_says_the_function_agrees():
    model, module = tiny(SMALL), _book_module()
    with BY_NAME["backward-1e-7"].book(module):
        r = sg.verify(model, module=module, samples=N, seed=0)
    search = r.module.departures["module"]
    assert r.verdict == "fail" and search.departure is None and search.agrees
    assert {f.cause for f in r.failures} == {"derivative wrong: real derivative error"}
    assert "the forward agrees at every compared intermediate" in r.failures[0].message()
    assert "out_head" in search.checked[-1]  # the whole forward was compared


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_module_has_no_departure(dtype):
    """Correct code at every site, 6 samples: never a false departure (float32 included)."""
    cfg = {**SMALL, "n_layers": 2, "drop_rate": 0.0}
    model = tiny(cfg)
    torch.manual_seed(0)
    module = _book_module(cfg).to(getattr(torch, dtype))
    p = plan(model, module)
    fn = glue.module_fn(model, module, p, glue.ModuleConfig())
    values = model.draw(6, np.random.default_rng(3), dtype)
    for s in range(6):
        search = departure.locate(model, module, fn, p.layout, values, s, dtype=dtype,
                                  device="cpu", tol=Tolerance())
        assert search.departure is None and search.agrees, search.sentence()
        assert len(search.checked) == 1 + 8 * 2 + 2 and not search.skipped


def test_hf_gpt2_layer_norm_bug_is_located_at_ln_1():
    model, module = tiny(HF), _hf_module()
    with BY_NAME["layernorm-unbiased"].hf(module):
        r = sg.verify(model, module=module, samples=N, seed=0)
    d = r.module.departures["module"].departure
    assert d is not None and d.site == "transformer.h.0.ln_1"


def test_every_layout_site_is_a_labelled_node():
    """Each row of the site table names nodes the GPT program has (symgrad's own layout too:
    its module runs with no departure)."""
    prog = gpt2.gpt({**SMALL, "n_layers": 2})
    labels = {n.name for n in st.topological([prog.loss]) if n.name and not n.is_leaf}
    assert {s.format(l=1) for s in gpt2.SITES} <= labels
    for layout, row in departure.SITES.items():
        assert {s.format(l=0) for s in row.values()} <= labels, layout
    cfg = {**SMALL, "drop_rate": 0.0, "qkv_bias": True}
    model = tiny(cfg)
    torch.manual_seed(0)
    module = native_gpt.GPT(gpt2.GPTConfig.from_dict(cfg)).double()
    p = plan(model, module)
    fn = glue.module_fn(model, module, p, glue.ModuleConfig())
    search = departure.locate(model, module, fn, p.layout,
                              model.draw(1, np.random.default_rng(0), "float64"), 0,
                              dtype="float64", device="cpu", tol=Tolerance())
    assert p.layout == "symgrad" and search.agrees and len(search.checked) == 9


class Wrapped(torch.nn.Module):
    """The book GPT one level down: its submodule names ("inner.trf_blocks.0.norm1") match no
    site table, so a custom map cannot locate intermediates by name."""

    def __init__(self, cfg=SMALL) -> None:
        super().__init__()
        self.inner = _book_module(cfg)

    def forward(self, in_idx):
        return self.inner(in_idx)


def test_a_custom_map_says_where_is_not_located():
    """A layout without a site table and submodules of no known GPT family: not located, and
    the sentence says why (since issue 16 the book's own submodule names would be matched)."""
    search = departure.locate(tiny(SMALL), Wrapped(), lambda **b: None, "custom", {}, 0,
                              dtype="float64", device="cpu", tol=Tolerance())
    assert search.departure is None and not search.agrees
    assert "no site table for layout 'custom'" in search.sentence()
    assert departure.site_layout(_book_module()) == "book"
    assert departure.site_layout(Wrapped()) is None


def test_first_departure_is_the_first_in_execution_order():
    """Meant to fail: both intermediates are wrong; the earlier one is named, at its worst
    entry, and an intermediate of the wrong size is skipped with the reason."""
    W, x = st.param("W", (2, 2)), st.input("x", (2,))
    y = st.einsum("ij,j->i", W, x)
    z = st.tanh(y)
    leaves = {"W": np.array([[[1.0, 2.0], [3.0, 4.0]]]), "x": np.array([[0.5, -1.0]])}
    exact_y = np.array([-1.5, -2.5])
    caps = [Capture("odd", "Linear", y, np.zeros(3)),
            Capture("lin", "Linear", y, exact_y + [0.0, 1e-9]),
            Capture("act", "Tanh", z, np.tanh(exact_y) * 2)]
    s = first_departure(caps, leaves, dtype="float64", tol=Tolerance())
    assert s.departure.site == "lin" and s.departure.index == (1,)
    assert s.checked == ("lin",) and s.skipped[0].startswith("odd: 3 values for 2")
    ok = [Capture("lin", "Linear", y, exact_y), Capture("act", "Tanh", z, np.tanh(exact_y))]
    assert first_departure(ok, leaves, dtype="float64", tol=Tolerance()).agrees


# ---------------------------------------------------------------- the tensor path
TINY = {"vocab_size": 7, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1}


def test_tensor_model_failures_get_the_first_split():
    """A tensor model's user torch_fn: a forward bug is "function differs", a backward-only
    bug "derivative wrong" (its intermediates are not visible: split by the loss value)."""
    W, x = st.param("W", (2, 3)), st.input("x", (3,))
    m = sg.TensorModel("lin", st.sum_(st.tanh(st.einsum("ij,j->i", W, x))))
    fwd = sg.verify(m, samples=4, backends=("torch_fn",),
                    torch_fn=lambda W, x: torch.tanh(W @ x * (1 + 1e-9)).sum())
    assert fwd.verdict == "fail"
    assert {f.cause for f in fwd.failures} == {"function differs: different function"}
    assert "not visible" in fwd.failures[0].note
    bwd = sg.verify(m, samples=4, backends=("torch_fn",),
                    torch_fn=lambda W, x: torch.tanh(scale_backward(W, 1 + 1e-9) @ x).sum())
    assert bwd.verdict == "fail"
    assert {f.cause for f in bwd.failures} == {"derivative wrong: real derivative error"}


def test_own_tensor_program_departure_is_located(monkeypatch):
    """Meant to fail: symgrad's own numpy program with a GELU off by 1e-9 (a planted table):
    the failure says the function differs and where: the labelled node h0.gelu."""
    import sympy as sp

    from symgrad.tensor import views
    from symgrad.tensor.tables import NumpyOps

    class BuggyGelu(NumpyOps):
        def map(self, expr, env):
            v = super().map(expr, env)
            return v * (1 + 1e-9) if expr.has(sp.tanh) else v
    monkeypatch.setattr(views, "NumpyOps", BuggyGelu)
    r = sg.verify(gpt2.gpt(TINY), samples=2, seed=0, backends=("numpy",))
    assert r.verdict == "fail"
    numpy = [f for f in r.failures if f.backend == "numpy"]
    assert numpy and {f.cause for f in numpy} == {
        "symgrad's own program — function differs: forward departs"}
    assert "the forward first departs at h0.gelu (map) output[" in numpy[0].message()


def test_own_tensor_program_that_agrees_keeps_the_derivative_split():
    """symgrad's own torch program is correct: the search over its labelled nodes agrees."""
    from symgrad.tensor.departure import own_program
    from symgrad.tensor.tables import TorchOps
    m = gpt2.gpt(TINY)
    values = m.draw(1, np.random.default_rng(0), "float32")
    caps = own_program([m.loss], TorchOps("float32", "cpu"), values)
    assert [c.site for c in caps][:3] == ["emb", "h0.ln1", "h0.attn"] and len(caps) == 10
    s = first_departure(caps, values, dtype="float32", tol=Tolerance())
    assert s.agrees, s.sentence()


def test_train_mode_departure_with_fed_keep_masks():
    """train=True: the module's dropout is fed symgrad's keep-masks; the program compared with
    has the same keep-mask inputs, so a forward bug is still located (and nothing before it)."""
    cfg = {**SMALL, "drop_rate": 0.25}
    model, module = tiny(cfg), _book_module(cfg)
    with BY_NAME["gelu-0.0447"].book(module):
        r = sg.verify(model, module=module, samples=2, seed=0, train=True)
    d = r.module.departures["module"].departure
    assert r.verdict == "fail" and d is not None and d.site == "trf_blocks.0.ff.layers.1"


def test_module_with_a_tensor_model_runs_the_module_and_locates_its_departure():
    """Meant to fail on the old behaviour: module= was ignored for a tensor program, so a
    buggy module 'passed' (only symgrad's own programs ran). The tensor GPT now runs the
    module as a backend, and the departure search runs on its failures."""
    model, module = gpt2.gpt(SMALL), _book_module()
    assert sg.verify(model, module=module, samples=2, seed=0).ok
    with BY_NAME["layernorm-unbiased"].book(module):
        r = sg.verify(model, module=module, samples=2, seed=0)
    d = r.module.departures["module"].departure
    assert r.verdict == "fail" and d is not None and d.site == "trf_blocks.0.norm1"
