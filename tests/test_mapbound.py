"""symgrad.tensor.mapbound: a map body's compiled running bound forms each repeated subterm once
(``common_terms``) and keeps every bit of the bound printed term by term."""

import numpy as np
import pytest
import sympy as sp

from symgrad.backends.numpy import target
from symgrad.codegen import Printer, build
from symgrad.rounding import NEAR_TIE, error_source
from symgrad.tensor import mapbound
from symgrad.tensor.program import X

GELU = X[0] * (sp.tanh(sp.sqrt(2) * (sp.Rational(8943, 200000) * X[0] ** 3 + X[0])
                       / sp.sqrt(sp.pi)) + 1) / 2
BODIES = [
    (sp.diff(GELU, X[0]).subs(X[0], X[1]) * X[0], 2),  # GELU's VJP: tanh and x**3 repeated
    (X[0] * sp.exp(X[1] - X[2]), 3),  # softmax's gradient
    ((X[0] - X[1]) / sp.sqrt(X[2] + sp.Rational(1, 100000)), 3),  # layer norm
    (sp.Max(X[0], X[1]) * sp.log(X[0] ** 2 + 1), 2),  # a tie band (numpy.where)
    (sp.Piecewise((X[0] ** 3, X[1] > 0), (sp.exp(X[0]) * X[0] ** 3, True)), 2),
    (X[0] ** X[1] + X[0] ** X[1] * X[1], 2),  # a symbolic power (annul, where)
]


def _term_by_term(expr, k):
    """The bound as printed before ``common_terms``: one expression, every subterm in place."""
    pr = Printer(target("float64"), {X[i]: f"a{i}" for i in range(k)})
    src = error_source(expr, pr, {X[i]: f"e{i}" for i in range(k)})
    args = ", ".join([f"a{i}" for i in range(k)] + [f"e{i}" for i in range(k)])
    return build([f"def mapbound({args}, tie={NEAR_TIE!r}):", f"    return {src}"], pr.t, pr,
                 "mapbound")


@pytest.mark.parametrize("expr,k", BODIES)
def test_shared_terms_keep_every_bit(expr, k):
    rng = np.random.default_rng(5)
    vals = [rng.standard_normal(4000) * 10.0 ** rng.integers(-8, 8, 4000) for _ in range(k)]
    for v in vals:  # zeros, ties, overflow and NaN too
        v[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e308, 5e-324, 1.0]
    errs = [np.abs(rng.standard_normal(4000)) * 3 for _ in range(k)]
    errs[0][:4] = [0.0, np.inf, 1.0, 0.0]
    shared, plain = mapbound.map_bound_fn(expr, k), _term_by_term(expr, k)
    tiny = mapbound.map_bound_fn(expr, k, None)  # a tiny map's: by its source's length
    with np.errstate(all="ignore"):
        got = np.broadcast_to(shared(*vals, *errs, tie=0.01), (4000,))
        want = np.broadcast_to(plain(*vals, *errs, tie=0.01), (4000,))
        by_length = np.broadcast_to(tiny(*vals, *errs, tie=0.01), (4000,))
    assert got.tobytes() == want.tobytes() == by_length.tobytes()


def test_a_tiny_map_s_short_bound_is_the_printed_form():
    """Up to ``TINY`` entries a bound's repeated subterms are formed once only where its
    source is long: the parse would cost more than forming them again (the fuzz's bodies)."""
    assert mapbound.sharing(20) is None and mapbound.sharing(mapbound.TINY + 1) is True
    for expr, k in BODIES:  # sources of 300 to 2,700 characters
        assert mapbound.map_bound_fn(expr, k, None).source == _term_by_term(expr, k).source
    gelu, k = BODIES[0]
    long = gelu + gelu.subs(X[1], X[1] + 1)  # two GELU VJPs: a long source, shared
    printed = _term_by_term(long, k).source
    assert len(printed) >= mapbound.SHARE_TINY_FROM
    assert mapbound.map_bound_fn(long, k, None).source.count("numpy.tanh") < printed.count(
        "numpy.tanh")


def test_gelu_vjp_forms_its_tanh_once():
    fn = mapbound.map_bound_fn(*BODIES[0])
    assert fn.source.count("numpy.tanh") == 1
    assert _term_by_term(*BODIES[0]).source.count("numpy.tanh") > 5


def test_conditional_forms_are_not_entered():
    shared, src = mapbound.common_terms("(a0 * 2 if e0 else a0 * 2) + (a0 and a0 * 2)")
    assert shared == [] and src == "(a0 * 2 if e0 else a0 * 2) + (a0 and a0 * 2)"
    shared, src = mapbound.common_terms("abs(a0 - a1) + abs(a0 - a1) * (a0 - a1)")
    assert shared == [("s0", "a0 - a1"), ("s1", "abs(s0)")] and src == "s1 + s1 * s0"


def test_large_maps_keep_the_printed_form_with_the_same_bits(monkeypatch):
    """Past SHARED_UP_TO entries a map's bound is the printed form (shared terms would all live
    to the end of the call: GELU's VJP at 1024 tokens, 241 -> 697 MB), with the same bits."""
    expr, k = BODIES[0]
    assert mapbound.map_bound_fn(expr, k, False).source.count("numpy.tanh") > 5
    rng = np.random.default_rng(1)
    vals = [rng.standard_normal((1, 30, 40)) for _ in range(k)]
    errs = [np.abs(rng.standard_normal((1, 30, 40))) for _ in range(k)]
    node = type("N", (), {"attrs": {"expr": expr}})()
    value = np.empty((1, 30, 40))
    small = mapbound.b_map(node, vals, errs, value, None)
    monkeypatch.setattr(mapbound, "SHARED_UP_TO", 100)
    assert mapbound.b_map(node, vals, errs, value, None).tobytes() == small.tobytes()
    assert mapbound.s_map(node, vals, errs, value, None, 1024).size == 1200


