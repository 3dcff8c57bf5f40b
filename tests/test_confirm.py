"""Statistical suspicions are confirmed by an independent experiment before they fail anything
(symgrad.confirm, issue 16): the false alarms of the block and pooled tests on correct code
(gpt_attention seeds, the key-bias third of an attention bias, a shared cancelling scalar)
pass, and planted bugs the pooled test could not reach (float16 neuron x 1.02, float32 x
(1 + 2e-6), tiny_gpt's whole gradient x (1 + 1e-5)) fail once confirmed."""


import numpy as np
import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.compare import (FAILING, INCONCLUSIVE, LOSS, MISMATCH, OK, SUSPECT, SYSTEMATIC,
                             Tolerance, compare, systematic)
from symgrad.confirm import Experiments, _sign_tail, confirm, fresh_count
from symgrad.testing import scale_backward
from symgrad.zoo import gpt2


def _failing(r):
    return {n: int(np.isin(c.status, FAILING).sum()) for n, c in r.comparisons.items()
            if np.isin(c.status, FAILING).any()}


def _left_suspect(r):
    return any((c.status == SUSPECT).any() for c in r.comparisons.values())


# ---------------------------------------------------------------- false alarms, reproduced
@pytest.mark.parametrize("dtype,seed", [("float64", 25), ("float32", 25)])
def test_gpt_attention_rounding_outlier_is_not_confirmed(models, dtype, seed):
    """Before: FAIL, "(1 + 0.00156) x exact, allowed 0.00124", every entry at 0.0014 of its
    allowance. A per-sample rounding outlier does not repeat on fresh samples."""
    m = models["gpt_attention"]
    r = sg.verify(m, torch_fn=m.reference, samples=100, seed=seed, dtype=dtype)
    # float64 resolves every entry: pass; float32's worst-case bound leaves some attention
    # entries unresolved (allowance >= |exact|): inconclusive, which is no false alarm
    assert (r.ok if dtype == "float64" else r.verdict == "inconclusive"), str(r)
    assert not _failing(r) and not _left_suspect(r), str(r)


@pytest.mark.slow
@pytest.mark.parametrize("dtype,seed", [("float64", 44), ("float64", 122), ("float64", 156),
                                        ("float64", 192), ("float32", 178)])
def test_gpt_attention_seeds_that_failed(models, dtype, seed):
    m = models["gpt_attention"]
    r = sg.verify(m, torch_fn=m.reference, samples=100, seed=seed, dtype=dtype)
    # float64 resolves every entry: pass; float32's worst-case bound leaves some attention
    # entries unresolved (allowance >= |exact|): inconclusive, which is no false alarm
    assert (r.ok if dtype == "float64" else r.verdict == "inconclusive"), str(r)
    assert not _failing(r) and not _left_suspect(r), str(r)


def test_key_bias_with_zero_exact_gradient_is_never_flagged():
    """softmax is shift-invariant in the keys: the key-bias third of the attention bias has an
    exact gradient of zero (the oracle's 1e-37 against float64's 1e-21). Before: numpy
    "systematic ... (1 + 1.44e+16) x exact" at sample 3."""
    m = gpt2.tiny_gpt({"qkv_bias": True, "tie_weights": True, "gelu": "erf", "drop_rate": 0.0})
    r = sg.verify(m, torch_fn=m.reference, samples=4, seed=3)
    assert r.ok and not _failing(r), str(r)
    assert not any(f.block.endswith("bk") or "bqkv" in f.block or "b_attn" in f.block
                   for c in r.comparisons.values() for f in c.systematic)


def _expm1_model(hi: float):
    t = sp.Symbol("t")
    w, v, x = sg.matrix("w", 16, 1), sg.matrix("v", 16, 1), sg.matrix("x", 16, 1)
    loss = ((sp.exp(t) - 1) * sum(w[i] * x[i] for i in range(16))
            + sum(v[i] * x[i] for i in range(16)))
    return sg.Model("expm1_shared", loss, params=[w, v],
                    inputs={t: sg.Uniform(hi / 10, hi), x: sg.Normal()})


def _expm1_fn(w, v, t, x):  # the model's literal torch code
    return ((torch.exp(t) - 1) * (w.reshape(-1) * x.reshape(-1)).sum()
            + (v.reshape(-1) * x.reshape(-1)).sum())


