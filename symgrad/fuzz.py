"""``symgrad fuzz``: random expressions verified end to end, every disagreement classified.

Expressions come from a seeded generator (same seed, same expressions) over the vocabulary of
``symgrad.strategies`` (``UNARY``, ``BINARY``). Each is verified (numpy and torch vs the exact derivative);
each failure gets a root cause. A mismatch has no benign cause and stays *unexplained*: the CLI
exits 1 and prints a minimal reproducer.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .domains import Normal, UndefinedOnDomain
from .causes import by_kind
from .errors import SymgradError
from .model import Model
from .strategies import BINARY, UNARY
from .verify import verify

@dataclass
class Disagreement:
    expression: str
    backend: str
    cause: str  # a root-cause class, or "unexplained"
    explanation: str
    reproducer: str
    index: int = -1  # the draw it came from (model ``fuzz{index}``): a report's first n draws
    #                  are ``fuzz(n)``'s with the same seed (``tests/test_fuzz.py`` reads them)


@dataclass
class FuzzReport:
    budget: int
    seed: int
    verified: int = 0
    agreed: int = 0
    seconds: float = 0.0
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def unexplained(self) -> list[Disagreement]:
        return [d for d in self.disagreements if d.cause == "unexplained"]

    def summary(self) -> str:
        causes = Counter(d.cause for d in self.disagreements)
        lines = [f"symgrad fuzz: {self.verified} expressions verified in {self.seconds:.1f} s "
                 f"(budget {self.budget}, seed {self.seed}); {self.agreed} agreed everywhere",
                 "disagreements by root cause: " + (", ".join(f"{k} {v}" for k, v in
                                                              sorted(causes.items())) or "none")]
        shown = set()
        for d in self.disagreements:
            if d.cause not in shown:
                shown.add(d.cause)
                lines.append(f"  [{d.cause}] {d.explanation}\n    e.g. {d.reproducer}")
        return "\n".join(lines)


def random_expression(rng: np.random.Generator, symbols: list, depth: int) -> sp.Expr:
    """A random well-formed expression; constants are small halves."""
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.8:
            return symbols[rng.integers(len(symbols))]
        return sp.Rational(int(rng.integers(-3, 4)), 2)
    if rng.random() < 0.5:
        name = list(UNARY)[rng.integers(len(UNARY))]
        return UNARY[name](random_expression(rng, symbols, depth - 1))
    name = list(BINARY)[rng.integers(len(BINARY))]
    return BINARY[name](random_expression(rng, symbols, depth - 1),
                        random_expression(rng, symbols, depth - 1))


def _cause(kind: str, backend: str, expr: sp.Expr, got: float,
           expected: float) -> tuple[str, str]:
    """(cause name, explanation) from ``symgrad.causes``; a mismatch stays unexplained."""
    cause = by_kind(kind, backend, expr.has(sp.Piecewise, sp.Max, sp.Min), got, expected)
    if cause is None:
        return ("unexplained", "outside the rounding-error bound with no benign cause: a real "
                               "derivative error or a bound that is too tight")
    return (cause.name, cause.explanation)


def fuzz(budget: int = 100, *, seed: int = 0, samples: int = 20, depth: int = 4,
         progress: bool = False) -> FuzzReport:
    """Verify ``budget`` random expressions of two parameters and one input."""
    if budget < 1:
        raise SymgradError(f"fuzz: budget must be >= 1, got {budget}")
    rng = np.random.default_rng(seed)
    w, v, x = sp.symbols("w v x")
    report = FuzzReport(budget, seed)
    t0 = time.perf_counter()
    for i in range(budget):
        try:
            expr = random_expression(rng, [w, v, x], depth)
        except (ValueError, TypeError, ZeroDivisionError):  # e.g. Max of 1/0: not well-formed
            continue
        if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I):
            continue
        params = [p for p in (w, v) if expr.has(p)]
        if not params:
            continue
        inputs = {x: Normal()} if expr.has(x) else {}
        try:
            model = Model(f"fuzz{i}", expr, params=params, inputs=inputs)
            result = verify(model, samples=samples, seed=i)
        except UndefinedOnDomain as exc:  # the model is undefined where it was drawn
            report.disagreements.append(Disagreement(
                str(expr), "symgrad", "domain", "the model is undefined at samples of its "
                "declared domains (log/sqrt of a negative, division by zero): refused, not a "
                "backend error", f"{expr}: {exc}", i))
            continue
        except SymgradError as exc:  # a clear refusal, not a crash: counted with its reason
            report.disagreements.append(Disagreement(
                str(expr), "symgrad", "unsupported", "symgrad refuses the model with a clear "
                "error (e.g. its derivative needs a function outside the vocabulary)",
                f"{expr}: {exc}", i))
            continue
        report.verified += 1
        if not result.failures:
            report.agreed += 1
        seen = set()
        for f in result.failures:
            cause, why = _cause(f.kind, f.backend, expr, f.got, f.expected)
            if (cause, f.backend) in seen:
                continue
            seen.add((cause, f.backend))
            point = ", ".join(f"{k}={val!r}" for k, val in f.point.items())
            report.disagreements.append(Disagreement(
                str(expr), f.backend, cause, why,
                f"{f.backend}: {f.output} of {expr} at {point}: expected {f.expected!r}, "
                f"got {f.got!r} ({f.kind})", i))
        if progress and (i + 1) % max(1, budget // 20) == 0:
            print(f"\r  fuzz {i + 1}/{budget}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    report.seconds = time.perf_counter() - t0
    return report
