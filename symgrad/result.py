"""Result dataclasses of a verification: ``Failure`` (one disagreement), ``BackendRun`` and
``Result`` (its verdict and counts here; its measures in ``symgrad.measures``, its text table and
JSON in ``symgrad.result_text``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compare import EXPLANATIONS, FAILING, KINK, LOSS, STATUS_NAMES, Comparison
from .config import VerifyConfig
from .errors import SymgradError
from .measures import MEASURE_CHUNK, MEASURE_WHOLE, Measures, ResultMeasures, measures
from .result_text import (HVP_PREFIX, HVP_VALUE, LINE_CHARS, POINT_CHARS, ResultText, fmt,
                          json_float, point_text, short_note)
from .verdict import (FAIL, OWN_LABEL, PASS, UNDECIDED, UNRESOLVED, VERDICTS, deciding_backends,
                      verdict_of)

__all__ = ["FAIL", "MEASURE_CHUNK", "MEASURE_WHOLE", "OWN_LABEL", "PASS", "UNDECIDED",
           "UNRESOLVED", "VERDICTS", "BackendRun", "Failure", "Measures", "Result",
           "deciding_backends", "measures", "undecided_note", "verdict_of"]


@dataclass(frozen=True)
class Failure:
    """One disagreement: which backend, which output, which sample, expected vs got, in ULPs."""

    backend: str
    kind: str  # mismatch / non-finite / domain / precision loss
    output: str  # "value" or "d/d<entry>"
    sample: int
    point: dict  # block name -> value(s) at this sample
    expected: float
    got: float
    ulps: float
    allowed_ulps: float
    note: str = ""  # e.g. at a kink, which convention the backend used
    cause: str = ""  # root-cause class and name (symgrad.causes)
    column: int = field(default=-1, compare=False)  # its column in the comparison arrays
    #  (-1: look the output name up); O(1) where GPT-2 has 163M columns
    allowed_abs: float = field(default=float("nan"), compare=False)  # the allowance itself
    #  (NaN: not kept); a line at an exact value within it reads absolute, not in its ULPs

    @property
    def explanation(self) -> str:
        """What the kind means, then the finding's whole note (its cause's explanation, the
        proof): what the one line (``message``) leaves out; the JSON's "explanation"."""
        return EXPLANATIONS[self.kind] + (f" — {self.note}" if self.note else "")

    def message(self) -> str:
        what = ("the loss value" if self.output == "value"
                else "the directional derivative g·v of the gradient" if self.output == HVP_VALUE
                else f"the Hessian-vector product with respect to {self.output[3:]}"
                if self.output.startswith(HVP_PREFIX)
                else f"the gradient with respect to {self.output[3:]}")
        # the numbers first, the sample's values last and shortened (point_text; the JSON
        # keeps them whole): one line a reader takes in at a glance
        head = (f"{self.backend}: {self.kind} in {what} at sample {self.sample}: "
                f"expected {self.expected!r}"
                + (" (one side's value), " if self.kind == "kink" else ", ")
                + f"got {self.got!r}"
                # at an accepted kink the ULPs against one side mean nothing (inf, 1e308): the
                # note says where the value lies across the subgradient (newuser4 S3-9)
                + ("" if self.kind == "kink" else f", {self._error_text()}")
                + (f"; {short}" if (short := short_note(self.note, self.cause)) else "")
                + (f" [cause: {self.cause}]" if self.cause else ""))
        room = max(POINT_CHARS, LINE_CHARS - len(head) - len("; sample values: "))
        entry = "" if self.output in ("value", HVP_VALUE) else self.output[3:]  # d/d, Hv:
        return head + (f"; sample values: {point_text(self.point, room, entry=entry)}"
                       if self.point else "")

    def _error_text(self) -> str:
        """"error E ULPs (allowed A)"; absolute at an exact 0, whose ULPs count subnormal
        steps (a masked row's leaked 4.8e-08 read "inf ULPs (allowed 1.8e+16)", newuser6),
        but for a warning (``_as_measured``: the table's ULPs of its terms' scale); the
        value's own rule where it decided."""
        if self._by_itself():
            return f"error {fmt(self.ulps)} ULPs (wrong by more than the value itself)"
        if (self.expected == 0 and np.isfinite(self.allowed_abs)  # NaN: not kept
                and self.kind not in ("ok", "precision loss")):
            return (f"error {fmt(abs(self.got))} absolute (allowed {fmt(self.allowed_abs)}; the "
                    "exact value is 0)")
        return f"error {fmt(self.ulps)} ULPs (allowed {fmt(self.allowed_ulps)})"

    def _by_itself(self) -> bool:
        """A loss value decided by its own rule, not the entry allowance: wrong by more than
        the exact value itself (float32 BCELoss's clamped 100 for 20) is a mismatch whatever
        the allowance, so the line says that rule rather than an allowance above the error."""
        return (self.output == "value" and self.kind == "mismatch"
                and not self.ulps > self.allowed_ulps
                and abs(self.got - self.expected) > abs(self.expected))

    def as_dict(self) -> dict:
        return {"backend": self.backend, "kind": self.kind, "output": self.output,
                "sample": self.sample, "point": self.point, "expected": self.expected,
                "got": self.got, "ulps": json_float(self.ulps),
                "allowed_ulps": json_float(self.allowed_ulps), "explanation": self.explanation,
                "note": self.note, "cause": self.cause}