@pytest.mark.parametrize("dtype,hi", [("float64", 1e-9), ("float32", 1e-5)])
def test_shared_cancelling_scalar_is_not_a_systematic_bug(dtype, hi):
    """(exp(t) - 1) shared by the block w: every entry within its bound, and the block test
    fires on most samples (p = 1e-7 relative in float64) with varying sign. Before: FAIL on
    every backend. Now: never a failure; the user's torch_fn passes."""
    r = sg.verify(_expm1_model(hi), torch_fn=_expm1_fn, samples=100, seed=0, dtype=dtype)
    assert not _failing(r) and not _left_suspect(r), str(r)
    assert r.comparisons["torch_fn"].ok
    assert not (r.comparisons["torch_fn"].status == INCONCLUSIVE).any()
    notes = [n for c in r.comparisons.values() for n in c.unconfirmed]
    assert notes and all("not" in n or "inconclusive" in n for n in notes)
    assert "unconfirmed suspicion" in str(r)
    backends = r.as_dict()["backends"]
    assert backends["torch_fn"]["unconfirmed"]


def test_float32_biased_arithmetic_is_inconclusive_not_a_bug():
    """numpy's float32 exp near 1 is biased (mean error 0.6 of its spread at t in [1e-6, 1e-5]):
    the pooled test on fresh samples flags it, but the float64 re-run of the same code does not
    reproduce it - the dtype's arithmetic, not the code: inconclusive, with why. symgrad's own
    program now runs exp(t) - 1 as expm1 (symgrad.stable), so it raises no such suspicion any
    more; the user's literal float32 code is where the bias can still show, and whatever the
    experiments find there, it is never a failure. (The branch itself: the stand-in test
    test_rerun_that_does_not_reproduce_and_fresh_that_does_is_inconclusive.)"""
    own = sg.verify(_expm1_model(1e-5), samples=100, seed=0, dtype="float32",
                    backends=("numpy",))
    assert not own.comparisons["numpy"].systematic and own.verdict != "fail"
    r = sg.verify(_expm1_model(1e-5), torch_fn=_expm1_fn, samples=100, seed=0,
                  dtype="float32", backends=("torch_fn",))
    comp = r.comparisons["torch_fn"]
    assert not _failing(r) and not _left_suspect(r)
    assert all("bias of the float32 arithmetic" in n or "not confirmed" in n
               for n in comp.unconfirmed), comp.unconfirmed


def test_given_samples_cannot_confirm_so_suspicions_are_inconclusive():
    """at=: no fresh samples from the model's domains, and float64 has no wider dtype to re-run
    in: a suspicion can be neither confirmed nor refuted - inconclusive, never ok, never fail."""
    m = _expm1_model(1e-9)
    rng = np.random.default_rng(0)
    at = {"w": rng.normal(size=(4, 16, 1)), "v": rng.normal(size=(4, 16, 1)),
          "t": np.full(4, 5e-10), "x": rng.normal(size=(4, 16, 1))}
    r = sg.verify(m, torch_fn=_expm1_fn, at=at, backends=("torch_fn",))
    comp = r.comparisons["torch_fn"]
    assert comp.systematic and not _failing(r) and not _left_suspect(r)
    assert (comp.status == INCONCLUSIVE).any()
    assert all("samples were given" in n for n in comp.unconfirmed)


# ---------------------------------------------------------------- misses, now caught
def _neuron_fn(scale):
    def fn(w, b, x, y):
        w = scale_backward(w, scale)
        return torch.nn.functional.binary_cross_entropy(torch.sigmoid(w * x + b), y)
    return fn


@pytest.mark.parametrize("dtype,scale", [("float16", 1.02), ("float32", 1 + 2e-6)])
@pytest.mark.parametrize("samples", [64, 500])
def test_neuron_small_scale_is_caught_at_the_cli_sample_count(models, dtype, scale, samples):
    """Before: missed at 20 and 64 samples (|T| <= sqrt(N) and lambda = 8 needed N > 64).
    The pooled suspicion at min(4, 0.9 sqrt(n_eff)) fires, and the float64 re-run of the same
    code reproduces p (a scaling bug survives a wider dtype)."""
    r = sg.verify(models["neuron"], torch_fn=_neuron_fn(scale), samples=samples, seed=0,
                  dtype=dtype, backends=("torch_fn",))
    comp = r.comparisons["torch_fn"]
    found = [f for f in comp.systematic if f.block == "w" and f.confirmed]
    assert found and "float64 reproduces" in found[0].evidence
    assert abs(found[0].projection - (scale - 1)) < 0.3 * (scale - 1)
    assert (comp.status[:, 1] == SYSTEMATIC).mean() > 0.9
    assert any(f.kind == "systematic" and "confirmed" in f.note for f in r.failures)


