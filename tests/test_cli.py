import json
import subprocess
import sys
import textwrap

from symgrad.cli import main


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
    assert main(["verify", "neuron", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
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