@dataclass(frozen=True)
class BackendRun:
    """How a backend ran: its dtype, batching mode and time."""

    name: str  # numpy / torch / torch_fn
    dtype: str
    device: str
    mode: str  # "vectorised", "vmap", "loop"
    seconds: float
    samples: int


@dataclass
class Result(ResultMeasures, ResultText):
    """Everything a verification found. ``ok`` is the verdict; ``str(result)`` a table."""

    model: str
    config: VerifyConfig
    outputs: list[str]  # "value", then "d/d<entry>" per parameter entry
    blocks: list[tuple[str, int, int]]  # (block name, first column, last column + 1)
    runs: dict[str, BackendRun]
    comparisons: dict[str, Comparison]
    oracle_samples: np.ndarray  # indices of the samples the oracle checked
    failures: list[Failure]
    precision_losses: list[Failure]
    timings: dict[str, float] = field(default_factory=dict)
    program_size: dict[str, int] = field(default_factory=dict)
    worst: list[Failure] = field(default_factory=list)  # worst entries per backend, any status
    kinks: list[Failure] = field(default_factory=list)  # entries at a kink (accepted)
    undecided: list[Failure] = field(default_factory=list)  # inconclusive entries, each with
    #                                                         why it could not be decided
    oracle_bits: dict = field(default_factory=dict)  # bits the certified oracle needed (max,
    #                                                  distribution over samples)
    notes: list[str] = field(default_factory=list)  # how the run was made, in words, where a
    #                          reader could assume otherwise (eval mode, a random cotangent)
    values: dict | None = field(default=None, repr=False, compare=False)  # the drawn samples,
    #                          block -> (N, *shape) (tensor path; a module's departure search)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def deciding(self) -> list[str]:
        """The backends whose findings decide ``verdict`` (``deciding_backends``)."""
        return deciding_backends(self.comparisons)

    def decides(self, backend: str) -> bool:
        """Whether ``backend``'s findings decide the verdict (False: symgrad's own program of
        a run that verifies user code, shown apart)."""
        return backend in self.deciding

    def summary(self, backend: str | None = None) -> dict:
        """How close a backend came to failing (``ResultMeasures.summary``): the worst error
        relative to its allowance, the correct digits, the entries per status.

        Arguments:
            backend: one of the run's backends; None: every backend's.
        Returns:
            That backend's summary dict; for None, backend name -> its summary.

        >>> import symgrad as sg, sympy as sp
        >>> w = sp.Symbol("w")
        >>> r = sg.verify(sg.Model("sq", w**2, params=[w]), samples=4, backends=("numpy",))
        >>> list(r.summary()), r.summary("numpy")["ok"]
        (['numpy'], True)
        """
        if backend is None:
            return {name: super(Result, self).summary(name) for name in self.comparisons}
        if backend not in self.comparisons:
            raise SymgradError(f"summary: backend {backend!r} was not run; this result has "
                               f"{', '.join(map(repr, self.comparisons))} (or call summary() "
                               "for all of them)")
        return super().summary(backend)

    def explain(self, i: int = 0) -> str:
        """The whole of finding ``i`` (``findings()`` order: failures, then precision-loss
        warnings, worst first): its one line, then its explanation (``Failure.explanation``:
        the cause's reasoning and the proof the line names in one word)."""
        found = self.findings()
        if not -len(found) <= i < len(found):
            raise SymgradError(f"explain: finding {i} does not exist; this result has "
                               f"{len(found)} finding(s) (0..{len(found) - 1})")
        return f"{found[i].message()}\n  {found[i].explanation}"

    def backend_verdict(self, backend: str) -> str:
        """pass / fail / inconclusive of one backend's entries (deciding or not)."""
        return verdict_of([self.comparisons[backend].status])

    @property
    def verdict(self) -> str:
        """"pass", "fail" or "inconclusive": fail when a deciding backend has a failing entry,
        inconclusive when one has an inconclusive or suspect entry (and none fails), else pass."""
        return verdict_of(self.comparisons[n].status for n in self.deciding)

    @property
    def ok(self) -> bool:
        """The run passed: ``verdict == "pass"`` (inconclusive is not a pass)."""
        return self.verdict == PASS

    def counts(self, backend: str) -> dict[str, int]:
        """Entries per status (every status of ``compare.STATUS_NAMES``), for one backend,
        counted once per status array (the text table, the JSON and the reports ask for them
        again and again: ten passes over GPT-2's 163M statuses each time had made the text
        table take 10 s after the run)."""
        status = self.comparisons[backend].status
        kept = self._memo.get(("counts", backend))
        if kept is None or kept[0] is not status:  # (a status array replaced: counted again)
            kept = (status, status_counts(status))
            self._memo[("counts", backend)] = kept
        return dict(kept[1])

    def total_counts(self) -> dict[str, int]:
        """Entries per status summed over the backends."""
        out = {name: 0 for name in STATUS_NAMES.values()}
        for b in self.comparisons:
            for name, n in self.counts(b).items():
                out[name] += n
        return out

    def findings(self, kind: str = "all") -> list["Failure"]:
        """Failures then precision-loss warnings (``kind``: all / failures / warnings), each
        list worst first by error / allowance (the lists hold the worst of each backend)."""
        def key(f):
            r = self.measure(f)["error_over_allowance"]
            return -(r if np.isfinite(r) else 1e308)
        fails = sorted(self.failures, key=key)
        warns = sorted(self.precision_losses, key=key)
        return {"all": fails + warns, "failures": fails, "warnings": warns}[kind]

    def finding_counts(self) -> dict[str, int]:
        """How many entries each finding list stands for (all backends), e.g. 604 warnings."""
        c = self.total_counts()
        failing = sum(c[STATUS_NAMES[k]] for k in FAILING)
        return {"failures": failing, "warnings": c[STATUS_NAMES[LOSS]],
                "kinks": c[STATUS_NAMES[KINK]]}


