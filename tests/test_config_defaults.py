"""trap22: what a new user met. ``config=`` must not change how many samples a run draws (a
module's 8 became VerifyConfig's 500, silently: a CNN ran ~60x longer), and a misspelled
keyword of ``sg.verify`` / ``VerifyConfig`` is one line naming it and the one meant."""

from __future__ import annotations

import inspect

import pytest
import sympy as sp
import torch
from torch import nn

import symgrad as sg
from symgrad import zoo
from symgrad.config import MODEL_SAMPLES
from symgrad.errors import KeywordError, checked_keywords
from symgrad.modules.any import DEFAULT_SAMPLES


@pytest.fixture(scope="module")
def small():
    """A tiny module and its example input (float64)."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(3, 2).double()
    with torch.no_grad():
        for p in lin.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return nn.Sequential(lin, nn.Tanh()), torch.randn(4, 3, generator=g, dtype=torch.float64)


def test_a_config_keeps_a_module_runs_default_samples(small):
    """Fails before the fix: config=VerifyConfig(...) drew VerifyConfig's 500 samples."""
    module, x = small
    plain = sg.verify(module=module, inputs=x)
    with_config = sg.verify(module=module, inputs=x, config=sg.VerifyConfig(seed=0))
    assert plain.config.samples == with_config.config.samples == DEFAULT_SAMPLES == 8
    assert with_config.as_dict()["config"]["samples"] == with_config.as_dict()["samples_drawn"] == 8
    assert with_config.as_dict() == plain.as_dict()  # the same run, field for field
    assert with_config.verdict == plain.verdict == "pass"


def test_samples_set_anywhere_are_the_ones_drawn(small):
    module, x = small
    assert sg.verify(module=module, inputs=x, config=sg.VerifyConfig(samples=3)).config.samples == 3
    assert sg.verify(module=module, inputs=x, samples=2,
                     config=sg.VerifyConfig(seed=1)).config.samples == 2  # config leaves it open
    assert sg.verify(module=module, inputs=x, samples=3,
                     config=sg.VerifyConfig(samples=3)).config.samples == 3  # the two agree
    with pytest.raises(sg.SymgradError, match=r"^verify: samples=2 and config.samples=3 "
                       r"disagree; give it once"):  # api23: config's silently won
        sg.verify(module=module, inputs=x, samples=2, config=sg.VerifyConfig(samples=3))


def test_a_model_without_samples_draws_the_model_default():
    m = zoo.get("neuron")
    r = sg.verify(m, config=sg.VerifyConfig(seed=0))
    assert r.config.samples == r.as_dict()["samples_drawn"] == MODEL_SAMPLES == 500 and r.ok
    assert sg.VerifyConfig().samples is None  # unresolved until a run resolves it


@pytest.mark.parametrize("samples", [0, -1, 2.5, True, "8"])
def test_a_bad_samples_is_one_line(samples):
    with pytest.raises(sg.SymgradError, match=r"^samples must be a positive integer, got"):
        sg.VerifyConfig(samples=samples)


def test_a_misspelled_verify_keyword_names_the_one_meant():
    with pytest.raises(sg.SymgradError, match=r"^verify: unknown keyword 'sampels' \(did you mean "
                       r"'samples'\?\); its keywords: model, torch_fn, samples, seed, "):
        sg.verify(zoo.get("neuron"), sampels=5)
    with pytest.raises(TypeError):  # still the TypeError Python raises for it
        sg.verify(zoo.get("neuron"), sede=1)


def test_a_misspelled_config_keyword_names_the_one_meant():
    with pytest.raises(KeywordError, match=r"^VerifyConfig: unknown keyword 'sample' \(did you "
                       r"mean 'samples'\?\); its keywords: samples, seed, device, "):
        sg.VerifyConfig(sample=5)
    with pytest.raises(KeywordError, match=r"unknown keywords 'sede' \(did you mean 'seed'\?\); "
                       r"'zzz'; its keywords"):
        sg.VerifyConfig(sede=1, zzz=2)
    assert sg.VerifyConfig(5, seed=2).samples == 5  # positional and correct keywords as before


def test_the_other_public_calls_name_a_misspelled_keyword_too():
    """newuser8: sg.Model(..., param=[w]), sg.explain(m, format="latex") (the CLI's --format)
    and sg.exact_at(m, p, dsp=30) were Python's bare TypeError, naming no fix."""
    w = sp.Symbol("w")
    with pytest.raises(KeywordError, match=r"^Model: unknown keyword 'param' \(did you mean "
                       r"'params'\?\); its keywords: name, loss, params, inputs"):
        sg.Model("m", w ** 2, param=[w])
    m = sg.Model("m", w ** 2, params=[w])
    for typed in ("format", "fromat"):  # the CLI's option, and it misspelled: how to write it
        with pytest.raises(KeywordError, match=rf"^explain: unknown keyword '{typed}' \(it "
                           r"returns an Explanation: write it with \.latex\(\), \.markdown"):
            sg.explain(m, **{typed: "latex"})
    with pytest.raises(KeywordError, match=r"'a' \(did you mean 'at'\?\); its keywords: "
                       r"model, at$"):
        sg.explain(m, a={"w": 1.0})
    with pytest.raises(KeywordError, match=r"^exact_at: unknown keyword 'dsp' \(did you mean "
                       r"'dps'\?\)"):
        sg.exact_at(m, {"w": 1.0}, dsp=30)
    with pytest.raises(KeywordError, match=r"^capture: unknown keyword 'grads' \(did you "):
        sg.capture(torch.tanh, (torch.ones(2, dtype=torch.float64),), grads=[True])
    with pytest.raises(KeywordError, match=r"^compare_paths: unknown keyword 'path' \(did you "):
        sg.compare_paths(zoo.get("neuron"), nn.Linear(1, 1), path=("eager",))
    assert "at" in inspect.signature(sg.explain).parameters  # signatures stay their own
    assert sg.explain(m, at={"w": 2.0}).markdown()  # and correct calls run as before


def test_the_checked_signatures_stay_typed_and_keyword_only():
    sig = inspect.signature(sg.verify)
    assert sig.parameters["samples"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["samples"].annotation == "int | None"
    assert "samples" in inspect.signature(sg.VerifyConfig).parameters
    assert sg.verify.__doc__.startswith("Verify every gradient")


def test_a_function_taking_any_keyword_is_left_as_it_is():
    def f(**kw):
        return kw
    assert checked_keywords(f) is f