SHAPES = [(1, 6, 50, 40), (1, 1, 50, 1), (1, 6, 1, 40)]


@pytest.mark.parametrize("expr,k", BODIES + [(-X[0] * X[1] / X[2] ** 2, 3),
                                            (X[0] * X[1] + (X[1] - 1) * sp.Abs(X[0]), 2)])
@pytest.mark.parametrize("other", [0, 1, 2])
def test_pair_in_blocks_keeps_every_bit_of_the_rules_apart(monkeypatch, expr, k, other):
    """``both``: E and sigma of a map in one stacked call per block (an argument cut, never
    broadcast: a mask's size-1 axes kept whole) equal ``b_map`` and ``s_map`` called apart on
    the whole arrays, bit for bit, at any block size; zeros, inf, NaN and a leaf's 0 E too."""
    rng = np.random.default_rng(3)
    shapes = [SHAPES[0]] + [SHAPES[other]] * (k - 1)
    vals = [rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3, s) for s in shapes]
    vals[0].flat[:6] = [0.0, np.inf, np.nan, 1e308, 5e-324, 1.0]
    errs = [np.abs(rng.standard_normal(s)) for s in shapes]
    sig = [np.abs(rng.standard_normal(s)) for s in shapes]
    if k > 1:  # a leaf's E and sigma: one 0 broadcast
        sig[1] = np.broadcast_to(np.zeros(()), shapes[1])
        errs[-1] = np.broadcast_to(np.zeros(()), shapes[-1])
    node = type("N", (), {"attrs": {"expr": expr}})()
    value = np.empty(SHAPES[0])
    with np.errstate(all="ignore"):
        E0 = np.ascontiguousarray(mapbound.b_map(node, vals, errs, value, None)).tobytes()
        S0 = np.ascontiguousarray(mapbound.s_map(node, vals, sig, value, None, 1024)).tobytes()
    monkeypatch.setattr(mapbound, "STACK_UP_TO", 0)  # past the one-call size: in blocks
    for block in (1 << 20, 1000, 37, 3):
        monkeypatch.setattr(mapbound, "PAIR_BLOCK", block)
        E, S = mapbound.both(node, vals, errs, sig, value)
        assert (E.tobytes(), S.tobytes()) == (E0, S0), block
        assert E.flags.c_contiguous and S.flags.c_contiguous


def test_pair_keeps_the_memory_order_of_the_rules_apart(monkeypatch):
    """A later sum reads E in memory order: an einsum's transposed (Fortran-ordered) output
    read by ``x0 + x1`` gave a Fortran-ordered E through ``b_map``, and a C-ordered one in
    blocks summed to other last bits (gpt2's first layer norm). Operands in one order give E
    and sigma in that order, bit for bit; operands in mixed orders are left to the rules
    apart (None)."""
    monkeypatch.setattr(mapbound, "STACK_UP_TO", 0)
    rng = np.random.default_rng(4)
    node = type("N", (), {"attrs": {"expr": X[0] + X[1]}})()
    vals = [rng.standard_normal((1, 30, 40)) for _ in range(2)]
    value = np.empty((1, 30, 40))
    f_err = np.asfortranarray(np.abs(rng.standard_normal((1, 30, 40))))
    c_err = np.abs(rng.standard_normal((1, 30, 40)))
    f_vals = [np.asfortranarray(v) for v in vals]
    f_sig = [np.asfortranarray(c_err)] * 2
    E0 = mapbound.b_map(node, f_vals, [f_err, f_err], value, None)
    S0 = mapbound.s_map(node, f_vals, f_sig, value, None, 1024)
    assert not E0.flags.c_contiguous
    E, S = mapbound.both(node, f_vals, [f_err, f_err], f_sig, value)  # in blocks, F order
    assert (E.strides, S.strides) == (E0.strides, S0.strides)
    assert E.tobytes("A") == E0.tobytes("A") and S.tobytes("A") == S0.tobytes("A")
    assert mapbound.both(node, f_vals, [f_err, f_err], [c_err, c_err], value) is None  # mixed
    assert mapbound.both(node, vals, [c_err, f_err], [c_err, c_err], value) is None
    assert mapbound.both(node, vals, [c_err, c_err], [c_err, c_err], value) is not None


def test_pair_puts_each_sigma_in_its_own_variant():
    """A sigma given to the wrong argument (or the worst case's E read as a sigma) moves
    sigma: x0 * x1 at x0 = 1, x1 = 100 weighs sigma_0 by 100 and sigma_1 by 1."""
    node = type("N", (), {"attrs": {"expr": X[0] * X[1]}})()
    vals, value = [np.array([[1.0]]), np.array([[100.0]])], np.empty((1, 1))
    E, S = mapbound.both(node, vals, [np.array([[0.0]]), np.array([[7.0]])],
                         [np.array([[1.0]]), np.array([[0.0]])], value)
    assert float(E[0, 0]) == 7.0 + 100.0  # |x0| E1 + the product's own rounding (|x0 x1|)
    assert float(S[0, 0]) == 100.0 + 100.0  # |x1| sigma_0 + own