COUNT_CHUNK = 1 << 22  # statuses counted at once


def status_counts(status: np.ndarray) -> dict[str, int]:
    """Entries per status name of an int8 status array, by one bincount per chunk (no
    whole-size comparison or cast).

    >>> status_counts(np.array([[0, 0, 2], [7, 0, 1]], np.int8))["ok"]
    3
    """
    flat = np.asarray(status).reshape(-1)
    counts = np.zeros(max(STATUS_NAMES) + 1, np.int64)
    for a in range(0, flat.size, COUNT_CHUNK):
        part = flat[a:a + COUNT_CHUNK]
        if part.size and (part.min() < 0 or part.max() > max(STATUS_NAMES)):
            raise ValueError(f"status codes must be those of STATUS_NAMES, not "
                             f"{sorted(set(part.tolist()) - set(STATUS_NAMES))}")
        counts += np.bincount(part.view(np.uint8) if part.dtype == np.int8 else part,
                              minlength=counts.size)
    return {STATUS_NAMES[k]: int(counts[k]) for k in STATUS_NAMES}


def undecided_note(comp: Comparison, row: int, col: int) -> str:
    """Why an inconclusive entry could not be decided, in words."""
    if comp.undecided and row in comp.undecided:
        return comp.undecided[row]
    allowed = None if comp.allowed_abs is None else float(comp.allowed_abs[row, col])
    if allowed is None and comp.figures is not None:  # a streamed comparison keeps no
        #   allowance array: this entry's, recomputed as the compare made it (it was read
        #   as the oracle's doing: "could not certify", for GPT-2's cancelling entries)
        allowed = float(comp.figures.absolute(slice(col, col + 1))[1][row, 0])
    exact = float(comp.expected[row, col])
    error = comp.error  # beyond its allowance, an entry is undecided for another reason
    beyond = (allowed is not None and error is not None and col < error.shape[1]
              and float(error[row, col]) > allowed)
    if allowed is not None and allowed >= abs(exact) and not beyond:
        return (f"its allowance {allowed:.3g} is at least the exact value itself: 0 or a "
                f"flipped sign would pass too, so {comp.dtype} cannot resolve this entry here "
                "(its terms cancel, or the bound is loose at this depth)")
    notes = getattr(comp, "unconfirmed", ())
    if notes:
        return f"beyond the fast bound or flagged, neither confirmed nor refuted: {notes[0]}"
    return "the oracle could not certify this entry within its precision cap"
