"""A user's nn.Module verified by parameter name: the book-style GPTModel, nanoGPT, Hugging Face
GPT-2 and symgrad's own layout, with no hand-written map; naming problems and broken glue
reported before any derivation; planted bugs caught on the parameter at their site."""

import json
import time

import numpy as np
import pytest
import torch

import symgrad as sg
from symgrad import SymgradError, zoo
from symgrad.cli import main
from symgrad.modules import LAYOUTS, plan
from symgrad.zoo import gpt, native_gpt
from tests.clients import tiny_gpt as tiny
from tests.gptmodels import book, nanogpt
from tests.gptmodels.bugs import BUGS


SMALL = {"vocab_size": 6, "context_length": 3, "emb_dim": 4, "n_heads": 2, "n_layers": 1,
         "drop_rate": 0.1, "qkv_bias": False}
NANO = {**SMALL, "qkv_bias": True, "tie_weights": True, "gelu": "erf"}
HF = {**SMALL, "qkv_bias": True, "tie_weights": True}
N = 3  # samples per check


def _book_module(cfg=SMALL, seed=0):
    torch.manual_seed(seed)
    return book.GPTModel(cfg).double()


def _hf_module(cfg=HF, impl="eager"):
    transformers = pytest.importorskip("transformers")
    hc = transformers.GPT2Config(
        vocab_size=cfg["vocab_size"], n_positions=cfg["context_length"], n_embd=cfg["emb_dim"],
        n_layer=cfg["n_layers"], n_head=cfg["n_heads"], resid_pdrop=cfg["drop_rate"],
        embd_pdrop=cfg["drop_rate"], attn_pdrop=cfg["drop_rate"], bos_token_id=0,
        eos_token_id=0, attn_implementation=impl)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(hc).double()


@pytest.fixture
def book_model():
    return tiny(SMALL)


@pytest.fixture
def hf_model():
    return tiny(HF)


def _verdicts(result):
    return {row["output"]: row["verdict"] for row in result.rows()}


# ---------------------------------------------------------------- each layout, no map
def test_book_layout_verifies_by_its_own_names(book_model):
    r = sg.verify(book_model, module=_book_module(), samples=N, seed=0)
    assert r.ok, str(r)
    assert r.module.layout == "book" and set(r.runs) == {"numpy", "torch", "module"}
    rows = _verdicts(r)
    assert "d/dtrf_blocks.0.ff.layers.0.weight" in rows and "d/dfinal_norm.shift" in rows
    assert "d/dtrf_blocks.0.att.W_query.weight[3, 2]" in r.outputs


def test_module_names_are_computed_on_demand(book_model):
    """The rows' names come from the plan per entry (no list of every entry is built), and a
    model name ("d/dh0_Wq[1,2]") maps to the same position as the module's name for it."""
    from symgrad.modules.run import ModuleOutputs
    r = sg.verify(book_model, module=_book_module(), samples=1, seed=0)
    names = r.outputs
    assert isinstance(names, ModuleOutputs) and len(names) == 1 + book_model.n_parameters
    start = 1 + sum(b.size for b in book_model.param_blocks[:[b.name for b in
                                                              book_model.param_blocks].index("h0_Wq")])
    assert names.rename("d/dh0_Wq[1,2]") == names[start + 1 * 4 + 2] == \
        "d/dtrf_blocks.0.att.W_query.weight[1, 2]"
    assert all(names.index(names[k]) == k for k in (0, 1, start, len(names) - 1))
    assert names.rename("value") == "value" and names.rename("d/dnope[0]") == "d/dnope[0]"


def test_book_layout_train_mode_gets_the_same_keep_masks(book_model):
    r = sg.verify(book_model, module=_book_module(), samples=N, seed=1, train=True)
    assert r.ok, str(r)
    # the masks matter: the same module against the eval-mode twin fails in train mode
    twin = tiny({**SMALL, "drop_rate": 0.0})
    with pytest.raises(SymgradError, match="dropout call 1 .* has no keep-mask"):
        sg.verify(twin, module=_book_module(), samples=N, train=True)


@pytest.mark.parametrize("ext", [{}, pytest.param({"bias": False, "qkv_bias": False},
                                                  marks=pytest.mark.slow)])
