"""symgrad.tensor.bound: the worst-case rules (exact zeros add no rounding), the probabilistic
mode (sqrt(n) in contractions, never above the worst case), and both against real errors of
correct GPT code (never exceeded) and planted bugs (caught)."""

import numpy as np
import pytest

import symgrad as sg
import symgrad.tensor as st
from symgrad.backends.torch import run_torch_fn
from symgrad.compare import FAILING, INCONCLUSIVE, MISMATCH, Tolerance, allowance, compare
from symgrad.errors import SymgradError
from symgrad.tensor import operands
from symgrad.tensor.bound import evaluate_bound
from symgrad.tensor.tables import oracle_ops
from symgrad.tensor.views import _flatten, oracle_view, torch_view
from symgrad.testing import scale_backward
from symgrad.zoo import native_gpt
from symgrad.zoo.gpt import GPTConfig
from symgrad.zoo.gpt2 import gpt


SMALL = {"vocab_size": 11, "context_length": 6, "emb_dim": 8, "n_heads": 2, "n_layers": 2,
         "drop_rate": 0.1}


def _E(out, leaves, **kw):
    return evaluate_bound([out], leaves, **kw)[0]


def test_sum_of_n_terms_worst_and_probabilistic():
    a = st.param("a", (100,))
    leaves = {"a": np.ones((1, 100))}
    assert _E(st.sum_(a), leaves)[0] == 99 * 100.0  # 99 additions, each of at most |100|
    assert _E(st.sum_(a), leaves, mode="probabilistic", sigmas=1.0)[0] == pytest.approx(
        np.sqrt(99) * 100)
    assert _E(st.sum_(a), leaves, mode="probabilistic")[0] == pytest.approx(8 * np.sqrt(99) * 100)
    short = {"a": np.ones((1, 3))}  # min(E, lam sigma): for short sums the worst case is smaller
    b = st.param("a", (3,))
    assert _E(st.sum_(b), short, mode="probabilistic")[0] == _E(st.sum_(b), short)[0] == 6.0


def test_probabilistic_adds_propagated_errors_in_quadrature():
    x, W = st.param("x", (64,)), st.param("W", (64,))
    y = st.einsum("i,i->", st.map_(st.X[0] ** 3, x), W)
    rng = np.random.default_rng(0)
    leaves = {"x": rng.normal(size=(1, 64)), "W": rng.choice([-1.0, 1.0], size=(1, 64))}
    c = np.abs(leaves["x"][0]) ** 3  # the cube's own bound: |x^3| (x is exact)
    # worst: sum |W| E_c + (63 additions + 1 product) sum |c W|
    assert _E(y, leaves)[0] == pytest.approx(c.sum() + 64 * c.sum())
    assert _E(y, leaves, mode="probabilistic", sigmas=1.0)[0] == pytest.approx(
        np.sqrt((c * c).sum()) + 8 * c.sum())


def test_long_sums_grow_linearly_beyond_sqrt_terms():
    """One-by-one float32 summation of 2^20 equal terms rounds the same way every time: its
    error (1 %) breaks the sqrt(n) model 5-fold; sqrt growth up to 1024 terms and linear
    beyond keeps it at a sixth of the allowance."""
    n = 1 << 20
    a = st.param("a", (n,))
    x = np.full(n, 0.1, dtype=np.float32)
    leaves = {"a": x[None].astype(np.float64)}
    exact = float(np.sum(x.astype(np.float64)))
    err = abs(float(np.add.accumulate(x)[-1]) - exact)  # recursive summation in float32

    def ratio(**kw):
        E = _E(st.sum_(a), leaves, mode="probabilistic", **kw)
        return err / allowance(E, "float32", Tolerance())[0]
    assert ratio() < 0.25
    assert ratio(sqrt_terms=n) > 1  # the plain sqrt(n) model would raise a false alarm
    assert Tolerance().entry_sqrt_terms == 1024


def test_exact_zeros_add_no_rounding():
    """The target logit picked by sum(logits * onehot) costs one product, not V - 1 additions;
    an all-zero keep-mask leaves an exact zero."""
    from symgrad.tensor.program import onehot
    logits = st.param("logits", (1, 50))
    t = st.input("t", (1,), sg.Integers(0, 49))
    picked = st.sum_(logits * onehot(t, 50))
    leaves = {"logits": np.full((1, 1, 50), 3.0), "t": np.array([[7]])}
    assert _E(picked, leaves)[0] == 3.0  # |3| x the one rounding of the product
    assert _E(picked, leaves, exact_zeros=False)[0] == 3.0 + 49 * 3.0
    keep = st.input("keep", (4,), sg.Choice([0.0, 1.0]))
    x = st.param("x", (4,))
    dropped = st.sum_(st.map_(st.X[0] * st.X[1] * 3, x, keep))
    leaves = {"x": np.full((1, 4), 1.5), "keep": np.array([[0.0, 1.0, 0.0, 0.0]])}
    E = _E(dropped, leaves)[0]
    assert E == _E(st.map_(st.X[0] * st.X[1] * 3, x, keep), leaves)[0, 1]  # no addition


