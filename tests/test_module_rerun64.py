"""``sg.verify(module=...)`` in float32 re-runs the module in float64
(``symgrad.backends.float64``): a backward x (1 + 1e-7), planted in a custom Function or by a parameter's hook, is 2 u in
float32 and is caught, named and "proven in float64"; the correct module passes with no new
inconclusive; a module that computes in float32 inside (an upcast-style ``.float()``) gives no
float64 evidence (the re-run is refused, the suspicion dropped); a compiled path is not
re-run."""

from __future__ import annotations

import pytest
import torch

import symgrad as sg
from symgrad.backends.float64 import run64
from symgrad.modules.any import _path_fn
from tests.clients import scaled_square


class Net(torch.nn.Module):
    """Linear -> x^2 (a custom Function, backward x ``factor``) -> sum; ``narrow``: the square
    computed in float32 whatever the run's dtype (as an RMSNorm's ``x.float()`` upcast)."""

    def __init__(self, factor: float = 1.0, narrow: bool = False) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3, dtype=torch.float32)
        self.square = scaled_square(factor)
        self.narrow = narrow

    def forward(self, x):
        y = self.lin(x)
        if self.narrow:
            return self.square.apply(y.float()).to(y.dtype).sum()
        return self.square.apply(y).sum()


def _net(factor=1.0, narrow=False, seed=0):
    torch.manual_seed(seed)
    return Net(factor, narrow), torch.randn(5, 4, generator=torch.Generator().manual_seed(seed))


def test_a_custom_function_backward_times_1_plus_1e7_fails_in_float32(decided):
    net, x = _net(1 + 1e-7)
    r = sg.verify(module=net, inputs=x, dtype="float32")
    assert r.verdict == "fail"
    named = {f.output.split("[")[0] for f in r.failures}
    assert named and named <= {"d/dlin.weight", "d/dlin.bias"}, named  # both are biased
    own = [f for f in r.failures if f.backend == "module"]  # (the float64 rule check,
    assert own and all("proven in float64" in f.note and "float32 hides it" in f.note
                       for f in own)  # "module in float64", sees the bias in float64 too)
    assert decided and any(low and hit and hit[0] for _, low, hit in decided)
    blocks = {f.block for c in r.comparisons.values() for f in c.systematic}
    assert blocks and blocks <= {"lin.weight", "lin.bias"}, blocks  # the user's names


def test_a_hook_times_1_plus_1e7_on_one_parameter_fails_named(decided):
    net, x = _net()
    net.lin.weight.register_hook(lambda g: g * (1 + 1e-7))
    r = sg.verify(module=net, inputs=x, dtype="float32")
    assert r.verdict == "fail"
    assert {f.output.split("[")[0] for f in r.failures} == {"d/dlin.weight"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_correct_module_passes_with_nothing_undecided(seed):
    net, x = _net(seed=seed)
    r = sg.verify(module=net, inputs=x, dtype="float32")
    assert r.verdict == "pass", str(r)
    assert not r.undecided
    # and its state is the user's own: the float64 re-run changed neither dtype nor value
    assert net.lin.weight.dtype == torch.float32


def test_code_computing_in_float32_inside_gives_no_float64_evidence(decided):
    """A planted x (1 + 1e-7) behind a ``.float()``: the float64 re-run would round in float32
    too, so it is refused (no evidence) and the lower floor's suspicion is dropped: a pass, as
    before this re-run existed, never a fail resting on float32's own roundings."""
    net, x = _net(1 + 1e-7, narrow=True)
    r = sg.verify(module=net, inputs=x, dtype="float32")
    assert r.verdict == "pass"
    assert decided and all(low and hit is None for _, low, hit in decided)


def test_run64_refuses_a_narrowing_and_keeps_float64_code():
    blocks = [type("B", (), {"name": "w", "is_param": True,
                             "domain": type("D", (), {"integer": False})()})()]
    import numpy as np
    v = {"w": np.linspace(0.5, 2, 6).reshape(2, 3)}
    got = run64(lambda w: (w * w).sum(), blocks, v, device="cpu")
    assert got is not None and np.allclose(got[:, 1:], 2 * v["w"].reshape(2, -1))
    assert run64(lambda w: (w.float() * 2).double().sum(), blocks, v, device="cpu") is None
    square = scaled_square(1.0)

    class Down(torch.autograd.Function):  # the backward alone casts down
        @staticmethod
        def forward(ctx, w):
            return w * 2

        @staticmethod
        def backward(ctx, g):
            return (g.float() * 2).double()
    assert run64(lambda w: Down.apply(w).sum(), blocks, v, device="cpu") is None
    # a float32 constant multiplied in (created, not computed in float32): still float64 code
    assert run64(lambda w: (square.apply(w) * torch.tensor(0.5)).sum(), blocks, v,
                 device="cpu") is not None


def test_a_compiled_path_is_not_rerun_in_float64():
    def eager(**blocks):
        return blocks["w"].sum()
    assert _path_fn(eager, "eager").runs_in_float64
    assert not _path_fn(eager, "compile").runs_in_float64


def test_the_code_runs_in_float64_once_for_the_rule_check_and_the_confirmation(
        monkeypatch, decided):
    """A float32 x (1 + 1e-7) both rule-checked and confirmed in float64: one float64 run of
    the user's code serves both (``backends.float64.Float64Runs``), the same verdicts."""
    import symgrad.backends.float64 as f64
    runs = []
    real = f64.run_torch_fn

    def counted(*args, **kwargs):
        runs.append(kwargs.get("dtype"))
        return real(*args, **kwargs)
    monkeypatch.setattr(f64, "run_torch_fn", counted)
    net, x = _net(1 + 1e-7)
    r = sg.verify(module=net, inputs=x, dtype="float32")
    assert r.backend_verdict("module") == r.backend_verdict("module in float64") == "fail"
    assert decided and any(hit and hit[0] for _, _, hit in decided)  # the confirmation read it
    assert runs == ["float64"]