def test_nanogpt_layout_tied_fused_erf(ext):
    cfg = {**NANO, **ext}
    m = tiny(cfg)
    module = nanogpt.from_book_config(cfg).double()
    r = sg.verify(m, module=module, samples=N, seed=0)
    assert r.verdict != "fail", str(r)
    assert r.module.layout == "nanogpt"
    # the tied weight appears once; its gradient is the sum of the embedding and head uses
    assert not any(o.startswith("d/dlm_head") for o in r.outputs)
    assert "d/dtransformer.h.0.attn.c_attn.weight [rows1/3 as h0_Wk]" in _verdicts(r)


def test_nanogpt_train_mode_refuses_dropout_inside_sdpa():
    cfg = {**NANO, "drop_rate": 0.1}
    module = nanogpt.from_book_config(cfg).double()
    with pytest.raises(SymgradError, match="dropout_p > 0.*flash=False"):
        sg.verify(tiny(cfg), module=module, samples=N, train=True)


def test_nanogpt_train_mode_without_flash():
    cfg = {**NANO, "drop_rate": 0.1}
    module = nanogpt.from_book_config(cfg).double()
    for block in module.transformer.h:
        block.attn.flash = False  # nanoGPT's own explicit attention: masks can be fed
    r = sg.verify(tiny(cfg), module=module, samples=N, train=True)
    assert r.verdict != "fail", str(r)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_hf_gpt2_layout(hf_model, impl):
    r = sg.verify(hf_model, module=_hf_module(impl=impl), samples=N, seed=0)
    assert r.verdict != "fail", str(r)
    assert r.module.layout == "hf-gpt2"
    assert "d/dtransformer.h.0.mlp.c_fc.weight [T as h0_W1]" in _verdicts(r)


def test_hf_gpt2_train_mode_feeds_functional_attention_dropout(hf_model):
    r = sg.verify(hf_model, module=_hf_module(), samples=N, seed=2, train=True)
    assert r.verdict != "fail", str(r)


def test_symgrad_own_layout():
    net = native_gpt.GPT(gpt.GPTConfig.from_dict(SMALL)).double()
    r = sg.verify(tiny(SMALL), module=net, samples=N)
    assert r.ok and r.module.layout == "symgrad"


def test_module_state_is_restored(book_model):
    module = _book_module().eval()
    module.trf_blocks[0].train()  # a mixed state the user chose
    sg.verify(book_model, module=module, samples=1, train=True)
    assert module.trf_blocks[0].training and not module.final_norm.training
    assert torch.nn.functional.dropout.__module__ == "torch.nn.functional"


