import sympy as sp

from symgrad.graph import Graph, Intermediate, define


def test_define_returns_atoms_unchanged_and_names_compound_expressions():
    x = sp.Symbol("x")
    assert define(x, kind="k") is x
    assert define(3, kind="k") == 3
    a = define(x + 1, kind="plus", label="a")
    assert isinstance(a, Intermediate) and a.definition == x + 1 and str(a) == "a"


def test_graph_is_topological_and_shares_nodes():
    x = sp.Symbol("x")
    a = define(sp.exp(x), kind="e", label="a")
    b = define(a * a + a, kind="s", label="b")
    g = Graph.from_expr(b + a, name_hint="L")
    assert [n.name for n in g.nodes] == ["a", "b", "L"]  # a appears once although used 4 times
    assert g.leaves == frozenset({x})
    assert sp.simplify(g.expand() - (sp.exp(2 * x) + 2 * sp.exp(x))) == 0


def test_display_view_uses_textbook_forms():
    x = sp.Symbol("x")
    a = define(sp.exp(x), kind="e", label="a")
    c = define(sp.log(1 + a), kind="c", label="c")
    c.display = sp.log(1 + sp.exp(x)) + 0 * a
    assert [n.name for n in Graph.from_expr(c).nodes] == ["a", "c"]
    assert Graph.from_expr(c, view="display").output.expr == sp.log(1 + sp.exp(x))


def test_deep_chain_builds_without_recursion_limit():
    x = sp.Symbol("x")
    v = x
    for _ in range(3000):
        v = define(v * 2 + 1, kind="step")
    assert len(Graph.from_expr(v).nodes) == 3000
