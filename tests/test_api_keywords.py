"""api23 (issue 18): the keywords a user types at the public entry points. A keyword that
``VerifyConfig`` also has, given beside ``config=``, was silently ignored (seed, device, dtype:
``sg.verify(config=cfg, seed=3)`` ran seed 0); now one rule for each of them: it sets a field
the config leaves at its default, and a config that sets it to another value is one line
naming both. A misspelled keyword of any public entry point is symgrad's one-line
``KeywordError`` with "did you mean" (gradcheck and gradgradcheck raised Python's own
TypeError; compare_paths, explain, capture, ... were not checked at all)."""

from __future__ import annotations

import inspect

import pytest
import torch

import symgrad as sg
from symgrad import zoo
from symgrad.config import VerifyConfig
from symgrad.errors import KeywordError
from symgrad.testing import assert_gradients_match

SHARED = ("samples", "seed", "device", "dtype", "tolerance", "backends", "order", "progress")
RECORDS = {  # public names symgrad builds and a user reads (no entry point to call with options)
    "Captured", "Departure", "Explanation", "Failure", "GradcheckError", "Result",
    "SymgradError", "Domain"}


@pytest.fixture(scope="module")
def neuron():
    return zoo.get("neuron")


def test_a_keyword_beside_a_config_is_applied(neuron):
    """Fails before the fix: seed= and dtype= beside config= were dropped (seed 0, float64)."""
    cfg = VerifyConfig(oracle_bits=256)
    r = sg.verify(neuron, samples=4, seed=3, dtype=torch.float32, config=cfg)
    assert (r.config.seed, r.config.dtype, r.config.samples, r.config.oracle_bits) == (
        3, "float32", 4, 256)
    plain = sg.verify(neuron, config=VerifyConfig(samples=4, seed=3, dtype="float32",
                                                   oracle_bits=256))
    assert r.as_dict() == plain.as_dict()  # the same run, field for field


@pytest.mark.parametrize("name, given, own", [
    ("seed", 3, 5), ("dtype", "float32", "bfloat16"), ("samples", 2, 3), ("order", 1, 2),
    ("progress", False, True), ("device", "cpu", "cuda:7"), ("backends", ("numpy",), ("torch",)),
    ("tolerance", sg.Tolerance(safety=2.0), sg.Tolerance(safety=3.0))])
def test_a_keyword_the_config_sets_otherwise_is_one_line(neuron, name, given, own):
    """Meant to fail (a SymgradError naming both values) for every shared keyword."""
    cfg = VerifyConfig(**{name: own})
    with pytest.raises(sg.SymgradError) as err:
        sg.verify(neuron, config=cfg, **{name: given})
    msg = str(err.value)
    assert msg.startswith(f"verify: {name}={given!r} and config.{name}={own!r} disagree; "
                          f"give it once: drop {name}= or pass config=dataclasses.replace("
                          f"config, {name}={given!r})"), msg
    assert "\n" not in msg


def test_every_shared_keyword_is_a_verify_keyword():
    """The rule covers each keyword sg.verify shares with VerifyConfig, and none is missed."""
    verify = set(inspect.signature(sg.verify).parameters)
    config = set(inspect.signature(VerifyConfig).parameters)
    assert verify & config == set(SHARED)
    for name in SHARED:  # each defaults to None: "not given" is told from "given as default"
        assert inspect.signature(sg.verify).parameters[name].default is None, name


def test_a_keyword_equal_to_the_config_or_at_its_default_is_fine(neuron):
    cfg = VerifyConfig(seed=5, samples=3)
    assert sg.verify(neuron, seed=5, samples=3, config=cfg).config.seed == 5  # agrees
    assert sg.verify(neuron, config=cfg, order=1).config.order == 1  # config at the default
    assert sg.verify(neuron, samples=3, seed=0, config=VerifyConfig(seed=0)).config.seed == 0


