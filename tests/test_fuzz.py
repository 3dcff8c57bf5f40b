import sympy as sp

from symgrad.cli import main
from symgrad.fuzz import _cause, fuzz


def test_fuzz_1000_has_no_crash_and_no_unexplained_disagreement(capsys):
    """`symgrad fuzz --budget 1000` as CI runs it (~12 s on 2 cores)."""
    assert main(["fuzz", "--budget", "1000", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "expressions verified" in out and "UNEXPLAINED" not in out


def test_same_seed_same_report():
    a, b = fuzz(60, seed=3), fuzz(60, seed=3)
    assert [d.reproducer for d in a.disagreements] == [d.reproducer for d in b.disagreements]


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


def test_real_fuzz_finds_domains_and_refusals():
    # (the "where-traps" this once found, e.g. Max(v, log(x)) at x < 0, were the old oracle
    # calling a gradient finite where the model itself is NaN: the certified oracle says domain)
    report = fuzz(400, seed=0)
    found = {d.cause for d in report.disagreements}
    assert {"domain", "unsupported"} <= found
    assert not report.unexplained
