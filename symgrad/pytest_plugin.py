"""pytest plugin (entry point ``pytest11``): a ``symgrad`` marker, an ``assert_gradients``
fixture, and a hypothesis ``ci`` profile (derandomized, no deadline) so CI runs reproducibly."""

from __future__ import annotations

import pytest


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "symgrad: a gradient-verification test (symgrad)")
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - hypothesis is a dependency
        return
    settings.register_profile("ci", derandomize=True, deadline=None, database=None)


@pytest.fixture
def assert_gradients():
    """``assert_gradients(model, torch_fn=None, ..., allow_inconclusive=False)``:
    symgrad.testing.assert_gradients_match (every keyword passed through; an inconclusive
    verdict fails the test unless ``allow_inconclusive=True``)."""
    from .testing import assert_gradients_match
    return assert_gradients_match
