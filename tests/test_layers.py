"""The house rules, checked on the source: no import circles, no function-local import of a
symgrad module (the usual way to dodge a circle), no module over ~400 lines.

The import graph is read with ``ast`` (every ``import`` / ``from ... import`` of a symgrad module,
resolved to the module or package it loads; importing ``symgrad.a.b`` also runs the package
``symgrad.a``). Imports under ``if TYPE_CHECKING:`` never run and are left out. Three graphs:

- module level: what runs at import time; a cycle here is an import circle;
- module level + function-local: a cycle here is a circle dodged by a function-local import;
- the function-local imports themselves: each one needs an entry below saying why.

Imports go down, never up: every module has a floor (``FLOORS``, by package or module name, the
longest name that matches wins) and may import only modules on its own floor or below. The
floors are the layering the import graph has, bottom to top.

The allow-lists name the helper whose files hold the entry (issue 17 is being done in parallel
branches); the lead removes entries as those branches land. An entry that no longer matches
anything fails too, so the lists only shrink.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "symgrad"
MAX_LINES = 400

# Cycles dodged by a function-local import, as the sorted modules of the cycle -> owner.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}

# Function-local imports of symgrad modules: importing module -> (owner or reason, the modules
# it may import inside a function). Optional heavy third-party dependencies (torch,
# distributed, transformers, matplotlib) are not symgrad modules and need no entry.
ALLOWED_LOCAL: dict[str, tuple[str, frozenset[str]]] = {
    # not a circle: pytest loads this plugin (entry point pytest11) at the start of every pytest
    # run in the environment; symgrad (torch, sympy) is imported only when the fixture is used
    "symgrad.pytest_plugin": ("pytest startup cost", frozenset({"symgrad.testing",
                                                               "symgrad.capture.gradcheck"})),
    # not a circle: the command line parses its arguments and checks a model's name before
    # torch and sympy load (bad usage: ~0.1 CPU s, not ~2.6); a command imports them as it runs
    "symgrad.cli": ("command line startup cost", frozenset({"symgrad.commands"})),
}

# The floors, bottom to top: (floor, the packages and modules on it, without "symgrad."; the
# package itself is "__init__"). A package's name covers its submodules unless one is listed.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "version", "progress", "logistic", "points", "domains", "cluster",
              "order_stats", "atomic", "zoo_index", "exits", "heap", "parallel", "freesyms", "jit")),
    ("settings: tolerance, ULPs, config", ("compare", "config")),
    ("expressions and programs", ("entries", "graph", "functions", "optable", "codegen", "rounding",
                                  "tensor.ids", "tensor.rename",
                                  "tensor.program")),
    ("ops", ("ops", "stable", "tensor.ops")),
    ("models and derivatives", ("model", "tensor", "tensor.derive", "tensor.interpret",
                                "tensor.model", "zoo", "capture")),
    ("backends, exact arithmetic, tensor views", (
        "backends", "precise", "tensor.tables", "tensor.views",
        "tensor.steps", "tensor.exact")),
    ("bounds: rigorous, kinks, departures", (
        "rigorous", "tensor.quadrature", "tensor.fused", "tensor.operands", "tensor.einpieces",
        "tensor.ownround",
        "tensor.bound",
        "tensor.mapbound", "tensor.nonzero",
        "tensor.hitrows", "tensor.spotcheck",
        "tensor.kinks", "tensor.doubt", "tensor.limits",
        "tensor.departure", "tensor.enclosure", "tensor.sides", "tensor.fresh",
        "tensor.undefined", "tensor.entrybounds",
        "tensor.tie_sides")),
    ("results", ("verdict", "failpattern", "figure_scan", "measures", "result_text", "result",
                 "findings",
                 "tensor.comparing",
                 "tensor.streaming", "tensor.rulecheck")),
    ("second order", ("hvp",)),
    ("judge", ("confirm", "tensor.confirm_big", "causes", "tensor.context")),
    ("verify", ("verify", "tensor.verify", "modules", "capture.gradcheck")),
    ("present", ("present", "explain", "report")),
    ("tools", ("__init__", "__main__", "cli", "commands", "testing", "hvp_mutants", "fuzz",
               "pytest_plugin", "strategies", "opcatalog")),
]

# Imports that go up a floor: (importing module, imported module) -> owner and reason.
ALLOWED_UP: dict[tuple[str, str], str] = {}

# Modules over MAX_LINES lines -> owner (the helper splitting it, or the lead).
ALLOWED_LONG: dict[str, str] = {
}


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _known(name: str) -> str:
    """The module or package that importing ``name`` loads (a name inside a module: it)."""
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> tuple[set[str], set[str]]:
    """The symgrad modules one import statement loads, and the packages that run first.

    Arguments:
        node: the statement.
        module: the dotted name of the module it is in.
    Returns:
        (dotted names it imports, enclosing packages it runs on the way); both empty for a
        third-party import.
    """
    found = set()
    if isinstance(node, ast.Import):
        found = {_known(a.name) for a in node.names if a.name.split(".")[0] == "symgrad"}
    else:
        if node.level:
            here = module.split(".")
            if MODULES[module].name != "__init__.py":
                here = here[:-1]
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module
                                                                 else []))
        else:
            base = node.module or ""
        if base.split(".")[0] != "symgrad":
            return set(), set()
        found = {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else _known(base)
                 for a in node.names}
    packages = set()
    for name in found:  # importing a.b.c runs a.b first, unless we are inside it already
        parts = name.split(".")
        for i in range(1, len(parts)):
            pkg = ".".join(parts[:i])
            if not (module == pkg or module.startswith(pkg + ".")):
                packages.add(pkg)
    return found - {module}, packages - found - {module}


def _imports() -> tuple[dict[str, set[str]], dict[str, set[str]], list[tuple[str, int, str]]]:
    """Module-level import edges, function-local ones, and the function-local imports.

    Returns:
        (module -> modules it imports at import time, module -> modules it imports inside a
        function (with the packages they run), [(module, line, symgrad module it imports
        inside a function)]).
    """
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    later: dict[str, set[str]] = {m: set() for m in MODULES}
    local: list[tuple[str, int, str]] = []
    for module, path in MODULES.items():
        def walk(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue  # never runs
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    found, packages = _targets(child, module)
                    if in_function:
                        local.extend((module, child.lineno, t) for t in sorted(found))
                        later[module] |= found | packages
                    else:
                        edges[module] |= found | packages
                walk(child, in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
        walk(ast.parse(path.read_text(), str(path)), False)
    return edges, later, local


def _cycles(edges: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan).

    Arguments:
        edges: module -> modules it imports.
    Returns:
        each cycle's modules, sorted.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(tuple(sorted(comp)))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


EDGES, LATER, LOCAL = _imports()


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_no_import_circle_at_module_level() -> None:
    cycles = _cycles(EDGES)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_circle_dodged_by_a_function_local_import() -> None:
    full = {m: EDGES[m] | LATER[m] for m in EDGES}
    cycles = _cycles(full)
    new = [c for c in cycles if c not in ALLOWED_CYCLES]
    assert not new, "circles dodged by a function-local import:\n" + "\n".join(
        " -> ".join(c) for c in new)
    assert [c for c in ALLOWED_CYCLES if c not in cycles] == [], "stale ALLOWED_CYCLES entry"


def test_function_local_imports_are_allowed_ones() -> None:
    """Each function-local import of a symgrad module has an allow-list entry, and each entry
    is still used."""
    bad = [f"{m}:{line} imports {t} inside a function" for m, line, t in LOCAL
           if t not in ALLOWED_LOCAL.get(m, ("", frozenset()))[1]]
    assert not bad, "\n".join(bad)
    used = {(m, t) for m, _, t in LOCAL}
    stale = [(m, t) for m, (_, ts) in ALLOWED_LOCAL.items() for t in ts if (m, t) not in used]
    assert stale == [], "stale ALLOWED_LOCAL entries: remove them"


def test_no_module_over_400_lines() -> None:
    long = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    over = sorted(f"{m} ({n} lines)" for m, n in long.items()
                  if n > MAX_LINES and m not in ALLOWED_LONG)
    assert not over, "split these by job: " + ", ".join(over)
    stale = [m for m in ALLOWED_LONG if long.get(m, 0) <= MAX_LINES]
    assert stale == [], "stale ALLOWED_LONG entries: remove them"


def _floor(module: str, floors: list[tuple[str, tuple[str, ...]]] = FLOORS) -> int | None:
    """The floor of a module: the index in ``floors`` of the longest name that covers it.

    Arguments:
        module: dotted name (``symgrad`` or ``symgrad.x.y``).
        floors: the floor table.
    Returns:
        the floor's index (0 is the bottom), or None when no name covers the module.
    """
    rank = {name: i for i, (_, names) in enumerate(floors) for name in names}
    short = "__init__" if module == "symgrad" else module.removeprefix("symgrad.")
    while short not in rank:
        if "." not in short:
            return None
        short = short.rsplit(".", 1)[0]
    return rank[short]


def _upward(edges: dict[str, set[str]],
            floors: list[tuple[str, tuple[str, ...]]] = FLOORS) -> list[tuple[str, str]]:
    """Every import that goes up a floor.

    Arguments:
        edges: module -> modules it imports.
        floors: the floor table.
    Returns:
        (importing module, imported module) for each import of a module on a higher floor.
    """
    return sorted((m, t) for m, ts in edges.items() for t in ts
                  if _floor(t, floors) > _floor(m, floors))


def test_every_module_has_a_floor() -> None:
    assert [m for m in MODULES if _floor(m) is None] == [], "add these to FLOORS"
    names = [n for _, ns in FLOORS for n in ns]
    assert len(names) == len(set(names)), "a name on two floors"
    covered = {"__init__" if m == "symgrad" else m.removeprefix("symgrad.") for m in MODULES}
    assert [n for n in names if n not in covered] == [], "FLOORS names a module that is gone"


def test_imports_go_down() -> None:
    """No module imports one on a higher floor (at module level or inside a function)."""
    up = _upward({m: EDGES[m] | LATER[m] for m in EDGES})
    new = [f"{m} ({FLOORS[_floor(m)][0]}) imports {t} ({FLOORS[_floor(t)][0]})"
           for m, t in up if (m, t) not in ALLOWED_UP]
    assert not new, "imports going up a floor (move the shared piece down):\n" + "\n".join(new)
    assert [e for e in ALLOWED_UP if e not in up] == [], "stale ALLOWED_UP entry"


def test_the_checks_can_fail() -> None:
    """The cycle finder and the import reader catch what they are meant to."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    node = ast.parse("from ..tensor.views import numpy_view").body[0]
    assert _targets(node, "symgrad.tensor.verify") == ({"symgrad.tensor.views"}, set())
    assert _targets(node, "symgrad.modules.run") == ({"symgrad.tensor.views"},
                                                     {"symgrad.tensor"})
    node = ast.parse("from . import hvp").body[0]
    assert _targets(node, "symgrad.verify") == ({"symgrad.hvp"}, set())
    floors = [("low", ("a", "a.c")), ("high", ("b", "__init__"))]
    assert [_floor(m, floors) for m in ("symgrad.a", "symgrad.a.x", "symgrad.b.y", "symgrad")] \
        == [0, 0, 1, 1]
    assert _floor("symgrad.d", floors) is None
    assert _upward({"symgrad.a.x": {"symgrad.b"}, "symgrad.b": {"symgrad.a.c"},
                    "symgrad.a.c": {"symgrad"}}, floors) == [
        ("symgrad.a.c", "symgrad"), ("symgrad.a.x", "symgrad.b")]
