import subprocess
import sys
import textwrap

import pytest
import sympy as sp
import torch

import symgrad as sg
from symgrad.testing import assert_gradients_match


def _model():
    w, x = sp.symbols("w x")
    return sg.Model("tanh_neuron", sp.tanh(w * x), params=[w], inputs=[x])


def test_correct_code_passes():
    assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x), max_examples=25)


def test_wrong_code_fails_with_table_and_minimal_input():
    with pytest.raises(AssertionError, match=r"(?s)ULPs.*minimal input: w=0\.0, x=1\.0"):
        assert_gradients_match(_model(), torch_fn=lambda w, x: torch.tanh(w * x * (1 + 1e-12)),
                               max_examples=30)


def test_three_line_user_file_runs_under_pytest(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        from symgrad.testing import assert_gradients_match
        from symgrad import zoo
        def test_neuron(): assert_gradients_match(zoo.get("neuron"), max_examples=10)
        def test_fixture(assert_gradients): assert_gradients(zoo.get("chain_rule"), max_examples=5)
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--hypothesis-profile=ci", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout
