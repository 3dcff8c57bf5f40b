"""pytest plugin (entry point ``pytest11``): a ``symgrad`` marker, an ``assert_gradients``
fixture (with ``.gradcheck`` / ``.gradgradcheck``: symgrad's drop-ins for torch's, a failure
failing the test with symgrad's finding lines), and a hypothesis ``ci`` profile
(derandomized, no deadline) so CI runs reproducibly."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import pytest


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "symgrad: a gradient-verification test (symgrad)")
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - hypothesis is a dependency
        return
    settings.register_profile("ci", derandomize=True, deadline=None, database=None)


class AssertGradients:
    """The ``assert_gradients`` fixture's value.

    Called, it is ``symgrad.testing.assert_gradients_match`` (same signature); its
    ``gradcheck`` / ``gradgradcheck`` methods are ``symgrad.gradcheck`` / ``gradgradcheck``
    (the function's backward against the exact derivative of its captured forward), where a
    failing or inconclusive check fails the test with symgrad's lines (no traceback).
    """

    def __init__(self) -> None:
        # symgrad (torch, sympy) is imported when the fixture is used, not at pytest startup
        from .testing import assert_gradients_match
        self._match = assert_gradients_match
        self.__signature__ = inspect.signature(assert_gradients_match)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._match(*args, **kwargs)

    def gradcheck(self, func: Callable, inputs: Any, **kwargs: Any) -> bool:
        """``symgrad.gradcheck(func, inputs, **kwargs)``; a ``GradcheckError`` fails the test.

        Arguments:
            func: a function or ``nn.Module`` of tensors.
            inputs: a tensor or a tuple of arguments.
            kwargs: ``symgrad.gradcheck``'s keywords (dtype, samples, reference, ...).
        Returns:
            True (or False where ``raise_exception=False`` is given and the check fails).
        """
        return self._check(1, func, inputs, kwargs)

    def gradgradcheck(self, func: Callable, inputs: Any, **kwargs: Any) -> bool:
        """``symgrad.gradgradcheck``, as ``gradcheck``."""
        return self._check(2, func, inputs, kwargs)

    @staticmethod
    def _check(order: int, func: Callable, inputs: Any, kwargs: dict) -> bool:
        from .capture.gradcheck import GradcheckError, gradcheck, gradgradcheck
        try:
            return (gradcheck if order == 1 else gradgradcheck)(func, inputs, **kwargs)
        except GradcheckError as exc:
            message = str(exc)
        # failed outside the except block: raised inside it, pytest would print symgrad's lines
        # twice ("During handling of the above exception, another exception occurred")
        pytest.fail(message, pytrace=False)


@pytest.fixture
def assert_gradients() -> AssertGradients:
    """``assert_gradients(model, torch_fn=None, ..., allow_inconclusive=False)``:
    symgrad.testing.assert_gradients_match (every keyword passed through; an inconclusive
    verdict fails the test unless ``allow_inconclusive=True``);
    ``assert_gradients.gradcheck(func, inputs, ...)`` and ``.gradgradcheck``: symgrad's
    drop-ins for torch.autograd's, a failure failing the test with symgrad's finding lines."""
    return AssertGradients()
