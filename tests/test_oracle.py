"""The certified oracle: ball arithmetic with precision escalation; a finite true value is never
NaN, 'domain' or an exception; what cannot be certified is inconclusive, never ok. (The scalar
oracle's own cases, a true domain error and constants at each rung's precision, are on the
program in tests/test_program_oracle.py.)"""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.compare import INCONCLUSIVE


def _plain_bce():
    z, y = sp.symbols("z y")
    p = 1 / (1 + sp.exp(-z))
    return sg.Model("bce_plain", -(y * sp.log(p) + (1 - y) * sp.log(1 - p)), params=[z],
                    inputs={y: sg.Choice([0.0, 1.0])})


def test_cancellation_costs_bits_not_the_answer():
    """log(1 - p) at z = 152: 1 - p = 1e-66 is lost at 50 digits (the old oracle said NaN)."""
    r = sg.verify(_plain_bce(), at={"z": np.array([152.0, 152.0, 3.0]),
                                    "y": np.array([1.0, 0.0, 1.0])})
    # the oracle's answers (symgrad's own programs no longer fail here: symgrad.stable)
    exact = r.comparisons["numpy"].expected
    expected = {(i, out): exact[i, k] for i in range(3) for k, out in enumerate(r.outputs)}
    assert expected[(0, "value")] == pytest.approx(9.710436457780846e-67, rel=1e-15)
    assert expected[(0, "d/dz")] == pytest.approx(-9.710436457780846e-67, rel=1e-15)
    assert expected[(1, "value")] == pytest.approx(152.0, rel=1e-12)
    assert not any(f.kind == "domain" for f in r.failures)
    bits = r.as_dict()["oracle_bits"]
    assert bits["max"] > 128 and sum(bits["distribution"].values()) == 3
    assert bits["distribution"]["128"] == 1  # the easy sample needed no more


def test_exact_at_deep_in_saturation_does_not_raise():
    g = sg.exact_at(_plain_bce(), {"z": 120, "y": 1})
    assert float(g["value"]) == pytest.approx(7.667648073722e-53, rel=1e-12)
    assert float(g["d/dz"]) == pytest.approx(-7.667648073722e-53, rel=1e-12)
    g = sg.exact_at(_plain_bce(), {"z": 120, "y": 0}, dps=60)
    assert abs(g["d/dz"] - 1) < 1e-50


def test_precision_cap_gives_inconclusive_never_ok():
    cfg = sg.VerifyConfig(samples=1, oracle_bits=64, oracle_max_bits=64)
    r = sg.verify(_plain_bce(), config=cfg, at={"z": np.array([60.0]), "y": np.array([0.0])})
    st = r.comparisons["numpy"].status
    assert (st == INCONCLUSIVE).all()
    assert r.as_dict()["oracle_bits"]["uncertain_entries"] == 2
    r = sg.verify(_plain_bce(), at={"z": np.array([60.0]), "y": np.array([0.0])})
    assert not (r.comparisons["numpy"].status == INCONCLUSIVE).any()


def test_bad_oracle_bits():
    with pytest.raises(sg.SymgradError, match="oracle_bits"):
        sg.VerifyConfig(oracle_bits=256, oracle_max_bits=128)