def test_compare_paths_follows_the_same_rule(neuron):
    """compare_paths dropped seed/device/dtype beside config= too; its check runs before the
    module is looked at."""
    with pytest.raises(sg.SymgradError, match=r"^compare_paths: seed=1 and config.seed=2 "
                       r"disagree"):
        sg.compare_paths(neuron, torch.nn.Linear(1, 1), seed=1, config=VerifyConfig(seed=2))
    with pytest.raises(KeywordError, match=r"^compare_paths: unknown keyword 'path' \(did you "
                       r"mean 'paths'\?\)"):
        sg.compare_paths(neuron, torch.nn.Linear(1, 1), path=("eager",))


def _public_entry_points():
    for name in sg.__all__:
        value = getattr(sg, name)
        if name in ("ops", "__version__") or name in RECORDS:
            continue
        yield name, value


@pytest.mark.parametrize("name", [n for n, _ in _public_entry_points()])
def test_every_public_entry_point_checks_its_keywords(name):
    """Meant to fail for a public function or class added without ``checked_keywords``."""
    value = getattr(sg, name)
    fn = value.__init__ if isinstance(value, type) else value
    assert getattr(fn, "keywords_checked", False), f"sg.{name} is not @checked_keywords"
    params = [n for n, p in inspect.signature(value).parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    typo = params[-1] + "x"  # a misspelling of its last keyword: refused before anything runs
    with pytest.raises(KeywordError, match=rf"^{value.__name__}: unknown keyword {typo!r} "
                       rf"\(did you mean {params[-1]!r}\?\); its keywords: "):
        value(**{typo: 1})


def test_the_records_a_user_reads_are_not_entry_points():
    """The exempt names are symgrad's own results and errors (a user reads them)."""
    assert RECORDS <= set(sg.__all__)
    assert issubclass(sg.GradcheckError, RuntimeError) and issubclass(sg.SymgradError, ValueError)


def test_a_checked_call_with_correct_keywords_behaves_as_before():
    assert sg.Uniform(low=-2, high=2) == sg.Uniform(-2, 2)
    assert sg.Tolerance(safety=2.0).safety == 2.0
    assert sg.matrix("W", rows=2, cols=3).shape == (2, 3)


# ---------------------------------------------------------------- what a new user stumbled on
@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_bad_gradcheck_seed_is_one_line(seed):
    """seed=-1 reached numpy's "expected non-negative integer", naming no option."""
    x = torch.ones(3, dtype=torch.float32, requires_grad=True)
    with pytest.raises(sg.SymgradError, match=r"^gradcheck: seed= must be a non-negative "
                       rf"integer .*, got {seed!r}$"):
        sg.gradcheck(torch.tanh, (x,), seed=seed)


@pytest.mark.parametrize("at", [None, {}])
def test_explaining_a_torch_module_names_how_its_program_is_had(at):
    """sg.explain(module, at=...) raised AttributeError: 'Linear' object has no attribute
    'blocks'; the module is refused first, in one line, with the way to its program."""
    with pytest.raises(sg.SymgradError, match=r"^model: a Linear is not a model; .*; torch "
                       r"code is checked by sg.verify\(module=m, inputs=x\) or sg.gradcheck\("
                       r"fn, inputs\), and its program is sg.capture\(m, inputs\).model$"):
        sg.explain(torch.nn.Linear(3, 2), at=at)
    with pytest.raises(sg.SymgradError, match=r"^model: a list is not a model; pass an "
                       r"sg.Model .*zoo.get\(name\)\)$"):  # no torch hint for what is no code
        sg.explain([1, 2])


def test_the_pytest_fixtures_check_names_the_keyword_meant(neuron):
    """assert_gradients(model, max_example=5) (the fixture's call is
    symgrad.testing.assert_gradients_match) was Python's TypeError, no hint."""
    with pytest.raises(KeywordError, match=r"^assert_gradients_match: unknown keyword "
                       r"'max_example' \(did you mean 'max_examples'\?\)"):
        assert_gradients_match(neuron, max_example=5)