def _whole_gradient(fn, factor):
    def wrapped(**blocks):
        return scale_backward(fn(**blocks), factor)  # the loss's input to the backward
    return wrapped


@pytest.mark.slow
def test_tiny_gpt_float32_whole_gradient_scale_is_caught_at_cli_samples():
    """x (1 + 1e-5) on the whole gradient (168 u in float32), at the CLI's 14 samples: every
    block's pooled suspicion (|T| > 0.9 sqrt(n_eff)), confirmed by the float64 re-run."""
    m = gpt2.tiny_gpt()
    r = sg.verify(m, torch_fn=_whole_gradient(m.reference, 1 + 1e-5), samples=14, seed=0,
                  dtype="float32", backends=("torch_fn",))
    comp = r.comparisons["torch_fn"]
    assert r.verdict == "fail" and len([f for f in comp.systematic if f.confirmed]) >= 20


def test_tiny_gpt_float32_whole_gradient_scale_at_4_samples_says_unresolved():
    """At 4 samples the pooled test cannot fire (|T| <= 2): the result says so."""
    m = gpt2.tiny_gpt()
    r = sg.verify(m, torch_fn=_whole_gradient(m.reference, 1 + 1e-5), samples=4, seed=0,
                  dtype="float32", backends=("torch_fn",))
    assert "resolution not reached" in str(r)
    assert r.as_dict()["backends"]["torch_fn"]["resolution_not_reached"]


def test_confirmation_costs_nothing_without_suspicion(models):
    r = sg.verify(models["neuron"], samples=200, seed=0, dtype="float32")
    assert "confirm_s" not in r.timings


