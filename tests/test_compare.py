import numpy as np
import pytest

from symgrad.compare import (DOMAIN, LOSS, MISMATCH, NONFINITE, OK, SymgradError, Tolerance,
                             compare, measured_ulps, ulp)
from symgrad.config import VerifyConfig
from symgrad.measures import measures


def test_ulp_matches_numpy_spacing():
    x = np.array([1.0, 3.5, 1e-300, 1e300, 0.1])
    assert np.array_equal(ulp(x, "float64"), np.spacing(x))
    x32 = np.array([1.0, 3.5, 0.1], dtype=np.float32)
    assert np.array_equal(ulp(x32.astype(np.float64), "float32"),
                          np.spacing(x32).astype(np.float64))
    assert ulp(np.array([0.0]), "float64")[0] == 2.0**-1074


def _cmp(exact, got, bound, dtype="float64", lo=None, value_column=True):
    exact = np.atleast_2d(np.asarray(exact, dtype=np.float64))
    return compare(exact, np.zeros_like(exact) if lo is None else lo,
                   np.atleast_2d(np.asarray(got, dtype=np.float64)),
                   np.atleast_2d(np.asarray(bound, dtype=np.float64)),
                   backend="b", dtype=dtype, tol=Tolerance(), value_column=value_column)


def test_verdict_uses_the_bound_not_a_fixed_tolerance():
    # the same absolute error passes where the bound is large and fails where it is small
    assert _cmp(1e-3, 1e-3 + 1e-15, 1e3).status[0, 0] in (OK, LOSS)
    assert _cmp(1e-3, 1e-3 + 1e-15, 1e-3).status[0, 0] == MISMATCH


def test_twelfth_digit_error_is_caught_when_well_conditioned():
    c = _cmp(0.7, 0.7 * (1 + 1e-12), 3 * 0.7)
    assert c.status[0, 0] == MISMATCH and c.ulps[0, 0] > 1000


def test_error_classes():
    c = _cmp([[1.0, 1.0, np.nan, 1.0]], [[1.0, np.nan, 1.0, np.inf]], [[1.0, 1.0, 1.0, 1.0]])
    assert list(c.status[0]) == [OK, NONFINITE, DOMAIN, NONFINITE]
    assert not c.ok


def test_precision_loss_is_flagged_but_passes():
    c = _cmp([[0.5, 1.0]], [[0.5, 1 + 1e-12]], [[1.0, 1e4]])
    assert c.status[0, 1] == LOSS and c.ok


def test_double_double_exact_value_is_used():
    exact_hi = np.array([[1.0]])
    lo = np.array([[2.0**-60]])
    c = _cmp(exact_hi, 1.0, 1.0, lo=lo)
    assert 0 < c.ulps[0, 0] < 0.01


def test_float32_ulps_are_float32_ulps():
    got = np.float32(1.0) + np.spacing(np.float32(1.0)) * 3
    assert _cmp(1.0, float(got), 1.0, dtype="float32").ulps[0, 0] == pytest.approx(3)


def test_unknown_dtype_is_named():
    with pytest.raises(SymgradError, match="unknown dtype 'float8'"):
        _cmp(1.0, 1.0, 1.0, dtype="float8")


def test_rule_is_written_down():
    assert "safety" in Tolerance().as_dict() and "u * E" in Tolerance().rule()


# ---------------------------------------------------------------- inconclusive, value, blocks
from symgrad.compare import INCONCLUSIVE, STATUS_NAMES, SUSPECT, SYSTEMATIC, systematic  # noqa: E402


def test_an_allowance_as_large_as_the_value_is_inconclusive_not_ok():
    # column 0 is the loss value; column 1 a gradient entry the bound cannot resolve
    c = _cmp([[1.0, 1e-3]], [[1.0, -1e-3]], [[1.0, 1e20]])
    assert c.status[0, 1] == INCONCLUSIVE and STATUS_NAMES[INCONCLUSIVE] == "inconclusive"
    assert INCONCLUSIVE == 7 and c.ok  # counted and shown, neither ok nor failing
    resolved = _cmp([[1.0, 1e-3]], [[1.0, 1e-3 * (1 + 1e-15)]], [[1.0, 1.0]])
    assert resolved.status[0, 1] == OK


def test_a_loss_value_wrong_by_more_than_itself_is_a_mismatch_whatever_the_bound():
    # float32 nn.BCELoss: log clamped at -100 where the exact loss is 16.8
    c = _cmp([[16.8, 1.0]], [[100.0, 1.0]], [[1e30, 1.0]], dtype="float32")
    assert c.status[0, 0] == MISMATCH and not c.ok


def test_an_exactly_zero_value_is_judged_by_its_bound():
    # torch.sinc(5.) is -4e-17: sin(5 pi) / (5 pi) with pi rounded; the exact value is 0
    assert _cmp([[0.0, 1.0]], [[-4.4e-17, 1.0]], [[10.0, 1.0]]).ok
    assert not _cmp([[0.0, 1.0]], [[1e-3, 1.0]], [[10.0, 1.0]]).ok


