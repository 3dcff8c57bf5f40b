"""A correct relu MLP with cross-entropy at points in the double-double's underflow zone (the
kind ``symgrad.strategies`` draws: 5e-324 beside large logits) must never FAIL.

A new user's trial (S1) found ``FAIL ... domain in the gradient with respect to W2[0,1]:
expected nan, got 0.0``: the softmax's p0 - 1 at a logit gap of 6883 is -e^-6883, a cancellation
of terms of order 1, so a ball resolves it only to 2^-bits absolute; the zone watch's cap of
1024 bits can never certify a value on float64's 2^-1074 grid that way (2048 bits do), left the
entry open (NaN), and ``tensor.limits`` then took that NaN for a pole at the row's inputs
exactly 0 (``domain``, a failing verdict) although nothing is undefined there. Meant to fail
before both fixes; a planted x(1 + 1e-9) bug is still caught, at an ordinary point and at the
zone point itself."""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as hst

import symgrad as sg
from symgrad.config import VerifyConfig
from symgrad.strategies import inputs
from symgrad.tensor import views

B, D, H, C = 4, 3, 5, 3
X = sg.matrix("X", B, D)
W1, b1 = sg.matrix("W1", H, D), sg.matrix("b1", H)
W2, b2 = sg.matrix("W2", C, H), sg.matrix("b2", C)
t = sg.matrix("t", B)
MLP = sg.Model("mlp2", sg.ops.cross_entropy(sg.ops.dense(sg.ops.relu(sg.ops.dense(X, W1, b1)),
                                                         W2, b2), t),
               params=[W1, b1, W2, b2], inputs={X: sg.Normal(0, 1), t: sg.Integers(0, C - 1)})

# the user's point, greedily shrunk: b1[4] = 5e-324 puts the row in the zone; logits 0,
# -6883.5, -8272.3 at sample 1 make d/dW2[0,1] = -e^-6883.5 / 4 (0.0 rounded to float64)
ZONE_POINT = {"W1": [[0, 0, 0], [0, 0, -1], [0, 0, 0], [0, 0, 0], [0, 0, 1]],
              "b1": [91.49441639267033, 0, 1, 1, 5e-324],
              "W2": [[0, 0, 0, 0, 0], [-75.23473367630478, 0, 0, 0, 0],
                     [-90.41590900299701, 0, 0, 0, 0]],
              "b2": [0, 0, 0], "X": [[0, 0, 1], [0, 0, -1], [0, 0, 1], [0, 0, 1]],
              "t": [0, 0, 2, 0]}


def _torch_mlp(scale: float = 1.0):
    """The user's torch code; ``scale`` != 1 plants a bug: d/dW2 multiplied by it."""
    def fn(W1, b1, W2, b2, X, t):
        W2s = W2 + (scale - 1.0) * (W2 - W2.detach())  # same value, gradient x scale
        return F.cross_entropy(F.relu(X @ W1.T + b1) @ W2s.T + b2, t.long())
    return fn


def test_zone_point_is_certified_and_passes():
    """The exact d/dW2[0,1] (-e^-6883.5 / 4, below float64) is certified as 0.0 by balls at
    2048 bits: the verdict passes, with symgrad's own programs and with the user's torch."""
    assert views.ZONE_BITS[1] >= 2048
    for kw in ({"backends": ("numpy",)}, {"torch_fn": _torch_mlp()}):
        r = sg.verify(MLP, at=ZONE_POINT, **kw)
        assert r.verdict == "pass", r


def test_open_zone_entry_is_inconclusive_not_a_domain_fail(monkeypatch):
    """At a cap too low to certify it (1024 bits, the old cap) the entry is open: inconclusive,
    saying the balls did not certify it; never a domain finding (no pole at the row's zeros)."""
    # the zone's cap comes from the config (views.zone_bits: oracle_max_bits / 2 = 1024 here)
    r = sg.verify(MLP, at=ZONE_POINT, backends=("numpy",),
                  config=VerifyConfig(oracle_max_bits=2048))
    assert r.verdict == "inconclusive", r
    assert not r.failures
    text = str(r)
    assert "W2[0,1]" in text and "not certified by ARB balls at 1024 bits" in text
    assert "domain" not in text


def test_planted_bug_is_caught_at_an_ordinary_point_and_at_the_zone_point():
    """d/dW2 x (1 + 1e-9): caught at a plain Normal draw and at the zone point (its d/dW2
    entries of order 20 are ordinary); the correct code passes at the same ordinary point."""
    rng = np.random.default_rng(7)
    ordinary = {"W1": rng.normal(size=(H, D)), "b1": rng.normal(size=H),
                "W2": rng.normal(size=(C, H)), "b2": rng.normal(size=C),
                "X": rng.normal(size=(B, D)), "t": [0, 2, 1, 0]}
    assert sg.verify(MLP, at=ordinary, torch_fn=_torch_mlp()).verdict == "pass"
    for point in (ordinary, ZONE_POINT):
        r = sg.verify(MLP, at=point, torch_fn=_torch_mlp(1 + 1e-9))
        assert r.verdict == "fail", r
        assert {f.output.split("[")[0] for f in r.failures} == {"d/dW2"}


@settings(max_examples=6, derandomize=True, deadline=None, database=None,
          phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
@given(hst.data())
def test_mlp_at_underflow_zone_points_never_fails(data):
    """Points drawn by ``symgrad.strategies.inputs`` (fixed seed: derandomized), pushed into the
    zone the way the user's was: one hidden bias 5e-324 and a large logit gap (a W2 column
    scaled to 80, so p - onehot cancels far below 2^-1074). Never a fail: the oracle's NaN or
    an uncertified ball is no proof."""
    at = {k: np.array(v[0]) for k, v in data.draw(inputs(MLP)).items()}
    at["b1"][4] = 5e-324
    at["b1"][0] = abs(at["b1"][0]) + 80.0
    at["W2"][1:, 0] = -np.abs(at["W2"][1:, 0]) - 60.0
    at["W1"][0] = 0.0
    r = sg.verify(MLP, at=at, backends=("numpy",))
    assert r.verdict != "fail", r


def test_a_dd_nan_from_overflow_is_no_domain_error():
    """tanh written as sinh(w)/cosh(w) at w = 800: the double-double's inf/inf is NaN, the model
    is defined (1, and d/dw = 1/cosh^2 w, 0.0 in float64). The row is re-evaluated in balls:
    the user's torch.tanh passes (was a FAIL, 'domain'); symgrad's own numpy program, which
    really gives NaN there, fails as non-finite, not domain. log(-1) and 1/0 stay domain."""
    w = sp.Symbol("w")
    m = sg.Model("tanh_as_ratio", sp.sinh(w) / sp.cosh(w), params=[w])
    at = {"w": np.array([1.0, 800.0])}
    assert sg.verify(m, at=at, torch_fn=lambda w: torch.tanh(w),
                     backends=("torch_fn",)).verdict == "pass"
    r = sg.verify(m, at=at, backends=("numpy",))
    assert r.verdict == "fail" and {f.kind for f in r.failures} == {"non-finite"}
    for expr, w0 in ((sp.log(w), -1.0), (1 / w, 0.0)):
        r = sg.verify(sg.Model("undefined", expr, params=[w]), at={"w": np.array([w0])},
                      backends=("numpy",))
        assert r.verdict == "fail" and {f.kind for f in r.failures} == {"domain"}
