"""The walks with the forward's layers recomputed in the backward (symgrad/tensor/recompute.py):
the same values, oracle pairs, bounds and verdicts as the plain walk, bit for bit, each node's
callbacks once; every value read while it is held; and the live set of a GPT-2 at 1024 tokens
no longer growing by the layer's attention maps (counted on the plans: nothing evaluated)."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.config import VerifyConfig
from symgrad.precise import DD_OPS
from symgrad.tensor import recompute
from symgrad.tensor.bound import evaluate_bound
from symgrad.tensor.interpret import evaluate
from symgrad.tensor.tables import NumpyOps
from symgrad.zoo.gpt2 import gpt as build, gpt2

SMALL = {"vocab_size": 23, "context_length": 8, "emb_dim": 8, "n_heads": 2, "n_layers": 3,
         "drop_rate": 0.0, "qkv_bias": True}


@pytest.fixture(scope="module")
def small():
    m = build(SMALL)
    return m, m.draw(2, np.random.default_rng(0), "float64")


def _both(monkeypatch, run):
    """``run()`` on the plain walk, then with every forward segment but the last recomputed."""
    monkeypatch.setattr(recompute, "RECOMPUTE_ABOVE", None)
    plain = run()
    monkeypatch.setattr(recompute, "RECOMPUTE_ABOVE", 0)
    return plain, run()


def test_a_forced_plan_recomputes_every_layer(small):
    m, _ = small
    p = recompute.plan(m.gradient.outputs, above=0)
    again = [n for n, a in zip(p.steps, p.again) if a]
    names = {n.name for n in again if n.name}
    assert {"h0.ln1", "h1.ln1", "h2.ln1", "h0.gelu", "h2.gelu"} <= names
    assert "h2.out" not in names and "h1.out" not in names  # the cuts are kept
    assert len({n.id for n in again}) == len(again)  # each recomputed once
    assert p.walked == len({n.id for n in p.steps})
    assert not any(recompute.plan(m.gradient.outputs, above=None).again)


def test_every_read_is_of_a_held_value_and_each_is_freed_once(small):
    m, _ = small
    p = recompute.plan(m.gradient.outputs, above=0)
    held: set[int] = set()
    freed = []
    for i, node in enumerate(p.steps):
        assert all(a.id in held for a in node.args), (i, node.op)
        held.add(node.id)
        for f in p.frees[i]:
            held.remove(f.id)
            freed.append(f.id)
    assert held == set() and len(freed) == len(p.steps)
    outs = {o.id for o in m.gradient.outputs}
    assert all(n.id in outs or n.is_leaf or any(n in s.args for s in p.steps) for n in p.steps)


def test_values_and_oracle_pairs_are_the_plain_walks_bit_for_bit(monkeypatch, small):
    m, vals = small
    outs = list(m.gradient.outputs)
    for table in (NumpyOps("float64"), NumpyOps("float32")):
        plain, again = _both(monkeypatch, lambda: evaluate(outs, table, vals))
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(plain, again))
    one = {k: v[:1] for k, v in vals.items()}
    plain, again = _both(monkeypatch, lambda: evaluate(outs, DD_OPS, one))
    assert all(np.array_equal(a.hi, b.hi) and np.array_equal(a.lo, b.lo)
               for a, b in zip(plain, again))


@pytest.mark.parametrize("mode", ["worst", "probabilistic"])
def test_the_bound_is_the_plain_walks_bit_for_bit(monkeypatch, small, mode):
    m, vals = small
    plain, again = _both(monkeypatch, lambda: evaluate_bound(m.gradient.outputs, vals,
                                                             mode=mode))
    assert all(np.array_equal(a, b) for a, b in zip(plain, again))


def test_callbacks_and_emits_see_each_node_once(monkeypatch, small):
    m, vals = small
    outs = list(m.gradient.outputs)

    def run():
        seen, emitted, ticks = [], {}, []
        evaluate(outs, NumpyOps(), vals, on_step=lambda n, a, v: seen.append(n.id),
                 emit=lambda k, v: emitted.setdefault(k, np.array(v)),
                 progress=lambda d, t: ticks.append((d, t)))
        return seen, emitted, ticks
    (s0, e0, t0), (s1, e1, t1) = _both(monkeypatch, run)
    assert sorted(s0) == sorted(s1) and len(set(s1)) == len(s1)
    assert sorted(e0) == sorted(e1) == list(range(len(outs)))
    assert all(np.array_equal(e0[k], e1[k]) for k in e0)
    assert t1[-1] == t0[-1] == (len(t0), len(t0))  # progress counts nodes, not steps


@pytest.mark.slow
def test_a_verification_gives_the_same_json(monkeypatch, small):
    """The whole pipeline (oracle with its spot certification, bound, kinks, compare): the
    same result, timings aside."""
    m, _ = small

    def run():
        return sg.verify(m, config=VerifyConfig(samples=2, seed=0, progress=False)).as_dict()
    plain, again = _both(monkeypatch, run)
    assert plain == again


def _peak(p: recompute.Plan) -> int:
    """The most entries of non-leaf values held at once on a plan's walk."""
    held, now, top = {}, 0, 0
    for i, node in enumerate(p.steps):
        if not node.is_leaf:
            held[node.id] = node.size
            now += node.size
        top = max(top, now)
        for f in p.frees[i]:
            now -= held.pop(f.id, 0)
    return top


def test_gpt2_at_1024_tokens_holds_one_layer_not_all():
    """Each layer at 1024 tokens reads ~53M entries of forward values in its backward (three
    12 x 1024 x 1024 attention maps among them): the plain walk holds every layer's at once,
    the recomputing walk one layer's and the residual stream of each (~1.6M entries)."""
    peaks = {}
    for layers in (1, 3):
        outs = gpt2({"n_layers": layers, "vocab_size": 512}, tokens=1024).gradient.outputs
        peaks[layers] = (_peak(recompute.plan(outs, above=None)), _peak(recompute.plan(outs)))
        assert any(recompute.plan(outs).again)  # the default recomputes at this size
    plain_per_layer = (peaks[3][0] - peaks[1][0]) / 2
    per_layer = (peaks[3][1] - peaks[1][1]) / 2
    assert plain_per_layer > 45e6 and per_layer < 2e6, (plain_per_layer, per_layer)
    assert peaks[1][1] < peaks[1][0]


def test_small_programs_walk_as_before():
    outs = gpt2({"n_layers": 2, "vocab_size": 512}, tokens=64).gradient.outputs
    assert not any(recompute.plan(outs).again)
