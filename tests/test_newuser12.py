"""newuser12's trial (reports/newuser12.md): each test failed before its fix."""
import pytest
import sympy as sp
import torch

import symgrad as sg
import symgrad.testing as testing


def _saturated():
    """tanh(w x) at |w x| >= 16: float32's tanh rounds to 1, torch's d/dw is 0 against an exact
    value far below its allowance - every input is inconclusive in float32."""
    w, x = sp.symbols("w x")
    return sg.Model("tanh_sat", sp.tanh(w * x), params={w: sg.Uniform(4, 5)},
                    inputs={x: sg.Uniform(4, 5)})


def test_inconclusive_search_is_not_shrunk(monkeypatch):
    """Before: the first inconclusive input raised inside the hypothesis search, which then
    shrank it (on a 2-layer MLP over 5 minutes of verify calls, each input as undecidable as
    the last). Now the search runs its max_examples and no more, and the first inconclusive
    input is raised after it, as found."""
    calls = []
    run = testing.run_verify
    monkeypatch.setattr(testing, "run_verify", lambda *a, **k: calls.append(1) or run(*a, **k))
    with pytest.raises(AssertionError) as info:
        testing.assert_gradients_match(_saturated(), torch_fn=lambda w, x: torch.tanh(w * x),
                                       max_examples=6, dtype="float32")
    assert 1 <= len(calls) <= 6, len(calls)
    text = str(info.value)
    assert text.startswith("gradients of tanh_sat are inconclusive against the exact derivative")
    assert f"of the {len(calls)} inputs searched, none failing" in text.splitlines()[0]
    assert "— INCONCLUSIVE" in text and "first inconclusive input (not shrunk" in text
    assert "minimal input" not in text


def test_gradcheck_nan_input_is_named_as_the_callers_input():
    """Before: "at: parameter 'input0' is nan ..." - an at= the user never gave, and their
    input called a parameter."""
    x = torch.tensor([1.0, float("nan")], dtype=torch.float64, requires_grad=True)
    with pytest.raises(sg.SymgradError) as info:
        sg.gradcheck(lambda x: x.sin(), (x,))
    assert str(info.value) == ("gradcheck(<lambda>): input 'x' is nan (sample 0, entry [1]); "
                               "give finite numbers: the loss and its gradient are undefined "
                               "there")
    lin = torch.nn.Linear(2, 2).double()
    lin.weight.data[0, 1] = float("inf")
    with pytest.raises(sg.SymgradError, match=r"^gradgradcheck\(Linear\): parameter 'weight' "
                                              r"is inf \(sample 0, entry \[0, 1\]\)"):
        sg.gradgradcheck(lin, (x.detach().nan_to_num().requires_grad_(),))


def test_cli_backends_torch_fn_without_torch_code_says_how_to_give_it(tmp_path, monkeypatch,
                                                                       capsys):
    """Before: "backends includes 'torch_fn' but no torch_fn was given; pass
    torch_fn=your_function" - a Python keyword the command line has no way to give."""
    from symgrad.cli import main
    (tmp_path / "nu12model.py").write_text(
        "import sympy as sp, symgrad as sg\n"
        "w, x = sp.symbols('w x')\n"
        "model = sg.Model('sq', (w * x) ** 2, params=[w], inputs=[x])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "nu12model:model", "--samples", "2", "--backends", "torch_fn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["symgrad: error: --backends torch_fn: model 'sq' has no torch code of its "
                   "own to verify; give your model one, sg.Model(..., reference=your_torch_fn), "
                   "or a module with --module, or drop torch_fn from --backends"], err
    assert main(["verify", "neuron", "--samples", "2", "--backends", "torch_fn",
                 "--no-reference"]) == 2
    assert "(--no-reference drops it)" in capsys.readouterr().err


class _Act(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 5), torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class _WithLoss(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, y):
        return torch.nn.functional.cross_entropy(self.net(x), y)


def _net_and_data():
    torch.manual_seed(3)
    net = _Act().double()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    return net, x, torch.tensor([0, 2])


def test_order_2_refusal_says_how_to_keep_the_loss():
    """Before: "use sg.gradgradcheck(module, inputs)" - the loss= and targets= given dropped."""
    net, x, y = _net_and_data()
    with pytest.raises(sg.SymgradError) as info:
        sg.verify(module=net, inputs=x, targets=y, loss=torch.nn.functional.cross_entropy,
                  order=2)
    assert str(info.value).endswith(
        "use sg.gradgradcheck(module, inputs); with a loss, on a module that returns it (its "
        "parameters are checked too): a wrapper nn.Module whose forward(x, y) returns "
        "loss(module(x), y), sg.gradgradcheck(wrapper, (x, y))")
    assert sg.gradgradcheck(_WithLoss(net), (x, y))  # the advice runs


def test_gradcheck_of_a_lambda_closing_over_a_module_warns_its_parameters_are_not_checked():
    """Before: sg.gradcheck(lambda x: loss(net(x), y), (x,)) returned True in silence with
    a weight's gradient x1.5 (a hook): the closed-over parameters are constants of the
    capture. Now a warning says so (read from the lambda's closure, not by running it);
    through a module the bug fails."""
    net, x, y = _net_and_data()
    net.a.weight.register_hook(lambda g: g * 1.5)
    with pytest.warns(UserWarning) as seen:
        assert sg.gradcheck(lambda x: torch.nn.functional.cross_entropy(net(x), y), (x,))
    said = [str(w.message) for w in seen if "require grad" in str(w.message)]
    assert said == ["gradcheck(<lambda>): it uses 4 tensors that require grad (shapes (3, 5), "
                    "(5, 4), (3,), (5,)) without taking them as inputs (the parameters of a "
                    "module it closes over?): held at their values, their gradients not "
                    "checked; to check them, pass a module (an nn.Module whose forward "
                    "computes this, its parameters checked too) or pass them as inputs"], said
    assert seen[0].filename == __file__
    with pytest.warns(UserWarning, match="it uses 4 tensors that require grad"):
        assert sg.gradcheck(net.forward, (x,))  # a bound method: its module's parameters
    with pytest.raises(sg.GradcheckError, match="a.weight"):
        sg.gradcheck(_WithLoss(net), (x, y))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing closed over: no warning
        assert sg.gradcheck(torch.tanh, (x,)) and sg.gradcheck(_Act().double(), (x,))
