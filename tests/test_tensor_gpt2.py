"""The GPT-2 family: GPT_CONFIG_124M's exact parameter count and names, config extensions,
the CLI (`symgrad verify gpt2 --tokens N`), a reduced gpt2 end to end; full size is `slow`."""

import json

import numpy as np
import pytest
import torch

import symgrad as sg
from symgrad import zoo
from symgrad.cli import main
from symgrad.errors import SymgradError
from symgrad.testing import scale_backward
from symgrad.zoo import native_gpt
from symgrad.zoo.gpt2 import gpt, gpt2


REDUCED = {"vocab_size": 50, "context_length": 32, "emb_dim": 16, "n_heads": 2, "n_layers": 1}


def test_gpt2_is_gpt_config_124m_with_163009536_parameters():
    m = gpt2(tokens=8)
    assert m.n_parameters == 163_009_536
    names = [b.name for b in m.param_blocks]
    assert names[:2] == ["tok_emb", "pos_emb"] and names[-3:] == ["lnf_g", "lnf_b", "out_head"]
    assert "h11_Wq" in names and "h0_bq" not in names and "h0_bo" in names
    assert dict((b.name, b.shape) for b in m.param_blocks)["out_head"] == (50257, 768)
    assert m.n_nodes < 1000  # cost follows operations


@pytest.mark.parametrize("ext, delta", [
    ({"tie_weights": True}, -50257 * 768),
    ({"bias": False}, -(12 * (4 * 768 + 3072) + 768)),
    ({"qkv_bias": True}, 12 * 3 * 768),
])
def test_config_extensions_change_the_parameters(ext, delta):
    assert gpt2(ext, tokens=4).n_parameters == 163_009_536 + delta


def test_tied_weights_and_erf_gelu_verify():
    m = gpt({**REDUCED, "tie_weights": True, "bias": False, "gelu": "erf"}, tokens=6)
    assert "out_head" not in [b.name for b in m.param_blocks]
    assert sg.verify(m, samples=2).ok


def test_tokens_out_of_range_is_a_clear_error():
    with pytest.raises(SymgradError, match=r"--tokens 40: .* 1..context_length \(32\)"):
        gpt(REDUCED, tokens=40)


