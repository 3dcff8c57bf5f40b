"""Every docstring example in ``symgrad/`` runs as a doctest in the default suite.

One test per module that has examples (found by walking the package, so a new module's examples
run without registering them here). A module whose examples take more than ~5 s goes into
``SLOW`` and runs with ``pytest -m slow``.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import symgrad

SLOW: frozenset[str] = frozenset()  # modules whose examples take > 5 s


def _modules() -> list[str]:
    """Every importable module of the package except ``__main__`` (it runs the CLI on import).

    Returns:
        dotted module names, sorted.
    """
    return sorted(m.name for m in pkgutil.walk_packages(symgrad.__path__, "symgrad.")
                  if not m.name.endswith("__main__"))


def _examples(name: str) -> list[doctest.DocTest]:
    """The module's docstring examples (those of objects it defines, not of what it imports).

    Arguments:
        name: dotted module name.
    Returns:
        its doctests that hold at least one example not marked ``+SKIP``.
    """
    mod = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(mod, name)
            if any(not e.options.get(doctest.SKIP) for e in t.examples)]


MODULES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
           for n in _modules() if _examples(n)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    """Each example prints what its docstring says."""
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _examples(name):
        runner.run(test, out=out.write)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} examples in {name} fail:\n{out.getvalue()}"


def test_every_module_with_examples_is_collected() -> None:
    """The walk finds the modules known to carry examples (guards against an empty walk)."""
    names = {p if isinstance(p, str) else p.values[0] for p in MODULES}
    assert {"symgrad.verify", "symgrad.tensor.derive", "symgrad.explain",
            "symgrad.opcatalog.run"} <= names
    assert len(names) >= 40