def test_unknown_mode_is_a_clear_error():
    a = st.param("a", (2,))
    with pytest.raises(SymgradError, match="entry_bound='typo'"):
        _E(st.sum_(a), {"a": np.ones((1, 2))}, mode="typo")
    with pytest.raises(SymgradError, match="entry_bound='typo'"):
        Tolerance(entry_bound="typo")
    with pytest.raises(SymgradError, match="entry_sigmas=0"):
        Tolerance(entry_sigmas=0)


def _run(model, dtype, seed, samples, fn):
    values = model.draw(samples, np.random.default_rng(seed), dtype)
    hi, lo = oracle_view(model, values, oracle_ops())
    got = {"torch": torch_view(model, values, dtype=dtype, device="cpu"),
           "native": run_torch_fn(fn, model.blocks, values, device="cpu", dtype=dtype)[0]}
    bounds = {mode: _flatten(model, evaluate_bound(model.gradient.outputs, values, mode=mode),
                             np.asarray, samples) for mode in ("worst", "probabilistic")}
    return hi, lo, got, bounds


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_probabilistic_bound_holds_on_correct_gpt_and_is_tighter(dtype):
    m = gpt(SMALL, dropout=True)
    for seed in range(2):
        hi, lo, got, bounds = _run(m, dtype, seed, 3, m.reference)
        assert np.all(bounds["probabilistic"] <= bounds["worst"])
        w, p = bounds["worst"][:, 1:], bounds["probabilistic"][:, 1:]
        assert np.median(p[w > 0] / w[w > 0]) < 0.5
        for backend, g in got.items():
            for mode, E in bounds.items():
                tol = Tolerance(entry_bound=mode)
                c = compare(hi, lo, g, E, backend=backend, dtype=dtype, tol=tol)
                assert not (c.status == MISMATCH).any(), (seed, backend, mode)
                # real errors stay far inside even the probabilistic allowance
                with np.errstate(all="ignore"):
                    ratio = c.error[:, 1:] / c.allowed_abs[:, 1:]
                assert np.nanmax(ratio) < 0.25, (seed, backend, mode, np.nanmax(ratio))


def test_probabilistic_verdict_resolves_float32_and_catches_a_1e10_attention_bug():
    """float32: fewer inconclusive entries than the worst case; float64: the entry test alone
    catches a (1 + 1e-10) attention-weights backward that the worst case excuses."""
    m = gpt(SMALL, dropout=True)
    r32w, r32p = (sg.verify(m, torch_fn=m.reference, config=sg.VerifyConfig(
        samples=4, dtype="float32", tolerance=Tolerance(entry_bound=mode),
        backends=("torch_fn",))) for mode in ("worst", "probabilistic"))
    assert r32p.verdict != "fail", str(r32p)
    inc = [(r.comparisons["torch_fn"].status == INCONCLUSIVE).mean() for r in (r32w, r32p)]
    assert inc[1] < inc[0] / 2, inc
    cfg = GPTConfig.from_dict(SMALL)
    bug = native_gpt.reference(cfg, weights_hook=lambda t: scale_backward(t, 1 + 1e-10))
    rp = sg.verify(m, torch_fn=bug, config=sg.VerifyConfig(samples=4, backends=("torch_fn",)))
    assert Tolerance().entry_bound == "probabilistic"  # the default
    assert rp.verdict == "fail"
    assert np.isin(rp.comparisons["torch_fn"].status, FAILING).any()
    rw = sg.verify(m, torch_fn=bug, config=sg.VerifyConfig(
        samples=4, backends=("torch_fn",), tolerance=Tolerance(entry_bound="worst")))
    assert not (rw.comparisons["torch_fn"].status == MISMATCH).any()  # the worst case excuses it


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tensor_tiny_gpt_no_false_alarm_over_seeds(dtype):
    """The default (probabilistic) verdict on correct code: symgrad's torch view, numpy and the
    native module, 6 seeds."""
    from symgrad.zoo.gpt2 import tiny_gpt
    m = tiny_gpt()
    for seed in range(6):
        r = sg.verify(m, torch_fn=m.reference, samples=4, seed=seed, dtype=dtype)
        assert r.verdict != "fail", str(r)


@pytest.mark.parametrize("mode", ["worst", "probabilistic"])
def test_stacked_terms_equal_the_terms_one_by_one(monkeypatch, mode):
    """A GEMM against a large operand forms |A||B|, E_A |B| and (beyond n0 terms) sigma_A |B|
    as one stacked einsum (symgrad.tensor.operands): the same E as each term on its own, on a
    GPT's logits and their gradient (6 tokens, 8 features, 40 vocabulary rows; n0 = 4 so that
    the sigma_A |B| terms are stacked too). A term put in the wrong place is off by O(1)."""
    model = gpt({**SMALL, "vocab_size": 40, "drop_rate": 0.0}, tokens=6)
    leaves = model.draw(2, np.random.default_rng(3), "float64")
    outs = model.gradient.outputs
    real, calls = operands._stacked, []
    monkeypatch.setattr(operands, "_stacked", lambda *a: calls.append(a[2]) or real(*a))
    one_by_one = evaluate_bound(outs, leaves, mode=mode, sqrt_terms=4)
    assert not calls  # nothing this small reaches STACK_FROM
    monkeypatch.setattr(operands, "STACK_FROM", 0)
    together = evaluate_bound(outs, leaves, mode=mode, sqrt_terms=4)
    assert calls  # some GEMM's terms were stacked
    for a, b in zip(one_by_one, together):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=0)