def test_reduced_gpt2_via_cli_json(capsys):
    code = main(["verify", "gpt2", "--config", json.dumps(REDUCED), "--tokens", "8",
                 "--samples", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    (model,) = out["models"]
    assert model["program_size"]["parameters"] == gpt(REDUCED).n_parameters
    assert set(model["backends"]) == {"numpy", "torch", "torch_fn"}


def test_cli_rejects_bad_tokens_and_lists_gpt2(capsys):
    assert main(["verify", "gpt2", "--config", json.dumps(REDUCED), "--tokens", "0"]) == 2
    assert "--tokens 0" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "gpt2" in capsys.readouterr().out
    assert main(["verify", "neuron", "--tokens", "3"]) == 2


def test_too_many_samples_for_full_size_is_refused_early():
    with pytest.raises(SymgradError, match="use --samples 6 or fewer"):
        sg.verify(gpt2(tokens=4), samples=500)
    with pytest.raises(SymgradError, match=r"^model 'gpt2_medium': 3 samples x 406212609 entries "
                                           r".* \(limit 1e\+09 entries\); use --samples 2 or"):
        sg.verify(zoo.get("gpt2_medium", tokens=4), samples=3)


def test_a_model_too_large_for_one_sample_is_refused_with_what_to_do():
    """GPT-2 XL's shape (48 layers, width 1600, 25 heads: 1.64B entries untied) is past the
    limit at one sample: the line says so and names the fix, not "--samples 0 or fewer"."""
    xl = zoo.get("gpt2_medium", config={"emb_dim": 1600, "n_heads": 25, "n_layers": 48},
                 tokens=4)
    with pytest.raises(SymgradError, match=r"^model 'gpt2_medium': 1 sample x 1637792001 entries "
                                           r".*; verify a smaller config \(--config"):
        sg.verify(xl, samples=1)


def test_tensor_tiny_gpt_is_the_zoo_config():
    m = zoo.get("tiny_gpt")
    assert m.n_parameters == 7136 and m.name == "tiny_gpt"
    assert type(m).__name__ == "TensorModel" and m.gpt_config.n_layers == 2 and m.dropout


@pytest.mark.slow
def test_gpt2_full_size_8_tokens():
    m = gpt2(tokens=8)
    r = sg.verify(m, samples=1, torch_fn=m.reference)
    assert r.ok, str(r)
    assert r.program_size["parameters"] == 163_009_536
    assert np.isfinite(r.comparisons["torch"].ulps).all()


def test_report_and_explain_of_a_tensor_model_print_the_tensor_program(tmp_path, capsys):
    config = json.dumps(REDUCED)
    assert main(["report", "gpt2", "--config", config, "--tokens", "4", "--samples", "1",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    md = (tmp_path / "gpt2.md").read_text()
    assert "tensor operations" in md and r"\sum_{i=0}^{15}" in md  # a Linear as its sum
    doc = json.loads((tmp_path / "gpt2.json").read_text())
    assert doc["oracle"]["method"].startswith("double-double") and doc["result"]["ok"]
    assert main(["explain", "gpt2", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "one line per tensor operation" in out and "Textbook form" in out


def test_sampling_says_what_the_oracle_checks(capsys):
    """Without --samples a large GPT draws only what its oracle checks; with more, the line
    and the JSON say how many of them are checked."""
    wide = json.dumps({**REDUCED, "vocab_size": 7000, "emb_dim": 8})  # 113k parameters
    assert main(["verify", "gpt2", "--config", wide, "--tokens", "2", "--json"]) == 0
    cap = capsys.readouterr()
    (model,) = json.loads(cap.out)["models"]
    assert model["samples_drawn"] == model["samples_checked_by_oracle"] == 1
    assert "1 sample, checked by the oracle (the default for this model" in cap.err
    assert main(["verify", "gpt2", "--config", wide, "--tokens", "2", "--samples", "3",
                 "--json"]) == 0
    cap = capsys.readouterr()
    (model,) = json.loads(cap.out)["models"]
    assert (model["samples_drawn"], model["samples_checked_by_oracle"]) == (3, 1)
    assert "3 samples drawn, 1 of 3 checked by the oracle (oracle_budget" in cap.err
    assert model["sampling"].startswith("3 samples drawn, 1 of 3 checked by the oracle")


def test_gpt2_medium_is_hugging_faces_gpt2_medium_untied():
    """``gpt2_medium`` has GPT-2 medium's shape (24 layers, width 1024, 16 heads, vocabulary
    50257, context 1024) and its parameters are Hugging Face's GPT2LMHeadModel at that config
    (built on the meta device: no memory) with out_head untied and no qkv biases."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2Config(n_layer=24, n_embd=1024, n_head=16)  # gpt2-medium's config
    with torch.device("meta"):
        n_hf = sum(p.numel() for p in transformers.GPT2LMHeadModel(hf).parameters())
    m = zoo.get("gpt2_medium")
    c = m.gpt_config
    assert (c.n_layers, c.emb_dim, c.n_heads, c.vocab_size, c.context_length) == (
        hf.n_layer, hf.n_embd, hf.n_head, hf.vocab_size, hf.n_positions) == (24, 1024, 16, 50257,
                                                                              1024)
    untied, qkv_biases = hf.vocab_size * hf.n_embd, hf.n_layer * 3 * hf.n_embd
    assert n_hf == 354_823_168  # GPT-2 medium, "355M"
    assert m.n_parameters == n_hf + untied - qkv_biases == 406_212_608
    shapes = {b.name: b.shape for b in m.param_blocks}
    assert shapes["h23_W1"] == (4096, 1024) and shapes["out_head"] == (50257, 1024)
    assert "h24_Wq" not in shapes and "h0_bq" not in shapes
    assert m.name == "gpt2_medium" and dict((b.name, b.shape) for b in m.input_blocks)[
        "ids"] == (64,)  # 64 tokens by default, as gpt2
    assert gpt2({"qkv_bias": True, "tie_weights": True, **{k: getattr(c, k) for k in (
        "emb_dim", "n_heads", "n_layers")}}, tokens=4).n_parameters == n_hf  # HF's layout


MEDIUM_1 = {"n_layers": 1, "vocab_size": 64, "context_length": 8}  # width 1024, 16 heads


def test_gpt2_medium_at_width_1024_and_16_heads_passes_via_cli(capsys):
    code = main(["verify", "gpt2_medium", "--config", json.dumps(MEDIUM_1), "--tokens", "4",
                 "--samples", "1", "--json"])
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert code == 0 and model["verdict"] == "pass"
    assert model["program_size"]["parameters"] == zoo.get(
        "gpt2_medium", config=MEDIUM_1).n_parameters == 12 * 1024**2 + 10 * 1024 + (
        2 * 64 + 8 + 2) * 1024  # a layer: 12C² + 10C (no qkv biases); embeddings, head, lnf
    assert set(model["backends"]) == {"numpy", "torch", "torch_fn"}
    assert all(b["counts"]["mismatch"] == 0 for b in model["backends"].values())


def test_gpt2_medium_misspelt_the_hugging_face_way_is_named(capsys):
    assert main(["verify", "gpt2-medium"]) == 2
    assert "unknown model 'gpt2-medium'; did you mean 'gpt2_medium'?" in capsys.readouterr().err


@pytest.mark.slow
def test_gpt2_medium_a_bug_in_the_16th_head_is_caught_and_named():
    """x(1 + 1e-8) on the attention weights' backward of head 15 only (a head GPT-2 small does
    not have) at width 1024: fails on torch_fn, named by an attention parameter."""
    m = zoo.get("gpt2_medium", config=MEDIUM_1, tokens=4)
    mutant = native_gpt.reference(m.gpt_config,
                                  weights_hook=lambda t: scale_backward(t, 1 + 1e-8, (15,)))
    r = sg.verify(m, torch_fn=mutant, samples=1, seed=0)
    assert r.verdict == "fail" and r.comparisons["torch"].ok
    assert r.failures and all(f.backend == "torch_fn" for f in r.failures)
    named = {f.output.split("[")[0] for f in r.failures}
    assert named & {"d/dh0_Wq", "d/dh0_Wk", "d/dh0_Wv"}, named
