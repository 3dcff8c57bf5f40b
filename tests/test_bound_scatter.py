"""The bound of a scatter_add (a token-embedding gradient) is formed on the rows its ids hit:
the same bits as the whole scatter, exact zeros elsewhere with zero allowance, and a nonzero
gradient planted in a row no token hits is still caught."""

import numpy as np
import pytest

import symgrad as sg
import torch

from symgrad.compare import MISMATCH, OK, Tolerance, compare
from symgrad.tensor import bound
from symgrad.tensor.bound import evaluate_bound
from symgrad.tensor.interpret import RULES as VALUE_RULES
from symgrad.tensor.tables import NumpyOps, oracle_ops
from symgrad.tensor.views import _flatten, oracle_view, torch_view
from symgrad.zoo.gpt2 import gpt

CFG = {"vocab_size": 40, "context_length": 6, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
       "drop_rate": 0.0}
_T = NumpyOps("float64")


def _whole(node, rows, ids):
    return VALUE_RULES["scatter_add"](node, _T, [rows, ids], None)


def _old_b(node, vals, errs, value, count):
    """The rule before: both scatters over every row of the table."""
    t = max(int(np.prod(node.args[1].shape)) - 1, 0)
    e = _whole(node, errs[0], vals[1])
    return e + t * _whole(node, np.abs(vals[0]), vals[1]) if t else e


def _old_s(node, vals, sig, value, count, n0):
    t = max(int(np.prod(node.args[1].shape)) - 1, 0)
    s = np.sqrt(_whole(node, sig[0] * sig[0], vals[1]))
    if t + 1 > n0:
        s = np.maximum(s, _whole(node, sig[0], vals[1]) / np.sqrt(n0))
    if t:
        s = s + bound._growth(t, n0) * _whole(node, np.abs(vals[0]), vals[1])
    return s


def _leaves(samples: int, tokens: int, seed: int):
    model = gpt(CFG, tokens=tokens)
    leaves = model.draw(samples, np.random.default_rng(seed), "float64")
    leaves["ids"][:, 1] = leaves["ids"][:, 0]  # an id repeated within a sample
    return model, leaves


@pytest.mark.parametrize("mode,sqrt_terms", [("worst", 1024), ("probabilistic", 1024),
                                             ("probabilistic", 2)])
def test_hit_rows_give_the_whole_scatters_bits(monkeypatch, mode, sqrt_terms):
    """E (and min(E, lam sigma)) of the token-embedding gradient, with a repeated id, 3
    samples: byte for byte the rule that scattered over all 40 rows (sqrt_terms=2: the
    linear-growth branch of sigma)."""
    model, leaves = _leaves(3, 5, 0)
    outs = model.gradient.outputs
    new = evaluate_bound(outs, leaves, mode=mode, sqrt_terms=sqrt_terms)
    monkeypatch.setitem(bound.RULES, "scatter_add", _old_b)
    monkeypatch.setitem(bound.SIGMA_RULES, "scatter_add", _old_s)
    monkeypatch.setattr(bound, "_at_most_hit", lambda node, hit, E, lam, s: bound._at_most(
        E, lam, s))
    old = evaluate_bound(outs, leaves, mode=mode, sqrt_terms=sqrt_terms)
    scatters = [k for k, o in enumerate(outs) if o.op == "scatter_add"]
    assert scatters
    for a, b in zip(old, new):
        assert a.shape == b.shape and np.ascontiguousarray(a).tobytes() == \
            np.ascontiguousarray(b).tobytes()
    E = new[scatters[0]]
    hit = np.zeros(E.shape[:2], bool)
    for i, row in enumerate(leaves["ids"]):
        hit[i, row] = True
    assert (E[hit] > 0).all() and (E[~hit] == 0).all()


def test_untouched_rows_are_exact_zeros_with_zero_allowance():
    """Rows of the token table no token hits: the oracle's gradient is exactly 0 (hi and lo),
    E is 0, so the allowance is only float64's underflow floor (a few times its least normal
    number, 8.9e-308 here), and torch's exact 0 there is 'ok' (not inconclusive)."""
    model, leaves = _leaves(2, 4, 1)
    hi, lo = oracle_view(model, leaves, oracle_ops())
    E = _flatten(model, evaluate_bound(model.gradient.outputs, leaves,
                                       mode="probabilistic"), np.asarray, 2)
    got = torch_view(model, leaves, dtype="float64", device="cpu")
    c = compare(hi, lo, got, E, backend="torch", dtype="float64", tol=Tolerance())
    V, D = CFG["vocab_size"], CFG["emb_dim"]
    for i, ids in enumerate(leaves["ids"]):
        untouched = np.setdiff1d(np.arange(V), ids)
        cols = (1 + untouched[:, None] * D + np.arange(D)).reshape(-1)
        assert len(untouched) >= V - 4
        assert (hi[i, cols] == 0).all() and (lo[i, cols] == 0).all()
        assert (E[i, cols] == 0).all() and (c.allowed_abs[i, cols] < 1e-300).all()
        assert (got[i, cols] == 0).all() and (c.status[i, cols] == OK).all()


def test_a_gradient_planted_in_an_untouched_row_is_caught():
    """torch_fn's loss plus 1e-12 (W[r] - W[r]) summed over the rows r of the token table that
    no token of the sample hits: the same loss, a 1e-12 gradient in each of those rows against
    an exact 0 with zero allowance: mismatches there only, named by the parameter."""
    model = gpt(CFG, tokens=4)
    V, D = CFG["vocab_size"], CFG["emb_dim"]
    seen = []

    def planted(**blocks):
        miss = torch.ones(V, dtype=blocks["tok_emb"].dtype)
        miss[blocks["ids"]] = 0
        seen.append(miss.numpy().astype(bool))
        w = (blocks["tok_emb"] * miss[:, None]).sum()
        return model.reference(**blocks) + 1e-12 * (w - w.detach())
    cfg = sg.VerifyConfig(samples=1, seed=2, backends=("torch_fn",))
    r = sg.verify(model, torch_fn=planted, config=cfg)
    assert r.verdict == "fail"
    status = r.comparisons["torch_fn"].status
    rows = status[0, 1:1 + V * D].reshape(V, D)
    assert (rows[seen[-1]] == MISMATCH).all() and (rows[~seen[-1]] != MISMATCH).all()
    assert "tok_emb[" in str(r)
    clean = sg.verify(model, torch_fn=model.reference, config=cfg)
    assert clean.verdict == "pass", str(clean)


def test_an_output_scatter_nobody_reads_is_not_formed(monkeypatch):
    """The token-embedding gradient is an output no node reads: the bound's walk takes only
    its shape (its rules read the operands), never the whole-table scatter (GPT-2: 309 MB
    zeroed and added into, the 64-token walk's peak); E the same bits as when it was formed."""
    model, leaves = _leaves(2, 5, 0)
    outs = model.gradient.outputs
    assert any(o.op == "scatter_add" for o in outs)
    formed = evaluate_bound(outs, leaves, mode="probabilistic")
    calls = []

    def counted(node, t, vals, ctx):
        calls.append(node.id)
        return _whole(node, *vals)
    monkeypatch.setitem(bound.VALUE_RULES, "scatter_add", counted)
    got = evaluate_bound(outs, leaves, mode="probabilistic")
    read = {a.id for o in model.gradient.nodes for a in o.args}
    unread = {o.id for o in outs if o.op == "scatter_add" and o.id not in read}
    assert unread and not unread & set(calls)
    for a, b in zip(formed, got):
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