# ---------------------------------------------------------------- naming problems: one error, early
class Renamed(book.GPTModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.head = self.out_head  # misnamed: 'head' instead of 'out_head'
        del self.out_head

    def forward(self, in_idx):
        T = in_idx.shape[1]
        x = self.tok_emb(in_idx) + self.pos_emb(torch.arange(T))
        return self.head(self.final_norm(self.trf_blocks(x)))


def test_misnamed_parameter_fails_fast_with_the_list():
    m = zoo.get("tiny_gpt", config={**SMALL, "drop_rate": 0.0})
    t0 = time.perf_counter()
    with pytest.raises(SymgradError) as err:
        sg.verify(m, module=Renamed(SMALL).double(), samples=N)
    assert time.perf_counter() - t0 < 5
    text = str(err.value)
    assert "nothing was derived" in text
    assert "'out_head.weight'" in text and "head.weight (6, 4)" in text
    assert not any(k[0] == "compiled" for k in m._cache if isinstance(k, tuple))


def test_all_problems_in_one_error():
    m = tiny({**SMALL, "emb_dim": 2, "tie_weights": True})
    with pytest.raises(SymgradError) as err:
        plan(m, _book_module(), "book")
    text = str(err.value)
    assert "problem(s)" in text
    assert "block 'tok_emb' has shape (6, 2) but tok_emb.weight gives (6, 4)" in text
    assert "out_head.weight (6, 4)" in text and "tie_weights=False" in text


def test_tied_module_needs_a_tied_model():
    m = tiny({**NANO, "tie_weights": False})
    with pytest.raises(SymgradError, match=r"mapped by more than one block \(out_head, tok_emb\)"
                                           r".*tie_weights=True"):
        plan(m, nanogpt.from_book_config(NANO).double())


def test_unknown_layout_asks_for_a_map():
    m = tiny(SMALL)
    with pytest.raises(SymgradError, match="match no known GPT layout.*pass module_map="):
        sg.verify(m, module=torch.nn.Linear(3, 3).double())


def test_explicit_map_with_views():
    """A module of another shape: dict of names and a callable view (a transpose)."""
    W, x = sg.matrix("W", 2, 3), sg.matrix("x", 3)
    model = sg.Model("lin", sum((W * x).applyfunc(lambda e: e**2)), params=[W], inputs=[x])
    lin = torch.nn.Linear(2, 3, bias=False).double()  # stores W transposed, (3, 2)
    p = plan(model, lin, {"W": lambda params: params["weight"].T})
    assert p.entry_name("W", 1) == "weight[1, 0]"
    with pytest.raises(SymgradError, match="computes with parameter values"):
        plan(model, lin, {"W": lambda params: 2 * params["weight"].T})
    with pytest.raises(SymgradError, match="no parameter 'weigth' \\(did you mean 'weight'\\?\\)"):
        plan(model, lin, {"W": "weigth"})


# ---------------------------------------------------------------- fail fast: broken glue
class TwoArgs(book.GPTModel):
    def forward(self, in_idx, attention):  # a signature symgrad cannot call
        return super().forward(in_idx)


class Detached(book.GPTModel):
    def forward(self, in_idx):
        return super().forward(in_idx).detach()


class LastOnly(book.GPTModel):
    def forward(self, in_idx):
        return super().forward(in_idx)[:, -1:]


@pytest.mark.parametrize("cls, pattern", [
    (TwoArgs, r"raised TypeError: .*missing 1 required positional argument"),
    (Detached, "detached from the parameters"),
    (LastOnly, r"logits of shape \(1, 1, 6\); expected \(1, 3, 6\)"),
])
def test_broken_glue_is_reported_before_the_derive(cls, pattern):
    m = zoo.get("tiny_gpt", config={**SMALL, "drop_rate": 0.0})
    t0 = time.perf_counter()
    with pytest.raises(SymgradError, match=pattern) as err:
        sg.verify(m, module=cls(SMALL).double(), samples=N)
    assert "before any derivation" in str(err.value)
    assert time.perf_counter() - t0 < 5
    assert not any(isinstance(k, tuple) and k[0] == "compiled" for k in m._cache)


def test_dtype_mismatch_is_clear(book_model):
    torch.manual_seed(0)
    with pytest.raises(SymgradError, match=r"is float32, the run is float64; convert the module "
                       r"\(module\.to\(torch\.float64\)\)"):
        sg.verify(book_model, module=book.GPTModel(SMALL), samples=N)


# ---------------------------------------------------------------- planted bugs
def _site(bug, layout, n_layers=1):
    return bug.site[layout].format(last=n_layers - 1)


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_planted_bug_on_book_layout_names_its_parameter(book_model, bug):
    module = _book_module()
    with bug.book(module):
        r = sg.verify(book_model, module=module, samples=N, seed=0)
    assert r.verdict == "fail"
    rows = {o[3:]: v for o, v in _verdicts(r).items()}
    assert rows[_site(bug, "book")] == "FAIL"
    for clean in bug.downstream.get("book", ()):
        assert rows[clean.format(last=0)] != "FAIL", clean
    message = r.failures[0].message()
    assert message.startswith("module: mismatch in the gradient with respect to ")
    named = 100 if bug.name == "float32-constant" else 0  # the named cause's own words
    assert "seed=0" in message and "\n" not in message and len(message) < 500 + named
    assert sg.verify(book_model, module=module, samples=N, seed=0).ok  # restored


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_planted_bug_on_hf_gpt2_names_its_parameter(hf_model, bug):
    module = _hf_module()
    with bug.hf(module):
        r = sg.verify(hf_model, module=module, samples=N, seed=0)
    assert r.verdict == "fail"
    rows = {o[3:].split(" [")[0]: v for o, v in _verdicts(r).items() if v == "FAIL"}
    assert _site(bug, "hf") in rows
    for clean in bug.downstream.get("hf", ()):
        assert clean.format(last=0) not in rows, clean


def test_forward_bugs_say_the_function_differs(book_model):
    module = _book_module()
    with BUGS[1].book(module):  # GELU constant: a forward bug
        r = sg.verify(book_model, module=module, samples=N)
    assert ("the function differs: the forward first departs at trf_blocks.0.ff.layers.1 "
            "(GELU)") in r.failures[0].message()
    with BUGS[4].book(module):  # backward only: the value agrees
        r = sg.verify(book_model, module=module, samples=N)
    assert "different function" not in r.failures[0].message()


# ---------------------------------------------------------------- torch paths
def test_sdpa_paths_side_by_side(hf_model):
    report = sg.compare_paths(hf_model, _hf_module(impl="sdpa"),
                              paths=("eager", "sdpa-math", "sdpa-flash", "sdpa-efficient"),
                              samples=2)
    rows = {r["path"]: r for r in report.rows}
    # issue 16: three outcomes; correct paths are never "FAIL"
    assert {rows["eager"]["verdict"], rows["sdpa-math"]["verdict"]} <= {"ok", "inconclusive"}
    assert rows["sdpa-math"]["note"].startswith(("differs from eager", "bitwise identical"))
    if not torch.cuda.is_available():
        assert rows["sdpa-efficient"]["note"].startswith("not available on cpu")
    assert "sdpa-math" in str(report)


def test_sdpa_paths_do_not_apply_to_explicit_attention(book_model):
    report = sg.compare_paths(book_model, _book_module(), paths=("eager", "sdpa-math"),
                              samples=1)
    assert report.rows[1]["verdict"] == "skipped"
    assert "never calls F.scaled_dot_product_attention" in report.rows[1]["note"]


@pytest.mark.slow
def test_compiled_path_agrees(book_model):
    report = sg.compare_paths(book_model, _book_module(), paths=("eager", "compile"), samples=2)
    row = report.rows[1]
    assert row["verdict"] in ("ok", "skipped"), row
    if row["verdict"] == "skipped":
        assert row["note"].startswith("cannot compile on this machine")


# ---------------------------------------------------------------- the issue's script, the CLI
def test_issue_script_as_written():
    """The README's script, through the tensor program (was the scalar one, ~50 s), in eval
    and in train mode (the module's dropout fed the tensor model's keep-masks)."""
    cfg = {"vocab_size": 16, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
           "drop_rate": 0.1, "qkv_bias": False}
    model = zoo.get("tiny_gpt", config=cfg)
    result = sg.verify(model, module=book.GPTModel(cfg).double(), samples=4, seed=0)
    assert result.ok, str(result)
    assert "d/dtrf_blocks.1.ff.layers.0.weight" in str(result)
    assert result.program_size["gradient_nodes"] > 0  # the tensor views ran
    assert set(result.runs) == {"numpy", "torch", "module"} and len(result.oracle_samples) == 4
    train = sg.verify(model, module=book.GPTModel(cfg).double(), samples=4, seed=0, train=True)
    assert train.ok, str(train)
    assert not np.array_equal(train.comparisons["module"].expected,
                              result.comparisons["module"].expected)  # masks changed the loss


def test_cli_module(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(SMALL))
    args = ["verify", "tiny_gpt", "--config", str(cfg), "--samples", "2", "--json"]
    assert main(args + ["--module", "tests.gptmodels.book:GPTModel"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["models"][0]["rows"]
    assert doc["ok"] and any(r["output"] == "d/dout_head.weight" for r in rows)
    assert main(args + ["--module", "tests.test_modules:Renamed"]) == 2
    assert "'out_head.weight'" in capsys.readouterr().err
    assert main(args + ["--module", "tests.gptmodels.book:Nope"]) == 2
    assert "has no attribute 'Nope'" in capsys.readouterr().err


def test_layout_tables_cover_every_block():
    m = tiny({**SMALL, "qkv_bias": True})
    for layout in LAYOUTS.values():
        assert all(layout.source(b.name) for b in m.param_blocks), layout.name


def test_tiny_gpt_extensions_agree_with_native():
    cfg = {**SMALL, "vocab_size": 5, "context_length": 2, "tie_weights": True, "bias": False,
           "gelu": "erf"}
    m = zoo.get("tiny_gpt", config=cfg)
    assert sg.verify(m, torch_fn=m.reference, samples=5, seed=0).ok
    wrong = zoo.get("tiny_gpt", config={**cfg, "gelu": "tanh"})
    assert sg.verify(m, torch_fn=wrong.reference, samples=5, seed=0).verdict == "fail"


class _Bigram(torch.nn.Module):
    """A bigram language model: logits = tok_emb[ids]; ``factor`` scales its backward."""

    def __init__(self, vocab: int, factor: float = 1.0) -> None:
        super().__init__()
        self.tok_emb = torch.nn.Embedding(vocab, vocab, dtype=torch.float64)
        self.factor = factor

    def forward(self, ids):
        return sg.testing.scale_backward(self.tok_emb(ids), self.factor)


def _bigram_model(vocab: int = 5, tokens: int = 3) -> sg.Model:
    ids, targets, E = sg.matrix("ids", tokens), sg.matrix("targets", tokens), \
        sg.matrix("tok_emb", vocab, vocab)
    return sg.Model("bigram", sg.ops.cross_entropy(sg.ops.embedding(ids, E), targets),
                    params=[E], inputs={ids: sg.Integers(0, vocab - 1),
                                        targets: sg.Integers(0, vocab - 1)})


def test_plain_model_with_module_is_verified_on_its_tensor_program():
    """``sg.verify(plain_model, module=...)`` runs the model's tensor program (the scalar
    module branch is gone): a correct module passes in its own names, a module whose backward
    is scaled by 1 + 1e-9 fails on that parameter."""
    model = _bigram_model()
    ok = sg.verify(model, module=_Bigram(5), module_map={"tok_emb": "tok_emb.weight"},
                   samples=N, seed=0)
    assert ok.ok and "module" in ok.comparisons, str(ok)
    assert ok.outputs[1] == "d/dtok_emb.weight[0, 0]"
    bad = sg.verify(model, module=_Bigram(5, 1 + 1e-9), module_map={"tok_emb": "tok_emb.weight"},
                    samples=N, seed=0)
    assert bad.verdict == "fail" and bad.comparisons["torch"].ok
    assert all(f.backend == "module" and "tok_emb.weight" in f.output for f in bad.failures)


def test_path_difference_is_said_in_absolute_terms_not_absurd_ratios():
    """Meant to fail on the old note: it scaled a float32 allowance (in float32 ULPs) by float64
    spacings, so an entry with an exact zero printed "= 5.79e+259 of its allowance". The note
    now gives the difference and the allowance as they are, and their ratio only where it
    means something."""
    from types import SimpleNamespace as NS
    from symgrad.compare import Tolerance, compare
    from symgrad.modules.run import PATH_VERDICT, _difference
    exact = np.array([[1.0, 0.0, 2.0]])
    bound = np.array([[1.0, 3.0, 2.0]])  # the zero came from terms of size ~3

    def comp(got):
        return compare(exact, 0 * exact, np.array([got]), bound, backend="m", dtype="float32",
                       tol=Tolerance())
    result = NS(outputs=["value", "d/dw[0]", "d/dw[1]"], oracle_samples=np.array([7]))
    eager, other = comp([1.0, 1e-8, 2.0]), comp([1.0, 2e-8, 2.0])
    note = _difference(result, other, eager)
    assert "most in w[0] at sample 7: |difference| 1e-08, allowance 7.15e-07 = 0.014 of its " \
        "allowance" in note, note
    tiny_allow = compare(exact, 0 * exact, np.array([[1.0, 1e-3, 2.0]]), 0 * bound,
                         backend="m", dtype="float32", tol=Tolerance())
    note = _difference(result, tiny_allow, eager)
    assert note.endswith("|difference| 0.001, allowance 4.7e-38"), note  # no ratio there
    assert PATH_VERDICT == {"pass": "ok", "fail": "FAIL", "inconclusive": "inconclusive"}