# ---------------------------------------------------------------- the rule, on fake experiments
def _suspected(factor, dtype="float32", n=3, k=32):
    """A resolved block "W" x factor on every sample, beside a correct block "H", through
    compare and the block test (W's columns 1..k, H's k+1..k+8)."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(n, k))
    exact = np.hstack([np.ones((n, 1)), g, np.linspace(1, 2, 8)[None].repeat(n, 0)])
    got = exact.copy()
    got[:, 1:k + 1] *= factor
    blocks = [("W", 1, k + 1), ("H", k + 1, k + 9)]
    bound = 1e5 if dtype == "float32" else 1e12  # within every entry's allowance
    comp = systematic(compare(exact, 0 * exact, got, np.full(exact.shape, bound), backend="b",
                              dtype=dtype, tol=Tolerance()), blocks, Tolerance())
    return comp, exact


def _experiments(comp, exact, rerun_factor=None, fresh=None, budget=1000):
    def columns(name, a, b):
        return exact[:, a:b], comp.got[:, a:b] - exact[:, a:b], comp.allowed_abs[:, a:b]

    def rerun64(name, rows):
        if rerun_factor is None:
            return None
        got = exact[rows].copy()
        got[:, 1:33] *= rerun_factor
        return exact[rows], got - exact[rows], np.full(got.shape, 1e-12)
    return Experiments(columns, rerun64, lambda names, m: fresh, budget, len(exact))


def test_confirmed_by_float64_rerun_fails_with_the_evidence():
    comp, exact = _suspected(1.01)
    assert comp.systematic and (comp.status == SUSPECT).any() and comp.ok
    out = confirm({"b": comp}, [("W", 1, 33)], Tolerance(), _experiments(comp, exact, 1.01))
    c = out["b"]
    assert not c.ok and (c.status[:, 1:] == SYSTEMATIC).any() and not (c.status == SUSPECT).any()
    assert all(f.confirmed and "float64 reproduces p = 0.01" in f.evidence for f in c.systematic)


def test_refuted_suspicion_restores_the_entry_status_and_keeps_a_note():
    comp, exact = _suspected(1 + 1e-5, dtype="float64")
    fresh_comp, _ = _suspected(1.0, dtype="float64", n=40)  # fresh samples: no bias
    out = confirm({"b": comp}, [("W", 1, 33)], Tolerance(), _experiments(
        comp, exact, fresh={"b": fresh_comp}))
    c = out["b"]
    assert c.ok and not (c.status == SUSPECT).any()
    assert np.isin(c.status[:, 1:], (OK, LOSS, INCONCLUSIVE, MISMATCH)).all()
    assert c.unconfirmed and "not confirmed on" in c.unconfirmed[0]
    assert all(f.confirmed is False for f in c.systematic)


def test_confirmed_on_fresh_samples():
    comp, exact = _suspected(1 + 1e-5, dtype="float64")
    fresh_comp, _ = _suspected(1 + 1e-5, dtype="float64", n=40)
    out = confirm({"b": comp}, [("W", 1, 33)], Tolerance(), _experiments(
        comp, exact, fresh={"b": fresh_comp}))
    assert not out["b"].ok
    assert any("fresh samples: pooled p = 1e-05" in f.evidence for f in out["b"].systematic)


def test_untestable_suspicion_is_inconclusive():
    comp, exact = _suspected(1 + 1e-5, dtype="float64")
    c = confirm({"b": comp}, [("W", 1, 33)], Tolerance(), _experiments(comp, exact))["b"]
    assert c.ok and (c.status[:, 1:] == INCONCLUSIVE).any() and not (c.status == SUSPECT).any()
    assert "not confirmed" in c.unconfirmed[0]


def test_rerun_that_does_not_reproduce_and_fresh_that_does_is_inconclusive():
    comp, exact = _suspected(1.01)
    fresh_comp, _ = _suspected(1.01, n=40)
    c = confirm({"b": comp}, [("W", 1, 33)], Tolerance(), _experiments(
        comp, exact, rerun_factor=1.0, fresh={"b": fresh_comp}))["b"]
    assert c.ok and (c.status[:, 1:] == INCONCLUSIVE).any()
    assert "bias of the float32 arithmetic" in c.unconfirmed[0]


def _entry_suspect(err_rel=1e-3, dtype="float32"):
    """Entries beyond the fast bound within the rigorous enclosure (another branch makes
    compare() mark them SUSPECT): here set by hand."""
    rng = np.random.default_rng(1)
    exact = np.hstack([np.ones((2, 1)), rng.normal(size=(2, 8))])
    got = exact.copy()
    got[0, 3] *= 1 + err_rel
    comp = compare(exact, 0 * exact, got, np.full(exact.shape, 1.0), backend="b", dtype=dtype,
                   tol=Tolerance())
    assert comp.status[0, 3] == (MISMATCH if err_rel else OK)
    status = comp.status.copy()
    status[0, 3] = SUSPECT
    from dataclasses import replace
    return replace(comp, status=status), exact


@pytest.mark.parametrize("reproduced", [True, False])
def test_entry_suspicion_float64_rerun(reproduced):
    comp, exact = _entry_suspect()
    rerun = (lambda name, rows: (exact[rows], (comp.got - exact)[rows]
                                 * (1.0 if reproduced else 2.0**-29), np.ones((len(rows), 9))))
    exp = Experiments(lambda n, a, b: (exact[:, a:b], (comp.got - exact)[:, a:b],
                                       comp.allowed_abs[:, a:b]), rerun,
                      lambda names, m: None, 1000, 2)
    c = confirm({"b": comp}, [("W", 1, 9)], Tolerance(), exp)["b"]
    assert c.status[0, 3] == (MISMATCH if reproduced else INCONCLUSIVE)
    assert bool(c.evidence) == reproduced and bool(c.unconfirmed) != reproduced


@pytest.mark.parametrize("again", [True, False])
def test_entry_suspicion_fresh_samples(again):
    comp, exact = _entry_suspect(dtype="float64")
    fresh_comp, _ = _entry_suspect(1e-3 if again else 0.0, dtype="float64")
    from dataclasses import replace
    fresh_comp = replace(fresh_comp, status=np.where(fresh_comp.status == SUSPECT, MISMATCH,
                                                     fresh_comp.status) if again
                         else np.zeros_like(fresh_comp.status))
    exp = Experiments(lambda n, a, b: (exact[:, a:b], (comp.got - exact)[:, a:b],
                                       comp.allowed_abs[:, a:b]), lambda n, r: None,
                      lambda names, m: {"b": fresh_comp}, 1000, 2)
    c = confirm({"b": comp}, [("W", 1, 9)], Tolerance(), exp)["b"]
    assert c.status[0, 3] == (MISMATCH if again else INCONCLUSIVE)


def test_fresh_sample_count_and_budget():
    t = Tolerance()
    exp = Experiments(None, None, None, budget=14, samples=14)
    assert fresh_count(exp, t) == 32  # at least 32, 4 x the 14-sample budget allows it
    assert fresh_count(Experiments(None, None, None, 10**5, 500), t) == 1000  # 2 N
    assert fresh_count(Experiments(None, None, None, 1, 1), t) == 0  # GPT-2: 32 > 4 x 1


# ---------------------------------------------------------------- real clients (module=)
CLIENT = {"vocab_size": 16, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
          "drop_rate": 0.0, "qkv_bias": True, "tie_weights": True}


@pytest.mark.slow
def test_unmodified_hf_gpt2_and_nanogpt_do_not_fail_on_the_key_bias():
    """Before: HF GPT2LMHeadModel float64 seed 0 and nanoGPT float64 seed 1 (16 samples) failed
    on the key-bias third of c_attn.bias (exact gradient 0) - 5 of 8 such runs did."""
    transformers = pytest.importorskip("transformers")
    from symgrad import zoo
    from tests.gptmodels import nanogpt
    hc = transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=16, n_layer=2, n_head=2,
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                 bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hc).double()
    r = sg.verify(zoo.get("tiny_gpt", config=CLIENT), module=hf, samples=16, seed=0)
    assert r.ok and not _failing(r), str(r)
    nano_cfg = {**CLIENT, "gelu": "erf"}
    r = sg.verify(zoo.get("tiny_gpt", config=nano_cfg),
                  module=nanogpt.from_book_config(nano_cfg).double(), samples=16, seed=1)
    assert r.ok and not _failing(r), str(r)


def test_a_confirmed_pooled_finding_keeps_the_entries_a_refuted_per_sample_one_marked():
    """One block, two suspicions over the same entries: the pooled one confirmed, the
    per-sample one refuted. Every suspected entry of the block fails."""
    comp, exact = _suspected(1.01, n=12)
    samples = {f.sample for f in comp.systematic}
    assert -1 in samples and len(samples) > 1
    marked = comp.status == SUSPECT

    def rerun64(name, rows):  # float64 reproduces p on average, not on sample 0 alone
        got = exact[rows].copy()
        got[:, 1:33] *= np.where(rows == 0, 1.0, 1.01)[:, None]
        return exact[rows], got - exact[rows], np.full(got.shape, 1e-12)
    exp = Experiments(None, rerun64, lambda names, m: None, 1000, len(exact))
    c = confirm({"b": comp}, [("W", 1, 33), ("H", 33, 41)], Tolerance(), exp)["b"]
    assert any(f.sample < 0 and f.confirmed for f in c.systematic)
    assert (c.status[marked] == SYSTEMATIC).all()


def test_fresh_sign_test_confirms_where_uneven_weights_starve_the_pooled_test():
    """32 fresh samples whose resolution weights span 1e6 weigh like ~2 in the pooled test
    (|T| <= sqrt(n_eff)); every projection still has the suspicion's sign: binomial 2^-32."""
    comp, exact = _suspected(1 + 1e-5, dtype="float64")
    fresh_comp, fexact = _suspected(1 + 1e-5, dtype="float64", n=32)
    scale = np.logspace(0, 3, 32)[:, None]  # g 1..1000 against the same allowance
    from dataclasses import replace
    fresh_comp = replace(fresh_comp, expected=fresh_comp.expected * scale,
                         got=fresh_comp.got * scale)
    out = confirm({"b": comp}, [("W", 1, 33), ("H", 33, 41)], Tolerance(), _experiments(
        comp, exact, fresh={"b": fresh_comp}))["b"]
    assert any("32 of 32 projections share its sign" in f.evidence for f in out.systematic)
    assert not out.ok


def test_the_sign_tests_binomial_tail_is_exact_and_scipys():
    """The sign test's P(K >= k | n, 1/2) (``confirm._sign_tail``), exact in integers: each
    value is the correctly rounded sum of binomial coefficients over 2^n, and within 1e-13 of
    scipy's ``binom.sf(k - 1, n, 0.5)`` (the former spelling) on every k of n = 1..120."""
    from fractions import Fraction
    from math import comb

    from scipy.stats import binom
    for n in range(1, 121):
        for k in range(-1, n + 2):
            got = _sign_tail(k, n)
            want = float(Fraction(sum(comb(n, i) for i in range(max(k, 0), n + 1)), 2**n))
            assert got == want
            assert abs(got - float(binom.sf(k - 1, n, 0.5))) <= 1e-13 * max(got, 1e-300)