def _block(exact, got, bound, dtype="float32", head=True):
    """Compare one block "W" (with the given bound); beside it a resolved block "head"."""
    exact, got = np.asarray(exact, float), np.asarray(got, float)
    n, k = exact.shape
    value = np.ones((n, 1))
    h = np.linspace(1, 2, 8)[None].repeat(n, 0) if head else np.zeros((n, 0))
    c = compare(np.hstack([value, exact, h]), np.zeros((n, k + 1 + h.shape[1])),
                np.hstack([value, got, h]),
                np.hstack([value, np.full_like(exact, bound), np.ones_like(h)]),
                backend="b", dtype=dtype, tol=Tolerance())
    blocks = [("W", 1, k + 1)] + ([("head", k + 1, k + 9)] if head else [])
    return systematic(c, blocks, Tolerance())


@pytest.mark.parametrize("factor", [-1.0, 0.0, 1.5])
def test_block_test_suspects_a_scaled_block_that_most_entry_bounds_excuse(factor):
    """A resolved block (||exact|| > ||allowance||) whose entries are mostly excused one by one:
    the block test raises a suspicion (SUSPECT entries, an unconfirmed finding), which fails
    nothing until symgrad.confirm reproduces it (tests/test_confirm.py)."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2, 64))
    noise = g * 1e-7 * rng.normal(size=g.shape)  # float32-sized rounding errors
    bound = 2e6  # allowance 0.48 per entry: ||exact|| = 8 > ||allowance|| = 3.8
    correct = _block(g, g + noise, bound)
    assert correct.ok and not correct.systematic
    wrong = _block(g, g * factor + noise, bound)
    assert {f.block for f in wrong.systematic} == {"W"}
    assert all(f.confirmed is None for f in wrong.systematic)
    assert (np.isin(wrong.status[:, 1:65], (SUSPECT, MISMATCH))).mean() > 0.9
    assert (wrong.status == SUSPECT).any() and not (wrong.status == SYSTEMATIC).any()
    assert abs(wrong.systematic[0].projection - (factor - 1)) < 1e-3


@pytest.mark.parametrize("factor", [-1.0, 0.0, 1.5])
def test_block_test_leaves_an_unresolved_block_alone(factor):
    """||exact|| <= ||allowance||: correct code may return anything there, its direction
    included (the key-bias third of a GPT's attention bias, whose exact gradient is zero: the
    oracle's 1e-37 against float64's 1e-21 gave p = 1.4e16). No projection is meaningful: no
    suspicion; the entries stay inconclusive (never "pass")."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2, 64))
    wrong = _block(g, g * factor, 1e9)  # allowance 240 per entry
    assert not wrong.systematic
    assert (wrong.status[:, 1:65] == INCONCLUSIVE).all()
    zero = 1e-37 * rng.normal(size=(2, 64))  # an exactly-zero gradient, as the oracle rounds it
    aligned = zero * 1.4e16  # float64 rounding that happens to point along it
    assert not _block(zero, aligned, 1e3, dtype="float64").systematic


def test_block_test_ignores_aligned_rounding_at_the_floor_and_noisy_blocks():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(1, 64))
    aligned = g * (1 + 100 * 2.0**-24)  # an upstream rounding shared by the block: 100 u
    assert not _block(g, aligned, 1e6).systematic
    noisy = g + 0.3 * np.abs(g).max() * rng.normal(size=g.shape)  # an ill-conditioned block
    assert not _block(g, noisy, 1e6).systematic


def test_block_test_excuses_a_common_mode_shared_by_every_block():
    """An upstream adjoint shared by every block (BCE's dL/dz at a saturated logit) shifts all
    blocks alike: not a block bug. A block departing from the others is."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(1, 64))
    n = 65 + 8
    exact = np.hstack([np.ones((1, 1)), g, np.linspace(1, 2, 8)[None]])

    def run(got):
        c = compare(exact, 0 * exact, got, np.full((1, n), 1e6), backend="b", dtype="float32",
                    tol=Tolerance())
        return systematic(c, [("W", 1, 65), ("head", 65, 73)], Tolerance())
    common = exact * (1 + 1e-2)
    common[0, 0] = 1.0
    assert not run(common).systematic  # 1e-2 = 1.7e5 u on every block: above the floor, shared
    alone = exact.copy()
    alone[0, 1:65] *= 1 + 1e-2
    assert [f.block for f in run(alone).systematic] == ["W"]


def test_pooled_test_resolves_a_tiny_systematic_error_across_samples():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(400, 1))
    rounding = g * 2.0**-24 * rng.uniform(-1, 1, size=g.shape)
    assert not _block(g, g + rounding, 30, head=False).systematic  # correct: no common sign
    bug = _block(g, g * (1 + 1e-6) + rounding, 30, head=False)  # 17 u, below every allowance
    assert bug.systematic[0].sample == -1
    assert (bug.status[:, 1] == SUSPECT).mean() > 0.9


@pytest.mark.parametrize("n", [20, 64])
def test_pooled_test_can_fire_from_20_samples(n):
    """|sum pi p| <= sqrt(N) sqrt(sum pi^2 p^2): at lambda = 8 the pooled test needed N > 64;
    at the suspicion level min(4, 0.9 sqrt(n_eff)) it fires from ~10 effective samples."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=(n, 1))
    rounding = g * 2.0**-24 * rng.uniform(-1, 1, size=g.shape)
    bug = _block(g, g * (1 + 2e-6) + rounding, 30, head=False)  # 34 u
    assert [f.sample for f in bug.systematic] == [-1]
    assert not _block(g, g + rounding, 30, head=False).systematic


