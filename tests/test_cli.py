import json
import subprocess
import sys
import textwrap

import pytest

from symgrad import zoo, zoo_index
from symgrad.cli import main
from symgrad.errors import SymgradError


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("chain_rule", "neuron", "simplenet", "tensor_ops"):
        assert name in out


def test_verify_ok_and_json(capsys):
    assert main(["verify", "neuron", "--samples", "30", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # exactly one JSON document on stdout
    assert doc["ok"] and doc["models"][0]["model"] == "neuron"
    assert "verifying neuron" in captured.err


def test_exit_1_on_mismatch(tmp_path, capsys, monkeypatch):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import sympy as sp, symgrad as sg, torch
        w, x = sp.symbols("w x")
        def wrong(w, x):
            return torch.sin(w * x) * (1 + 1e-9)
        broken = sg.Model("broken", sp.sin(w * x), params=[w], inputs=[x], reference=wrong)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "mymodels:broken", "--samples", "20"]) == 1
    assert "mismatch" in capsys.readouterr().out


def test_exit_2_on_bad_input(capsys):
    assert main(["verify", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["verify", "nueron"]) == 2
    assert "did you mean 'neuron'?" in capsys.readouterr().err
    assert main(["verify", "neuron", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert main(["verify", "neuron", "--dtype", "float33"]) == 2
    err = capsys.readouterr().err  # the one error line only, nothing announced before it
    assert "unknown dtype 'float33'" in err and "verifying" not in err, err
    assert main(["report", "neuron", "--dtype", "float33", "--out", "unused"]) == 2
    err = capsys.readouterr().err  # report shares the check (it announced the model first)
    assert "unknown dtype 'float33'" in err and "verifying" not in err, err
    assert main(["verify", "neuron", "--samples", "0"]) == 2
    assert "samples must be a positive integer" in capsys.readouterr().err
    assert main(["verify", "nomodule_xyz:attr"]) == 2
    assert "cannot import module 'nomodule_xyz'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_console_script_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "symgrad", "verify", "chain_rule", "--samples", "10",
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"]


def test_backends_option_verifies_only_the_reference(capsys):
    import json as _json
    assert main(["verify", "neuron", "--samples", "10", "--backends", "torch_fn", "--json"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert set(out["models"][0]["backends"]) == {"torch_fn"}
    assert main(["verify", "neuron", "--samples", "5", "--backends", "jax"]) == 2
    assert "backends: unknown ['jax']" in capsys.readouterr().err


def test_text_counts_equal_the_json(capsys):
    assert main(["verify", "simplenet", "--samples", "60", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["models"][0]
    warnings = sum(b["counts"]["precision loss"] for b in doc["backends"].values())
    assert warnings == doc["finding_counts"]["warnings"] > len(doc["precision_losses"]) // 3
    assert main(["verify", "simplenet", "--samples", "60"]) == 0
    text = capsys.readouterr().out
    assert f"{warnings} precision-loss warning(s), the worst:" in text


def test_failing_user_factory_exits_2_without_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "badfactory.py").write_text("def build():\n    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "badfactory:build"]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "Traceback" not in err
    assert main(["report", "badfactory:build", "--out", str(tmp_path / "r")]) == 2


def test_unwritable_out_exits_2_before_verifying(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["report", "neuron", "--out", str(blocker / "reports")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write" in err and "verifying" not in err


def test_ctrl_c_prints_one_line_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    import importlib
    monkeypatch.setattr(importlib.import_module("symgrad.commands"), "verify", interrupted)
    out = tmp_path / "r"
    assert main(["report", "neuron", "chain_rule", "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "symgrad: interrupted; nothing was written"
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_report_ends_saying_where_to_look(tmp_path, capsys):
    assert main(["report", "chain_rule", "--out", str(tmp_path), "--samples", "20",
                 "--no-progress"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"symgrad: open {tmp_path / 'index.html'}"


def test_progress_shows_every_long_phase_on_stderr(capsys):
    assert main(["verify", "chain_rule", "--samples", "20", "--progress", "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one JSON document
    for phase in ("deriving chain_rule", "compiling chain_rule", "exact derivative (oracle)"):
        assert phase in captured.err
    assert main(["verify", "chain_rule", "--samples", "20", "--no-progress"]) == 0
    err = capsys.readouterr().err  # the sampling line names the oracle; no phase shows
    assert "exact derivative (oracle)" not in err and "compiling" not in err


def test_user_model_is_found_in_the_current_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodel_cwd.py").write_text(
        "import sympy as sp, symgrad as sg\nw = sp.Symbol('w')\n"
        "model = sg.Model('mine', sp.tanh(w) ** 2, params=[w])\n")
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "mymodel_cwd:model", "--samples", "10"]) == 0
    assert "mine" in capsys.readouterr().out


def test_module_factory_gets_the_whole_config_and_the_oracle_escalates_its_balls(capsys):
    # meant to fail on the old behaviour: a partial --config reached the module factory as is
    # (KeyError 'vocab_size'), and at emb_dim 32 one 128-bit ARB ball was too wide to certify
    # the oracle (the certificate now re-evaluates at 256 / 512 bits)
    from symgrad.cli import main
    assert main(["verify", "tiny_gpt", "--module", "tests.gptmodels.book:GPTModel",
                 "--config", '{"emb_dim": 32}', "--samples", "1", "--no-progress"]) == 0
    assert "— PASS" in capsys.readouterr().out


SATURATED = """
    import sympy as sp, symgrad as sg, torch
    w, x = sp.symbols("w x")
    # tanh at |wx| >= 20: d/dw = x sech^2(wx) lies below the rounding of 1 - tanh^2, so correct
    # code cannot be told from 0 there: inconclusive entries, none failing
    saturated = sg.Model("saturated", sp.tanh(w * x), params={w: sg.Uniform(20, 40)},
                         inputs={x: sg.Uniform(1, 2)}, reference=lambda w, x: torch.tanh(w * x))
"""


def test_exit_3_on_an_inconclusive_verdict(tmp_path, capsys, monkeypatch):
    (tmp_path / "satmodels.py").write_text(textwrap.dedent(SATURATED))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "satmodels:saturated", "--samples", "10", "--no-progress"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("symgrad: saturated — INCONCLUSIVE") and "inconclusive" in out
    assert main(["verify", "satmodels:saturated", "--samples", "10", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "inconclusive" and doc["ok"] is False
    assert doc["models"][0]["verdict"] == "inconclusive"
    # with a passing model beside it: still 3; with a failing one: 1
    assert main(["verify", "neuron", "satmodels:saturated", "--samples", "10"]) == 3
    capsys.readouterr()
    # report: 0 once written, --strict: 3 (inconclusive, none failed)
    out_dir = tmp_path / "rep"
    args = ["report", "satmodels:saturated", "--samples", "10", "--out", str(out_dir)]
    assert main(args) == 0
    assert main(args + ["--strict"]) == 3
    assert "INCONCLUSIVE" in capsys.readouterr().out


_LOADED = ("import runpy, sys\n"
           "sys.argv = ['symgrad'] + sys.argv[1:]\n"
           "try:\n"
           "    runpy.run_module('symgrad.cli', run_name='__main__')\n"
           "finally:\n"
           "    print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))\n")


@pytest.mark.parametrize("argv, line", [
    (["verify", "--bogus"], "symgrad verify: error: the following arguments are required: "
                            "NAME|module:attr (see symgrad verify --help)"),
    (["verify", "neuron", "--bogus"], "symgrad verify: error: unrecognized arguments: --bogus "
                                      "(see symgrad verify --help)"),
    (["verify", "neuron", "--dtpye", "float32"],  # newuser8: a misspelled option, and the fix
     "symgrad verify: error: unrecognized arguments: --dtpye float32; did you mean '--dtype'? "
     "(see symgrad verify --help)"),
    (["explain", "neuron", "--fromat=latex", "--att", "x=1"],
     "symgrad explain: error: unrecognized arguments: --fromat=latex --att x=1; --fromat: did "
     "you mean '--format'?; --att: did you mean '--at'? (see symgrad explain --help)"),
    (["verify", "nosuchmodel"], "symgrad: error: unknown model 'nosuchmodel'; built-in models: "),
    (["report", "nueron"], "symgrad: error: unknown model 'nueron'; did you mean 'neuron'? "),
    (["explain", "nope", "--at", "x=1"], "symgrad: error: unknown model 'nope'; ")])
def test_usage_and_unknown_name_errors_come_before_torch_loads(argv, line):
    """Bad usage and an unknown built-in name: exit 2 with the one line, decided before torch
    or sympy is imported (``python -m symgrad.cli`` in a fresh process; the imports it made
    are printed on the way out)."""
    r = subprocess.run([sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True,
                       timeout=120)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and err[0].startswith(line), (r.returncode, err)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout  # neither torch nor sympy


def test_the_packages_public_names_load_on_first_use_and_stay_the_functions():
    """``symgrad/__init__.py`` loads its names lazily; a submodule sharing a public name
    (symgrad.verify, .explain, .capture), imported by anyone, leaves the name the function."""
    code = ("import sys, types, symgrad as sg\n"
            "assert 'torch' not in sys.modules and 'sympy' not in sys.modules\n"
            "import symgrad.verify, symgrad.explain, symgrad.capture.captured\n"
            "names = ('verify', 'explain', 'capture', 'exact_at', 'Model', 'matrix')\n"
            "assert all(callable(getattr(sg, n)) for n in names)\n"
            "assert not any(isinstance(getattr(sg, n), types.ModuleType) for n in names)\n"
            "assert isinstance(sg.ops, types.ModuleType) and sg.zoo.names()\n"
            "from symgrad import verify, Tolerance\n"
            "assert verify is sg.verify and Tolerance is sg.Tolerance\n"
            "assert all(hasattr(sg, n) for n in sg.__all__)\n"
            "try:\n"
            "    sg.nosuchname\n"
            "except AttributeError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "module 'symgrad' has no attribute 'nosuchname'"


def test_list_and_the_early_name_check_read_the_zoos_own_names(capsys):
    """The names the command line checks early (``zoo_index``) are the zoo's own, in order;
    ``symgrad list`` prints each with its line."""
    assert zoo_index.NAMES == zoo.names()
    assert set(zoo.BUILDERS) == set(zoo_index.ZOO)
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = zoo.names() + zoo_index.LARGE
    assert [line.split()[0] for line in out] == names
    assert all(zoo.describe(n) in line for n, line in zip(names, out))
    with pytest.raises(SymgradError, match="unknown model 'nope'; built-in models: chain_rule"):
        zoo.get("nope")  # the same line from the zoo itself


def test_exit_codes_are_in_the_help(capsys):
    from symgrad.cli import exit_code
    assert main(["verify", "--help"]) == 0
    assert "3 inconclusive" in " ".join(capsys.readouterr().out.split())
    assert main(["report", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit 1 when a model fails, 3 when none fails but one is inconclusive" in text
    assert (exit_code(["pass"]), exit_code(["pass", "fail", "inconclusive"]),
            exit_code(["inconclusive", "pass"])) == (0, 1, 3)


def test_report_strict_exits_1_on_a_fail(tmp_path, capsys, monkeypatch):
    (tmp_path / "badmodels.py").write_text(textwrap.dedent("""
        import sympy as sp, symgrad as sg, torch
        w, x = sp.symbols("w x")
        broken = sg.Model("broken", sp.sin(w * x), params=[w], inputs=[x],
                          reference=lambda w, x: torch.sin(w * x) * (1 + 1e-9))
    """) + textwrap.dedent(SATURATED))
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["report", "badmodels:broken", "badmodels:saturated", "--samples", "10", "--out",
            str(tmp_path / "rep")]
    assert main(args) == 0 and main(args + ["--strict"]) == 1
    index = (tmp_path / "rep" / "index.md").read_text()
    assert "0 of 2 models passed, 1 inconclusive, 1 failed." in index
    page = (tmp_path / "rep" / "index.html").read_text()
    assert 'class="verdict verdict-fail" style="background:#cf222e' in page
    assert 'class="verdict verdict-inconclusive" style="background:#9a6700' in page
    sat = (tmp_path / "rep" / "saturated.md").read_text()
    assert sat.startswith("# saturated: INCONCLUSIVE") and "Decided by torch_fn" in sat
    assert "| INCONCLUSIVE |" in sat.replace("  ", " ")


@pytest.mark.parametrize("argv", [
    ["verify", "neuron", "--order", "3"], ["verify", "neuron", "--samples", "abc"],
    ["verify", "neuron", "--samples", "-3"], ["verify", "neuron", "--oracle-samples", "0"],
    ["verify", "neuron", "--seed", "-1"], ["verify", "neuron", "--workers", "0"],
    ["verify", "neuron", "--tokens", "x"], ["report", "neuron", "--samples", "0"],
    ["fuzz", "--samples", "0"], ["fuzz", "--budget", "-1"], ["fuzz", "--seed", "x"],
    ["ops", "--budget", "0"], ["ops", "--seed", "-4"], ["explain", "neuron", "--format", "pdf"],
    ["explain", "neuron", "--tokens", "1.5"], ["verify"], ["frobnicate"]])
def test_bad_usage_is_one_line_and_exit_2(argv, capsys):
    """argparse's usage block is not printed before the error: one line naming the option, and
    where the usage is (exit 2); a count below 1 is refused before anything runs."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "usage:" not in err[0], err
    assert err[0].startswith("symgrad") and "error: " in err[0] and "--help" in err[0]


@pytest.mark.parametrize("command", ["verify", "report", "explain"])
def test_an_unknown_option_points_at_its_subcommands_help(command, capsys):
    """`symgrad verify neuron --frobnicate`: the subcommand names it and its own --help."""
    assert main([command, "neuron", "--frobnicate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"symgrad {command}: error: unrecognized arguments: --frobnicate "
                   f"(see symgrad {command} --help)"), err


def test_report_order_2_writes_its_own_set_and_leaves_the_first_order_one(tmp_path, capsys):
    """`report --order 2`: the Hessian-vector products' report set in OUT/order2/ (atomically,
    as the first-order set); the first-order files in OUT/ are not touched."""
    out = tmp_path / "rep"
    assert main(["report", "chain_rule", "--samples", "10", "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["report", "chain_rule", "neuron", "--order", "2", "--samples", "10",
                 "--out", str(out), "--strict"]) == 1  # the neuron's nn.BCELoss (test_hvp)
    captured = capsys.readouterr()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == first
    index = (out / "order2" / "index.md").read_text()
    assert index.startswith("# symgrad second-order verification reports")
    assert "1 of 2 models passed, 0 inconclusive, 1 failed." in index
    page = (out / "order2" / "chain_rule.md").read_text()
    assert "checked against the exact Hessian-vector product H v at order 2" in page
    assert "Hv:x" in page
    doc = json.loads((out / "order2" / "neuron.json").read_text())
    assert doc["result"]["config"]["order"] == 2
    assert "neuron at order 2 (Hessian-vector products)" in captured.err
    assert str(out / "order2" / "index.html") in captured.err
    assert "| neuron" in captured.out.replace("  ", " ") or "neuron" in captured.out


def test_version_prints_the_package_version(capsys):
    """`symgrad --version`: the version on stdout, exit 0 (not 'a command is required')."""
    from symgrad.version import __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"symgrad {__version__}"


def test_train_without_module_is_refused_in_one_line(capsys):
    """`--train` only puts a --module in train mode: alone it was silently ignored (exit 0)."""
    assert main(["verify", "neuron", "--train", "--samples", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--train" in err[0] and "--module pkg.mod:attr" in err[0], err


def test_an_unimportable_module_is_the_only_line(capsys):
    """`--module nosuch.mod:GPT`: the import error before anything is announced or derived."""
    assert main(["verify", "tiny_gpt", "--module", "nosuch_symgrad_mod:GPT"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuch_symgrad_mod" in err[0] and "verifying" not in err[0], err


def test_verify_order_2_says_so_before_running(capsys):
    """`verify --order 2` announces the Hessian-vector products, as `report --order 2` does."""
    assert main(["verify", "chain_rule", "--order", "2", "--samples", "3"]) == 0
    err = capsys.readouterr().err
    assert "symgrad: verifying chain_rule at order 2 (Hessian-vector products): 3 samples" in err


def test_type_checkers_see_every_public_name_from_its_own_module():
    """The lazy ``__init__`` keeps a ``TYPE_CHECKING`` import of each public name, so IDEs and
    type checkers see the signatures: the same names, from the modules ``_PUBLIC`` loads."""
    import ast
    from pathlib import Path

    import symgrad

    tree = ast.parse(Path(symgrad.__file__).read_text())
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                for alias in imp.names:
                    module = (imp.module or alias.name).lstrip(".") if imp.module else alias.name
                    seen[alias.asname or alias.name] = module
    assert seen == symgrad._PUBLIC


def test_the_gpt_options_help_names_every_gpt_model_the_zoo_lists(capsys):
    """``--config`` and ``--tokens`` name the models the zoo's table builds with the GPT builder
    (gpt2_medium too), read from that table."""
    gpts = ", ".join(zoo_index.GPT)
    assert "gpt2_medium" in zoo_index.GPT and "neuron" not in zoo_index.GPT
    for command in ("verify", "explain"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"--config CONFIG {gpts}: a GPT_CONFIG-shaped JSON object" in text, command
        assert f"--tokens TOKENS {gpts}: sequence length of a sample" in text, command


def test_list_reads_the_zoos_table_before_torch_loads():
    """``symgrad list`` prints every line of the zoo's table (``zoo_index.ZOO``) with neither
    torch nor sympy imported (``reports/benchmark_cli_startup.md``)."""
    r = subprocess.run([sys.executable, "-c", _LOADED, "list"], capture_output=True, text=True,
                       timeout=120)
    out = r.stdout.strip().splitlines()
    assert r.returncode == 0 and out[-1] == "[]", (r.returncode, r.stderr, out[-1:])
    assert [line.split()[0] for line in out[:-1]] == list(zoo_index.ZOO)
