"""``symgrad verify NAME --at x=...,w=...``: one chosen point instead of random draws (newuser7:
a teacher's ``verify --at`` was "unrecognized arguments", while the refusal of a model undefined
on its domains told the user to "verify at chosen points with at= (CLI: --at)")."""

import json
import textwrap

import pytest

from symgrad.cli import main

MODELS = textwrap.dedent("""
    import sympy as sp, symgrad as sg, torch
    w, x = sp.symbols("w x")
    def wrong_beyond_1(w, x):  # a gradient bug only where x > 1
        s = torch.where(x > 1, w * (1 + 1e-9), w)
        return torch.sin(s * x)
    planted = sg.Model("planted", sp.sin(w * x), params=[w], inputs={x: sg.Uniform(-3, 3)},
                       reference=wrong_beyond_1)
    logsq = sg.Model("logsq", sp.log(w * x) ** 2, params=[w], inputs={x: sg.Normal(0, 1)})
""")


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "atmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_verify_at_checks_the_point_given(models, capsys):
    """The point is the one verified: the planted bug fails at x = 2 and passes at x = 0.5."""
    assert main(["verify", "atmodels:planted", "--at", "w=0.7,x=2", "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["verdict"] == "fail"
    assert doc["models"][0]["sampling"].startswith("the one point given by --at (w=0.7,x=2)")
    assert "verifying planted: the one point given by --at" in captured.err
    assert main(["verify", "atmodels:planted", "--at", "w=0.7,x=0.5"]) == 0
    assert "PASS (1 of 1 samples" in capsys.readouterr().out


def test_a_model_refused_on_its_domains_verifies_at_a_chosen_point(models, capsys):
    """The refusal's advice ("verify at chosen points with at= (CLI: --at)") can be followed."""
    assert main(["verify", "atmodels:logsq", "--samples", "20"]) == 2
    assert "(CLI: --at)" in capsys.readouterr().err
    assert main(["verify", "atmodels:logsq", "--at", "w=1.5,x=2"]) == 0


@pytest.mark.parametrize("argv, line", [
    (["--at", "w=1"], "symgrad: error: --at: no values for 'x'; give every block: w, x"),
    (["--at", "w=1,X=2"], "symgrad: error: --at: unknown name(s) ['X']; missing ['x']"),
    (["--at", "w=1,x=2", "--samples", "3"],
     "symgrad: error: --at w=1,x=2 is the one point verified, --samples 3 asks for random "
     "draws; drop one of them")])
def test_a_bad_point_is_one_line_before_the_run_is_announced(models, capsys, argv, line):
    assert main(["verify", "atmodels:planted", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err


def test_a_matrix_block_names_the_python_call_that_takes_it(capsys):
    assert main(["verify", "tensor_ops", "--at", "x=1"]) == 2
    err = capsys.readouterr().err
    assert "--at takes scalar values only, use the Python API (sg.verify(model, at={...}))" in err


def test_a_matrix_block_given_to_at_is_the_one_named(tmp_path, monkeypatch, capsys):
    """newuser8: ``--at W=1`` on a softmax classifier said "'c' is a block of shape (3,)",
    a block the user had not typed; now the one given, and every array block listed."""
    (tmp_path / "clf_nu8.py").write_text(
        "import sympy as sp, symgrad as sg\n"
        "W, c, x, t = sg.matrix('W', 3, 4), sg.matrix('c', 3), sg.matrix('x', 4), sp.Symbol('t')\n"
        "clf = sg.Model('clf', sg.ops.cross_entropy(sg.ops.linear(x, W, c).T, sp.Matrix([t])),"
        " params=[W, c], inputs={x: sg.Normal(0, 1), t: sg.Integers(0, 2)})\n")
    monkeypatch.chdir(tmp_path)
    for command, given, named in (("verify", "W=1", "W"), ("explain", "t=1", "W")):
        assert main([command, "clf_nu8.py:clf", "--at", given]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"symgrad: error: --at: {named!r} is a block of shape "
                       f"{(3, 4)} (array blocks: W (3, 4), c (3,), x (4,)); --at takes scalar "
                       f"values only, use the Python API (sg.{command}(model, at={{...}})) for "
                       "matrix models"], err
