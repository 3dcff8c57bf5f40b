import contextlib
import io

import pytest
import sympy as sp

import symgrad.commands as commands
from symgrad.cli import main
from symgrad.fuzz import _cause, fuzz


@pytest.fixture(scope="module")
def fuzz_1000():
    """`symgrad fuzz --budget 1000 --seed 0` as CI runs it, once for the module: its exit code,
    its output and the report the command printed (the CLI's own ``fuzz`` call, recorded)."""
    reports = []

    def recorded(*args, **kwargs):
        reports.append(fuzz(*args, **kwargs))
        return reports[-1]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(commands, "fuzz", recorded)
        code = main(["fuzz", "--budget", "1000", "--seed", "0"])
    assert len(reports) == 1
    return code, out.getvalue(), reports[0]


def test_fuzz_1000_has_no_crash_and_no_unexplained_disagreement(fuzz_1000):
    """`symgrad fuzz --budget 1000` as CI runs it (~12 s on 2 cores)."""
    code, out, _ = fuzz_1000
    assert code == 0
    assert "expressions verified" in out and "UNEXPLAINED" not in out


@pytest.fixture(scope="module")
def fuzz_20():
    """``fuzz(20, seed=0)``, once for the module: the same draws as the first 20 of
    ``fuzz_1000`` (the same seed and samples)."""
    return fuzz(20, seed=0)


def test_same_seed_same_report(fuzz_20):
    a = fuzz(20, seed=0)
    assert a.disagreements, "the first 20 draws of seed 0 hold disagreements to compare"
    assert [d.reproducer for d in a.disagreements] == [d.reproducer for d in
                                                       fuzz_20.disagreements]
    assert a.disagreements == fuzz_20.disagreements
    assert (a.verified, a.agreed) == (fuzz_20.verified, fuzz_20.agreed)


def test_each_root_cause_class_is_triggered():
    w = sp.Symbol("w")
    causes = {
        "domain": _cause("domain", "numpy", sp.log(w), float("nan"), float("nan"))[0],
        "where-trap": _cause("non-finite", "torch", sp.Max(w, sp.log(w)), float("nan"), 1.0)[0],
        "overflow": _cause("overflow", "torch", sp.exp(w), float("inf"), float("inf"))[0],
        "intermediate overflow": _cause("non-finite", "torch", sp.exp(w) / sp.exp(w),
                                        float("nan"), 1.0)[0],
        "flushed to zero": _cause("mismatch", "numpy", sp.exp(-w), 0.0, 1e-200)[0],
        "unexplained": _cause("mismatch", "torch", w, 1.0000001, 1.0)[0],
    }
    assert causes == {k: k for k in causes}


def test_real_fuzz_finds_domains_and_refusals(fuzz_1000):
    # (the "where-traps" this once found, e.g. Max(v, log(x)) at x < 0, were the old oracle
    # calling a gradient finite where the model itself is NaN: the certified oracle says domain)
    # fuzz(400, seed=0): the first 400 draws of the module's fuzz(1000, seed=0), not run again
    report = fuzz_1000[2]
    first = [d for d in report.disagreements if 0 <= d.index < 400]
    assert {"domain", "unsupported"} <= {d.cause for d in first}
    assert not [d for d in first if d.cause == "unexplained"]


def test_a_report_s_first_draws_are_the_shorter_fuzz_s(fuzz_20, fuzz_1000):
    """What the test above relies on: ``fuzz(n)``'s disagreements are the first n draws' of a
    longer run with the same seed, each with its draw's index (here fuzz(20) against the
    module's fuzz(1000), both seed 0)."""
    short, long = fuzz_20, fuzz_1000[2]
    assert short.disagreements and all(0 <= d.index < 20 for d in short.disagreements)
    assert short.disagreements == [d for d in long.disagreements if d.index < 20]
