"""An einsum's and a sum's own roundings (``symgrad.tensor.ownround``): each addition charged
its result, a subset sum of the terms (at most (A + |v|) / 2, the last one |v|). Real float32
sums in random orders, recursive and pairwise, of terms that cancel stay within u E; the rule
is never above Wilkinson's (m - 1 + k - 1) A and about half of it where the terms cancel."""

import numpy as np

import symgrad.tensor as st
from symgrad.tensor.bound import evaluate_bound

U = 2.0**-24


def _pairwise(x: np.ndarray) -> np.float32:
    if len(x) == 1:
        return x[0]
    h = len(x) // 2
    return np.float32(_pairwise(x[:h]) + _pairwise(x[h:]))


def _recursive(x: np.ndarray) -> np.float32:
    s = np.float32(0)
    for t in x:
        s = np.float32(s + t)
    return s


def _cancelling(rng, n: int) -> np.ndarray:
    x = rng.standard_normal(n).astype(np.float32)
    x[-1] = np.float32(-x[:-1].astype(np.float64).sum() * (1 - 10.0 ** -rng.integers(1, 6)))
    return x


def test_a_float32_sum_in_any_order_stays_within_u_E():
    rng = np.random.default_rng(7)
    worst = 0.0
    for n in (2, 3, 8, 33, 100):
        p = st.param("p", (n,))
        node = st.sum_(p)
        for _ in range(40):
            x = _cancelling(rng, n)
            E = float(evaluate_bound([node], {"p": x[None].astype(np.float64)},
                                     mode="worst")[0][0])
            exact = float(np.sum(x.astype(np.float64)))  # exact: float64 holds these sums
            for got in (_recursive(x[rng.permutation(n)]), _pairwise(x[rng.permutation(n)])):
                err = abs(float(got) - exact)
                assert err <= U * E * (1 + n * U), (n, err, U * E)
                worst = max(worst, err / (U * E))
    assert worst > 0.05, worst  # within a small factor of real errors: it could see one


def test_an_einsum_read_by_a_later_node_is_charged_its_subset_sums():
    rng = np.random.default_rng(3)
    m = 64
    a, b = st.param("a", (m,)), st.param("b", (m,))
    y = st.einsum("i,i->", a, b)
    out = st.map_(2 * st.X[0], y)  # y is read: its value is formed
    x = rng.standard_normal((1, m))
    w = rng.standard_normal((1, m))
    w[0, -1] = -(x[0, :-1] @ w[0, :-1]) / x[0, -1]  # the terms cancel to ~0
    E = float(evaluate_bound([y, out], {"a": x, "b": w}, mode="worst")[0][0])
    A = float(np.abs(x * w).sum())
    assert E <= (m - 1 + 1) * A * (1 + 1e-12)  # never above Wilkinson's
    assert E < 0.52 * (m - 1 + 1) * A, (E, A)  # about half of it at a cancellation
    same = np.abs(x * w).sum() * np.ones((1, m)) / m  # no cancellation: all terms positive
    E1 = float(evaluate_bound([y, out], {"a": np.ones((1, m)), "b": same}, mode="worst")[0][0])
    assert np.isclose(E1, m * float(same.sum())), E1  # (m - 1 + k - 1) A: nothing to gain
