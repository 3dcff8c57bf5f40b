import pytest

import symgrad as sg
from symgrad import SymgradError, zoo


@pytest.mark.parametrize("name", ["chain_rule", "neuron", "tensor_ops"])
def test_builtin_models_agree_with_their_native_torch_reference(models, name):
    m = models[name]
    assert m.description and m.reference is not None
    r = sg.verify(m, torch_fn=m.reference, samples=200, seed=0)
    assert r.ok, str(r)


def test_simplenet_native_reference_agrees_away_from_saturation(models):
    m = models["simplenet"]
    r = sg.verify(m, torch_fn=m.reference, samples=200, seed=0)
    assert r.ok, str(r)
    assert set(r.comparisons) == {"numpy", "torch", "torch_fn"}


def test_load_errors():
    with pytest.raises(SymgradError, match="has no attribute 'nope'"):
        zoo.get("symgrad.zoo.tutorial:nope")
    with pytest.raises(SymgradError, match="not an sg.Model"):
        zoo.get("symgrad.zoo.native:SimpleNet")
    assert zoo.get("symgrad.zoo.tutorial:neuron").name == "neuron"
    tensor = zoo.get("symgrad.zoo.gpt2:tiny_gpt")  # a factory of a tensor program
    assert type(tensor).__name__ == "TensorModel" and tensor.n_parameters == 7136


def test_a_misspelt_attribute_of_a_user_module_gets_a_suggestion(tmp_path, monkeypatch):
    """``mlp:modle`` names the module's close attribute, as an unknown zoo name does."""
    (tmp_path / "ux_mlp_typo.py").write_text(
        "import sympy as sp, symgrad as sg\nw = sp.Symbol('w')\n"
        "model = sg.Model('m', sp.sin(w), params=[w])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SymgradError, match=r"has no attribute 'modle'; did you mean 'model'\?"):
        zoo.get("ux_mlp_typo:modle")
    with pytest.raises(SymgradError) as far:  # nothing close: no guess
        zoo.get("ux_mlp_typo:qqqqqq")
    assert "did you mean" not in str(far.value)
