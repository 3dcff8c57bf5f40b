import os

import pytest
import torch

from symgrad import zoo

# CI (.ci/run) sets this: a render test whose outside tool is absent fails instead of skipping,
# so a green CI means the KaTeX, Chromium and pdflatex tests ran.
REQUIRE_RENDER = os.environ.get("SYMGRAD_REQUIRE_RENDER", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "render_tool(name, present, install): needs an outside render tool; skips "
        "where it is absent, fails instead where SYMGRAD_REQUIRE_RENDER=1 (CI)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A ``render_tool`` test whose tool is absent: skip, or under SYMGRAD_REQUIRE_RENDER=1 fail
    with one line (before its fixtures run)."""
    for mark in item.iter_markers("render_tool"):
        name, present, install = mark.args
        if not present:
            if REQUIRE_RENDER:
                pytest.fail(f"SYMGRAD_REQUIRE_RENDER=1 but {name} is absent: {install}",
                            pytrace=False)
            pytest.skip(f"{name} is absent ({install})")


@pytest.fixture(scope="session")
def models():
    """Built-in models, built once per session (derive + compile is cached on each)."""
    return {name: zoo.get(name) for name in zoo.names() if name != "tiny_gpt"}


@pytest.fixture(scope="session")
def lse_overflow():
    """The issue-16 case: plain sympy -(z0 - log(exp(z0) + exp(z1))) beside the user's exact
    torch.logsumexp, float32, at z1 = 200 where exp overflows: (model, result)."""
    import numpy as np
    import sympy as sp

    import symgrad as sg
    z0, z1 = sp.symbols("z0 z1")

    def lse(z0, z1):
        return -(z0 - torch.logsumexp(torch.stack([z0, z1]), 0))
    m = sg.Model("lse", -(z0 - sp.log(sp.exp(z0) + sp.exp(z1))), params=[z0, z1])
    return m, sg.verify(m, torch_fn=lse, dtype="float32",
                        at={z0: np.array([0.0, 1.0]), z1: np.array([200.0, 0.5])})


REFERENCE_SAMPLES = 60


@pytest.fixture(scope="session")
def reference_run(models):
    """``reference_run(name, seed, dtype)``: ``sg.verify`` of a built-in model against its
    native torch reference (``torch_fn=model.reference``, ``REFERENCE_SAMPLES`` samples), run
    once per session for each (name, seed, dtype) and shared by the tests that read it
    (test_false_alarms, test_gpt): same seed, same result."""
    import symgrad as sg
    runs: dict = {}

    def run(name: str, seed: int, dtype: str = "float64"):
        if (name, seed, dtype) not in runs:
            m = models[name]
            runs[name, seed, dtype] = sg.verify(m, torch_fn=m.reference,
                                                samples=REFERENCE_SAMPLES, seed=seed,
                                                dtype=dtype)
        return runs[name, seed, dtype]
    return run


def has_gpu() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """torch on one intra-op thread for the whole test session, the count put back at its end
    (issue 17: the suite's CPU). The tests' tensors are small: on this project's shared 2-core box
    torch's second OpenMP thread only spins, a tiny_gpt verify costing 2.1x the CPU seconds on
    2 threads as on 1 (7.7 against 3.8 at load 24). Autouse: the README's command runs one
    pytest-xdist worker per core, so a second torch thread per worker could only take a core
    from the other worker."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def decided(monkeypatch):
    """Every block suspicion's float64 experiment: (block, rerun_only, its answer)
    (test_rerun_floor, test_module_rerun64)."""
    import symgrad.confirm as confirm

    seen = []
    real = confirm._block_by_float64

    def spy(f, *args, **kwargs):
        out = real(f, *args, **kwargs)
        seen.append((f.block, f.rerun_only, out))
        return out
    monkeypatch.setattr(confirm, "_block_by_float64", spy)
    return seen