def test_an_exactly_right_entry_is_ok_even_where_the_bound_sees_nothing():
    # an exact 1e-17 from terms of size 1: the float64 allowance (4.4e-16) would accept 0 or a
    # flipped sign, so an entry near it is inconclusive - unless it IS the exact value, bit
    # for bit
    import numpy as np
    from symgrad.compare import INCONCLUSIVE, OK, Tolerance, compare
    exact = np.array([[1.0, 1e-17, 1e-17]])
    got = np.array([[1.0, 1e-17, 2e-17]])
    c = compare(exact, np.zeros_like(exact), got, np.ones_like(exact), backend="torch_fn",
                dtype="float64", tol=Tolerance())
    assert c.status[0, 1] == OK and c.status[0, 2] == INCONCLUSIVE


# --- precision loss is flagged in the measure the tables show (helper zeroulp) ---------------

def test_an_exact_zero_is_no_precision_loss_in_subnormal_ulps():
    """The new user's conv1.bias before a train-mode BatchNorm (exact gradient 0, oracle
    2.311e-33, got 7.63e-17 from terms ~64): main flagged it "precision loss ... 2.23e+32 ULPs"
    (subnormal ULPs of 2.3e-33) while the table said 0.005 ULPs of its terms' scale. Meant to
    fail on main: the status was LOSS."""
    c = _cmp(2.311e-33, 7.63e-17, 64.0, value_column=False)  # a gradient entry
    assert c.ulps[0, 0] > 1e30  # the subnormal measure that used to flag it
    assert c.status[0, 0] == OK and c.ok
    shown, scale = measured_ulps(c.error, c.expected, c.allowed_abs, c.ulps, "float64",
                                 Tolerance())
    assert shown[0, 0] < 1 and scale[0, 0] == 64.0


def test_a_real_cancellation_near_zero_is_still_flagged():
    """log(1 + t) written naively at t ~ 1e-10: the value ~1e-10 comes from terms ~1 (E ~ 1),
    |exact| > u * E, so it is measured in its own ULPs: 1 + t rounds, ~8e-9 off, 6.4e8 ULPs
    of 1e-10 > 1024: precision loss (within the allowance 4 u E), and a planted error beyond
    the allowance a mismatch - the terms' scale excuses nothing it should not."""
    t = 1e-10
    exact = np.log1p(t)
    got = np.log(1 + t)  # 1 + t rounds: ~8e-9 relative
    c = _cmp([[exact, exact]], [[got, exact + 4e-14]], [[4.0, 4.0]])
    assert c.status[0, 0] == LOSS, (c.ulps, c.status)
    assert c.status[0, 1] == MISMATCH  # a planted error beyond the allowance still fails


def test_the_flag_and_the_tables_measure_agree_on_every_entry():
    """Random entries - exact zeros, near zeros by cancellation, ordinary values, tiny and huge
    bounds, float64 and float32 - LOSS exactly where the table's ULPs (``symgrad.measures``)
    exceed ``precision_loss_ulps`` at an entry within its allowance, else not."""
    rng = np.random.default_rng(1)
    for dtype in ("float64", "float32"):
        n = 4000
        exact = rng.choice([0.0, 1.0], size=n) * 10.0 ** rng.uniform(-40, 3, size=n)
        exact *= rng.choice([-1.0, 1.0], size=n)
        bound = 10.0 ** rng.uniform(-3, 12, size=n)
        u = 2.0**-53 if dtype == "float64" else 2.0**-24
        err = 10.0 ** rng.uniform(-2, 1, size=n) * u * bound * rng.uniform(0, 5, size=n)
        got = exact + rng.choice([-1.0, 1.0], size=n) * err
        c = compare(exact[None], np.zeros((1, n)), got[None], bound[None], backend="b",
                    dtype=dtype, tol=Tolerance(), value_column=False)
        m = measures(c, VerifyConfig())
        within = c.error <= c.allowed_abs
        expected_loss = within & (m.ulps > Tolerance().precision_loss_ulps)
        decided = np.isin(c.status, (OK, LOSS))
        assert np.array_equal(c.status[decided] == LOSS, expected_loss[decided]), dtype
        assert (c.status == LOSS).any() and (decided & ~expected_loss & (c.ulps > 1024)).any()
