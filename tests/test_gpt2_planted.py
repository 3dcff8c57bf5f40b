"""scripts/gpt2_planted.py's planting function, at a tiny GPT: the x(1 + 1e-10) bug perturbs the
gradients of the one attention block it names and nothing it should not (so the gpt2 report
cannot silently measure a bug that is not there, or one spread over every layer), and the
verifier catches it there."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import symgrad as sg
from symgrad import SymgradError
from symgrad.zoo import native_gpt
from symgrad.zoo.gpt2 import gpt as build

CFG = {"vocab_size": 11, "context_length": 6, "emb_dim": 8, "n_heads": 2, "n_layers": 3,
       "drop_rate": 0.0, "qkv_bias": True}
LAYER = 1


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "gpt2_planted.py"
    spec = importlib.util.spec_from_file_location("gpt2_planted", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def model():
    return build(CFG, name="tiny")


def _grads(model, torch_fn) -> dict[str, np.ndarray]:
    values = model.draw(1, np.random.default_rng(0), "float64")
    blocks = {}
    for b in model.blocks:
        t = torch.tensor(values[b.name][0],
                         dtype=torch.long if b.domain.integer else torch.float64)
        blocks[b.name] = t.requires_grad_(True) if b.is_param else t
    torch_fn(**blocks).backward()
    return {b.name: blocks[b.name].grad.numpy() for b in model.blocks if b.is_param}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.slow
@pytest.mark.parametrize("site, planted", [("softmax", ("Wq", "Wk")),
                                           ("weights", ("Wq", "Wk", "Wv", "Wo"))])
def test_plant_perturbs_only_that_attention_block(model, site, planted):
    gp = _script()
    cfg = model.gpt_config
    clean = _grads(model, gp.plant(cfg, "clean", layer=LAYER))
    assert _grads(model, native_gpt.reference(cfg)).keys() == clean.keys()
    bug = _grads(model, gp.plant(cfg, site, layer=LAYER))
    for name in planted:  # the block's own gradient, off by the factor everywhere
        k = f"h{LAYER}_{name}"
        np.testing.assert_allclose(bug[k], clean[k] * (1 + 1e-10), rtol=1e-13,
                                   atol=1e-13 * np.abs(clean[k]).max())
        assert _relative(bug[k], clean[k]) > 0.5e-10, k
    later = [k for k in clean if not k.startswith(("tok_emb", "pos_emb", "h0_", f"h{LAYER}_"))]
    assert any(k.startswith(f"h{LAYER + 1}_") for k in later) and "out_head" in later
    for k in later:  # after the block: bit for bit the clean gradients
        assert np.array_equal(bug[k], clean[k]), k
    own = [f"h{LAYER}_{n}" for n in ("bv", "bo", "ln2_g", "W1", "W2")]  # not Wv, Wo here
    earlier = [k for k in clean if k.startswith(("tok_emb", "pos_emb", "h0_"))]
    if site == "weights":  # nothing but the four projections changes
        for k in own + earlier + [f"h{LAYER}_{n}" for n in ("bq", "bk", "ln1_g")]:
            assert np.array_equal(bug[k], clean[k]), k
    else:  # the scores' backward: what flows back through them (never more than 1e-10)
        for k in [f"h{LAYER}_{n}" for n in ("Wv", "bv", "Wo", "bo", "ln2_g", "W1", "W2")]:
            assert np.array_equal(bug[k], clean[k]), k
        moved = [k for k in earlier if not np.array_equal(bug[k], clean[k])
                 and not k.endswith("_bk")]  # (the key bias's gradient is an exact 0: noise)
        assert moved and all(_relative(bug[k], clean[k]) < 1e-10 for k in moved), moved


@pytest.mark.slow
def test_plant_is_caught_and_named_at_a_tiny_gpt(model):
    """8 samples (at 1 the fresh-sample confirmation would exceed the oracle budget here)."""
    gp = _script()
    r = sg.verify(model, torch_fn=gp.plant(model.gpt_config, "weights", layer=LAYER),
                  samples=8, seed=0)
    assert r.verdict == "fail" and r.comparisons["torch"].ok, str(r)
    named = {f.output[3:].split("[")[0] for f in r.failures}
    assert named and named <= {f"h{LAYER}_{n}" for n in ("Wq", "Wk", "Wv", "Wo")}, named


def test_plant_refuses_a_layer_or_site_it_does_not_have(model):
    gp = _script()
    with pytest.raises(SymgradError, match="layer 3: this GPT has layers 0..2"):
        gp.plant(model.gpt_config, "softmax", layer=3)
    with pytest.raises(SymgradError, match="site 'mlp': choose one of clean, softmax, weights"):
        gp.plant(model.gpt_config, "mlp", layer=0)
    with pytest.raises(SymgradError, match=r"hook_layers \[7\]: this GPT has layers 0..2"):
        native_gpt.reference(model.gpt_config, weights_hook=lambda w: w, hook_layers=(7,))
