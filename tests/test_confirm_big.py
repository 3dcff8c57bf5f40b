"""Above CERTIFY_UP_TO parameters (GPT-2) a mismatch rests on the fast allowance alone: it fails
only where a second, streamed run on one fresh sample finds the block beyond the fast allowance
again (``symgrad.tensor.confirm_big``); tiny_gpt is put on that path by patching the size."""

import numpy as np
import pytest

import symgrad as sg
from symgrad import zoo
from symgrad.testing import scale_block_backward
from symgrad.tensor import verify as tv

SMALL = {"vocab_size": 5, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
         "drop_rate": 0.0, "qkv_bias": False}
SEED_WORDS = "confirmed on a fresh sample (seed SeedSequence([0, 2]))"


@pytest.fixture()
def big(monkeypatch):
    """tiny_gpt on GPT-2's path (no rigorous enclosure: the fresh-sample confirmation)."""
    monkeypatch.setattr(tv, "CERTIFY_UP_TO", 0)
    return zoo.get("tiny_gpt", config=SMALL)


def _bugged(model):
    return scale_block_backward(model.reference, "h0_W1", 1 + 1e-6)


def _digest(r) -> tuple:
    c = r.comparisons["torch_fn"]
    return (r.verdict, r.counts("torch_fn"), [(f.output, f.kind, f.note) for f in r.failures],
            c.evidence, c.unconfirmed)


def test_a_planted_bug_fails_confirmed_and_named(big):
    r = sg.verify(big, torch_fn=_bugged(big), samples=4, seed=0)
    assert r.verdict == "fail" and r.comparisons["torch"].ok and r.failures
    assert {f.output.split("[")[0] for f in r.failures} == {"d/dh0_W1"}
    assert all(SEED_WORDS in f.note and "no rigorous enclosure" in f.note for f in r.failures)
    assert "proven" not in str(r)  # a reproduction, not a proof
    assert f"suspected, {SEED_WORDS}" in r.failures[0].message()  # the one line says so
    c = r.comparisons["torch_fn"]
    assert any("h0_W1" in e and "beyond it again" in e for e in c.evidence)
    assert r.counts("torch_fn")["suspect"] == 0
    failing = np.isin(c.status, (sg.compare.MISMATCH,)).any(axis=0)
    a, b = next((a, b) for n, a, b in r.blocks if n == "h0_W1")
    assert failing[a:b].any() and not failing[:a].any() and not failing[b:].any()
    assert _digest(r) == _digest(sg.verify(big, torch_fn=_bugged(big), samples=4, seed=0))


def test_no_bug_passes(big):
    r = sg.verify(big, torch_fn=big.reference, samples=4, seed=0)
    assert r.verdict == "pass", str(r)


def test_a_suspicion_that_does_not_recur_is_inconclusive(big, monkeypatch):
    """Correct code, its allowance patched 1e4x smaller on the first run only: every entry it
    pushes beyond the fast allowance is a suspicion the fresh sample does not reproduce."""
    compare, calls = tv.compare_compact, []

    def first_run_only(hi, lo, got, E, **kw):
        calls.append(kw["backend"])
        if kw["backend"] == "torch_fn" and calls.count("torch_fn") == 1:
            E = np.asarray(E) * 1e-4
        return compare(hi, lo, got, E, **kw)
    monkeypatch.setattr(tv, "compare_compact", first_run_only)
    r = sg.verify(big, torch_fn=big.reference, samples=4, seed=0)
    assert calls.count("torch_fn") == 2  # the run, then its fresh sample's
    assert r.verdict == "inconclusive" and not r.failures
    c = r.comparisons["torch_fn"]
    assert c.unconfirmed and not c.evidence
    assert all("not confirmed: none beyond it again on a fresh sample (seed SeedSequence([0, "
               "2]))" in n for n in c.unconfirmed if "fast allowance" in n)
    assert r.counts("torch_fn")["inconclusive"] > 0 and r.counts("torch_fn")["mismatch"] == 0


def test_points_given_by_at_have_no_fresh_sample(big):
    at = big.draw(2, np.random.default_rng(5), "float64")
    r = sg.verify(big, torch_fn=_bugged(big), at=at)
    assert r.verdict == "inconclusive" and not r.failures
    assert any("no fresh sample to confirm on" in n for n in r.comparisons["torch_fn"].unconfirmed)
    fresh = tv.verify_tensor(big, torch_fn=_bugged(big), cfg=sg.VerifyConfig(), at=at,
                             fresh=lambda m: big.draw(m, np.random.default_rng(6), "float64"))
    assert fresh.verdict == "fail"
    assert all("confirmed on a fresh sample (the sample fresh(1) gave)" in f.note
               for f in fresh.failures)


def test_the_big_path_keeps_no_comparison_whole(big, monkeypatch):
    """The suspect blocks' names, counts and marks are kept, not the arrays (GPT-2: +1.44 GiB);
    a reduced comparison's figures are those of the whole one."""
    whole = sg.verify(big, torch_fn=_bugged(big), samples=4, seed=0)

    def refuse(comp):
        raise AssertionError("kept whole")
    monkeypatch.setattr(tv, "kept_whole", refuse)
    monkeypatch.setattr(tv, "STREAM_FROM", 0)  # every comparison reduced after its summary
    aside, set_aside = [], tv.spill.set_aside  # the run's samples spilled, however small

    def every_array(values):
        aside.append(sorted(values))
        set_aside(values, spill_from=1)
    monkeypatch.setattr(tv.spill, "set_aside", every_array)
    r = sg.verify(big, torch_fn=_bugged(big), samples=4, seed=0)
    assert r.comparisons["torch_fn"].reduced and len(aside) == 1
    assert all(tv.spill.spilled(v) for v in r.values.values())
    assert _digest(r) == _digest(whole)
    assert r.summary("torch_fn") == whole.summary("torch_fn")


def test_float32_block_suspicions_go_through_the_float64_rerun_first(big):
    """In float32 a block suspicion is decided by ``symgrad.confirm``'s float64 re-run (an
    arithmetic bias would recur on any fresh sample); the entries beyond the fast allowance
    then by the fresh sample, as in float64."""
    r = sg.verify(big, torch_fn=scale_block_backward(big.reference, "h0_W1", 1 + 1e-3),
                  samples=4, seed=0, dtype="float32")
    c = r.comparisons["torch_fn"]
    assert r.verdict == "fail" and {f.output.split("[")[0] for f in r.failures} == {"d/dh0_W1"}
    assert any("h0_W1" in e and SEED_WORDS.split(" (")[0] in e for e in c.evidence)
    assert all(f.confirmed and "float64" in f.evidence for f in c.systematic)
    assert sg.verify(big, torch_fn=big.reference, samples=4, seed=0,
                     dtype="float32").verdict == "pass"
