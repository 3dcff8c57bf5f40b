"""Root causes: every disagreement gets a class and a one-line explanation.

Classes: real derivative error, known torch convention, saturation/clamping inside torch,
precision loss, overflow, domain. Besides the rules by failure kind, a catalogue holds what
symgrad found on torch's own functional ops, each recognised from the model's intermediates at
the failing sample (and each with a regression test in tests/test_causes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp

from .model import Model


@dataclass(frozen=True)
class Cause:
    klass: str  # real derivative error / known torch convention / saturation/clamping inside
    #             torch / precision loss / overflow / domain
    name: str
    explanation: str


def by_kind(kind: str, backend: str, has_branch: bool, got: float,
            expected: float) -> Cause | None:
    """The cause implied by the failure kind alone (None: look further)."""
    if kind == "domain":
        return Cause("domain", "domain", "the model is undefined at the sample (log/sqrt of a "
                                         "negative, division by zero): not a backend error")
    if kind == "overflow":
        return Cause("overflow", "overflow", "the exact value exceeds the dtype's range")
    if kind == "kink":
        return Cause("known torch convention", "kink", "a kink: the backend picked one "
                     "subgradient (torch.relu: H(0) = 0; torch.maximum: 1/2)")
    if kind == "precision loss":
        return Cause("precision loss", "cancellation", "the computation as written cancels "
                     "here; the error is within its rounding bound")
    if kind == "non-finite":
        if np.isnan(got) and has_branch:
            return Cause("known torch convention", "where-trap",
                         "NaN from the branch not taken (torch.where / Max evaluate both sides; "
                         "a NaN there poisons the gradient)")
        return Cause("overflow", "intermediate overflow", f"{backend} overflowed (or hit 0/0, "
                     "inf-inf) in an intermediate although the exact value is finite")
    if kind == "mismatch" and got == 0 and abs(expected) < 1e-150:
        return Cause("overflow", "flushed to zero", f"{backend} flushed a tiny value to 0 after "
                     "an intermediate over- or underflowed (exp of a huge argument)")
    return None


REAL_ERROR = Cause("real derivative error", "mismatch", "outside the rounding-error bound with "
                   "no known cause: the gradient is wrong")


@dataclass(frozen=True)
class Entry:
    """A torch behaviour symgrad found, recognised from intermediate values at the sample."""

    cause: Cause
    backends: tuple[str, ...]
    applies: Callable[[dict[str, list], float], str | None]  # (op values, relative error)


def _bce_clamp(ops: dict, rel: float) -> str | None:
    for p, _ in ops.get("sigmoid", []):
        if p * (1 - p) < 1e-12 and rel > 1e-3:  # a clamp is gross, not a few digits
            return f"p(1-p) = {float(p * (1 - p)):.3g}"
    return None


def _softplus_threshold(ops: dict, rel: float) -> str | None:
    for _, args in ops.get("softplus", []):
        if args and args[0] > 20:
            return f"softplus argument {float(args[0]):.4g} > 20"
    return None


def _saturated_logit(ops: dict, rel: float) -> str | None:
    for _, args in ops.get("sigmoid", []):
        if args and abs(args[0]) > 4 and rel < 1e-3:  # loss grows like e^|z|
            return f"logit {float(args[0]):.4g}"
    return None


CATALOGUE = (
    Entry(Cause("saturation/clamping inside torch", "BCELoss clamp",
                "nn.BCELoss's backward divides by max(p(1-p), 1e-12) (and clamps log at -100): "
                "at a saturated sigmoid its gradient is wrong"), ("torch_fn",), _bce_clamp),
    Entry(Cause("known torch convention", "softplus threshold",
                "torch's softplus returns x (gradient 1) above threshold=20: an approximation "
                "with relative error up to e^-20 = 2e-9"), ("torch_fn",), _softplus_threshold),
    Entry(Cause("precision loss", "saturated logit",
                "torch's BCE-with-logits / sigmoid paths lose digits at a saturated logit "
                "(they subtract nearly equal numbers); log-sigmoid forms do not"), ("torch_fn",),
          _saturated_logit),
)


def op_values(model: Model, point: dict) -> dict[str, list]:
    """Exact values of the sigmoid/softplus intermediates at one sample, by op:
    ``{op: [(value, [operand value]), ...]}`` (empty when the point was truncated)."""
    from .errors import SymgradError
    from .verify import exact_steps
    wanted = [n for n in model.display_graph.nodes
              if getattr(n.symbol, "op", "") in ("sigmoid", "softplus")]
    if not wanted:
        return {}
    try:
        env = exact_steps(model, point, dps=40)
    except SymgradError:  # a large block stored truncated in the failure
        return {}
    found: dict[str, list] = {}
    for n in wanted:
        found.setdefault(n.symbol.op, []).append((env[n.symbol], [env[n.operands[0]]]))
    return found


def classify(model: Model, failure) -> Cause:
    """The root cause of one failure (a ``symgrad.result.Failure``)."""
    has_branch = any(n.expr.has(sp.Piecewise, sp.Max, sp.Min) for n in model.graph.nodes)
    cause = by_kind(failure.kind, failure.backend, has_branch, failure.got, failure.expected)
    if cause is not None:
        return cause
    entries = [e for e in CATALOGUE if failure.backend in e.backends]
    if entries:
        ops = op_values(model, failure.point)
        rel = abs(failure.got - failure.expected) / max(abs(failure.expected), 1e-300)
        for e in entries:
            detail = e.applies(ops, rel)
            if detail:
                return Cause(e.cause.klass, e.cause.name, f"{e.cause.explanation} ({detail})")
    return REAL_ERROR
