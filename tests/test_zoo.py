import sys

import pytest

import symgrad as sg
from symgrad import SymgradError, zoo, zoo_index
from symgrad.zoo.gpt import load_config


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


def test_a_file_path_a_module_and_a_torch_fn_are_named_for_what_they_are(tmp_path, monkeypatch):
    """newuser5: `symgrad verify ./mine.py:model` said "building it raised TypeError: the
    'package' argument is required ...; fix the model factory", `mine.py:model` "No module named
    'mine.py'", an nn.Module instance was called as a factory (forward() missing 'x'), and a
    torch_fn "missing 6 required positional arguments"."""
    (tmp_path / "nu5_mine.py").write_text(
        "import sympy as sp, symgrad as sg, torch\nw = sp.Symbol('w')\n"
        "model = sg.Model('m', sp.sin(w), params=[w])\n"
        "net = torch.nn.Linear(2, 1)\n"
        "def torch_fn(w):\n    return torch.sin(w)\n")
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the path import adds the file's folder
    assert zoo.get(f"{tmp_path.name}/nu5_mine.py:model").name == "m"  # a path, from its folder
    with pytest.raises(SymgradError, match=r"^nope/mine\.py:model: no such file 'nope/mine\.py'; "
                                           r"give the path of a \.py file, or its module name"):
        zoo.get("nope/mine.py:model")
    with pytest.raises(SymgradError, match=r"^'mine\.py' is no built-in model and no file here: "
                                           r"for a model in a file, name the model inside it, "
                                           r"mine\.py:attr"):
        zoo.get("mine.py")
    with pytest.raises(SymgradError, match=r"nu5_mine\.py' is a file: for a model in a file"):
        zoo.get(f"{tmp_path.name}/nu5_mine.py")
    with pytest.raises(SymgradError, match=r"^nu5_mine:net is a torch\.nn\.Module, not an "
                                           r"sg\.Model: verify a module from Python with "
                                           r"sg\.verify\(module=\.\.\., inputs=\.\.\.\)"):
        zoo.get("nu5_mine:net")
    with pytest.raises(SymgradError, match=r"^nu5_mine:torch_fn is a function of w, not a model "
                                           r"factory \(a function of no arguments"):
        zoo.get("nu5_mine:torch_fn")


def test_a_config_file_that_does_not_exist_is_named():
    """newuser5: --config nofile.json read as JSON text: "Expecting value: line 1 column 1"."""
    with pytest.raises(SymgradError, match=r"^--config: no such file 'nofile_nu5\.json'; give an "
                                           r"existing \.json file or the JSON itself"):
        load_config("nofile_nu5.json")
    assert load_config('{"n_layers": 1}') == {"n_layers": 1}


def test_a_user_attribute_that_is_no_model_is_refused_in_one_line_naming_it():
    """``module:attr`` naming neither a model nor a factory: one line with what it is and what
    is accepted (the models' one protocol, ``as_program``, decides; no type is asked)."""
    with pytest.raises(SymgradError, match=r"^symgrad.zoo.gpt:BLOCKS is a dict, not a model: "
                                           r"give an sg.Model \(a sympy loss\) or a "
                                           r"symgrad.tensor TensorModel, or a function"):
        zoo.get("symgrad.zoo.gpt:BLOCKS")
    model = zoo.get("neuron")
    assert model.as_program().as_program() is model.as_program()  # a program is its own


def test_each_built_in_model_describes_itself_with_its_line_in_the_zoos_table():
    """One source for a built-in model's line: ``symgrad list`` prints the zoo's table
    (``zoo_index``), and the model built carries the same line (the attention block adds its
    shapes; a GPT describes its config)."""
    for name in zoo.names():
        if not zoo_index.ZOO[name].gpt:
            assert zoo.get(name).description.startswith(zoo_index.describe(name)), name
            assert zoo.describe(name) == zoo_index.describe(name)


def test_an_attribute_not_there_or_not_given_lists_the_models_the_file_defines(tmp_path,
                                                                              monkeypatch):
    """newuser7: `verify teacher.py:nope` said only "has no attribute 'nope'", `teacher.py:`
    "has no attribute ''", and a factory returning 3 "is a int"."""
    (tmp_path / "nu7_teacher.py").write_text(
        "import sympy as sp, symgrad as sg\nfrom math import sqrt\nw = sp.Symbol('w')\n"
        "def neuron():\n    return sg.Model('n', sp.tanh(w) ** 2, params=[w])\n"
        "def helper(x):\n    return x\n"
        "reg = sg.Model('r', sp.sin(w), params=[w])\n"
        "def three():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SymgradError) as far:
        zoo.get("nu7_teacher:qqqqqq")
    assert str(far.value).endswith("no attribute 'qqqqqq'; the models and functions of no "
                                   "arguments it defines: neuron, reg, three")  # not sqrt, helper
    with pytest.raises(SymgradError) as empty:
        zoo.get("nu7_teacher:")
    assert str(empty.value).startswith("'nu7_teacher:': name the model after the colon "
                                       "(module:attr), e.g. nu7_teacher:neuron; ")
    with pytest.raises(SymgradError, match="nu7_teacher:three is an int, not a model: give an sg.Model"):
        zoo.get("nu7_teacher:three")
