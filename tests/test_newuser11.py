"""A new user's trial of issues 17 and 19's surfaces (reports/newuser11.md): each test fails
without its fix."""

from __future__ import annotations

import sympy as sp
import torch

import symgrad as sg

x, y, w, b = sp.symbols("x y w b")
AT_KINK = {"w": 2.0, "b": 0.0, "x": 0.0, "y": 0.1}  # w x + b = 0: relu's kink, exactly


def _relu_sq() -> sg.Model:
    return sg.Model("relu_sq", (sg.ops.relu(w * x + b) - y) ** 2, params=[w, b],
                    inputs={x: sg.Normal(0, 1), y: sg.Normal(0, 1)})


class _TwoAtZero(torch.autograd.Function):
    """relu whose backward hands 2 x the gradient through at exactly 0 (outside [0, 1])."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.relu(z)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * torch.where(z == 0, 2.0, (z > 0).to(z.dtype))


def test_order2_at_a_relu_kink_is_never_a_false_fail() -> None:
    """symgrad's own program takes H(0) = 1/2, so its H v holds H(0)^2 = 1/4 of the right side
    and g.v 1/2 of it: off the hull of the two sides, which was a proven FAIL of correct code
    in both dtypes. Between the hull and the enclosure of every subgradient: inconclusive."""
    for dtype in ("float64", "float32"):
        r = sg.verify(_relu_sq(), order=2, at=AT_KINK, dtype=dtype, seed=1)
        assert r.verdict == "inconclusive", (dtype, str(r))
        assert "enter as products" in str(r)
    # torch.relu (H(0) = 0, one side) passes, as before
    fn = lambda w, b, x, y: (torch.relu(w * x + b) - y) ** 2  # noqa: E731
    assert sg.verify(_relu_sq(), torch_fn=fn, order=2, at=AT_KINK, seed=1,
                     backends=("torch_fn",)).verdict == "pass"


def test_order2_outside_every_subgradient_still_fails() -> None:
    """A relu whose backward passes 2 x the gradient at 0: its g.v is outside the enclosure of
    every selector in [0, 1]: still a mismatch at order 2."""
    fn = lambda w, b, x, y: (_TwoAtZero.apply(w * x + b) - y) ** 2  # noqa: E731
    r = sg.verify(_relu_sq(), torch_fn=fn, order=2, at=AT_KINK, seed=1, backends=("torch_fn",))
    assert r.verdict == "fail", str(r)


def test_a_mistyped_op_option_names_the_one_meant() -> None:
    """sg.ops.gelu(x, approx=...) said 'got 0 more positional arguments and ['approx']'."""
    import pytest

    with pytest.raises(TypeError, match=r"gelu: unknown keyword 'approx' \(did you mean "
                                        r"'approximate'\?\); its keywords: x, approximate"):
        sg.ops.gelu(x, approx="tanh")
    with pytest.raises(sg.SymgradError, match="softplus: unknown keyword 'beta'; its keywords"):
        sg.ops.softplus(x, beta=2.0)


def test_ops_refuses_an_unwritable_out_before_it_runs(tmp_path, capsys) -> None:
    """symgrad ops --out <unwritable> ran the catalogue, then ended in a FileNotFoundError
    traceback (exit 1); report already refused it in one line (exit 2) before running."""
    from symgrad.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = main(["ops", "--ops", "tanh", "--dtype", "float64", "--out", str(blocker / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot write the report there" in err and "Traceback" not in err


def test_scheduler_and_workers_together_are_refused_before_torch_loads() -> None:
    """Both --scheduler and --workers: one line, exit 2, answered by the argument parser
    (it was answered by cluster.session after torch and sympy had loaded: 2.7 CPU s)."""
    import subprocess
    import sys

    code = ("import sys\nfrom symgrad.cli import main\n"
            "try:\n    rc = main(['verify', 'neuron', '--workers', '2', '--scheduler', "
            "'tcp://127.0.0.1:1'])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["2", "False"], out
    assert "not allowed with argument" in out.stderr


def test_a_module_at_order_2_is_shown_in_its_own_names() -> None:
    """symgrad verify tiny_gpt --module ...book:GPTModel --order 2 showed rows Hv:h0_Wq (the
    program's names) where order 1 shows trf_blocks.0.att.W_query."""
    from symgrad import zoo
    from tests.gptmodels.book import GPTModel

    cfg = {"vocab_size": 8, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
           "drop_rate": 0.0, "qkv_bias": False}
    torch.manual_seed(0)
    r = sg.verify(zoo.get("tiny_gpt", config=cfg), module=GPTModel(cfg).double(), order=2,
                  samples=1, seed=0)
    names = [b for b, *_ in r.blocks]
    assert "trf_blocks.0.att.W_query.weight" in names and "h0_Wq" not in names, names
    assert "Hv:trf_blocks.0.att.W_query.weight" in str(r)
    assert any(o.startswith("Hv:trf_blocks.0.att.W_query.weight[") for o in r.outputs[:400])
