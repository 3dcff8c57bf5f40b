import numpy as np
import pytest

from symgrad import Choice, Integers, LogUniform, Normal, SymgradError, Uniform


@pytest.mark.parametrize("domain", [Normal(1, 2), Uniform(-3, 3), LogUniform(1e-3, 1e3),
                                    Choice([0.0, 1.0]), Integers(0, 7)])
def test_same_seed_same_draws(domain):
    a = domain.sample(np.random.default_rng(5), (4, 3))
    b = domain.sample(np.random.default_rng(5), (4, 3))
    assert a.shape == (4, 3) and np.array_equal(a, b)


def test_draws_respect_domains():
    rng = np.random.default_rng(0)
    assert np.all((Uniform(-3, 3).sample(rng, (1000,)) >= -3))
    lu = LogUniform(1e-3, 1e3).sample(rng, (1000,))
    assert lu.min() > 0 and lu.max() < 1e3
    assert set(Choice([0.0, 1.0]).sample(rng, (100,))) <= {0.0, 1.0}
    ints = Integers(2, 4).sample(rng, (1000,))
    assert set(ints) == {2.0, 3.0, 4.0} and Integers.integer


@pytest.mark.parametrize("make, match", [
    (lambda: Normal(0, -1), "std must be"),
    (lambda: Uniform(1, 1), "low must be < high"),
    (lambda: LogUniform(-1, 1), "0 < low < high"),
    (lambda: Choice([]), "at least one value"),
    (lambda: Integers(3, 2), "low must be <= high"),
])
def test_bad_domains_are_named(make, match):
    with pytest.raises(SymgradError, match=match):
        make()
