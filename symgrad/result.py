"""Result dataclasses of a verification and their text table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from .compare import (EXPLANATIONS, FAILING, INCONCLUSIVE, KINK, LOSS, STATUS_NAMES, SUSPECT,
                      Comparison, dtype_info, ulp)
from .config import OWN_BACKENDS, VerifyConfig

PASS, FAIL, UNDECIDED = "pass", "fail", "inconclusive"  # the three outcomes of a run
VERDICTS = (PASS, FAIL, UNDECIDED)
UNRESOLVED = (INCONCLUSIVE, SUSPECT)  # statuses that are neither ok nor failing
OWN_LABEL = "symgrad's own program"  # how a non-deciding own backend is labelled
HVP_VALUE, HVP_PREFIX = "g·v", "Hv:"  # output names at order 2 (symgrad.hvp)


def verdict_of(statuses) -> str:
    """The three-valued verdict of status arrays (one per deciding backend).

    Arguments:
        statuses: iterable of status arrays (``Comparison.status``).
    Returns:
        "fail" when any entry is failing (``compare.FAILING``); otherwise "inconclusive" when
        any entry is inconclusive or suspect; otherwise "pass" (ok, precision-loss warnings and
        accepted kinks pass).

    >>> import numpy as np
    >>> from symgrad.compare import OK, INCONCLUSIVE, MISMATCH
    >>> verdict_of([np.array([OK, INCONCLUSIVE])]), verdict_of([np.array([INCONCLUSIVE, MISMATCH])])
    ('inconclusive', 'fail')
    """
    statuses = list(statuses)
    if any(np.isin(st, FAILING).any() for st in statuses):
        return FAIL
    if any(np.isin(st, UNRESOLVED).any() for st in statuses):
        return UNDECIDED
    return PASS


def deciding_backends(names) -> list[str]:
    """The backends whose findings decide the verdict: the user's code (any backend that is
    not one of symgrad's own programs, ``config.OWN_BACKENDS``) when the run has some; else
    symgrad's own programs. Own programs of a run that verifies user code are still compared
    and shown, but a symgrad-own overflow or rounding excess says nothing about the user's code.

    >>> deciding_backends(["numpy", "torch", "torch_fn"]), deciding_backends(["numpy", "torch"])
    (['torch_fn'], ['numpy', 'torch'])
    """
    names = list(names)
    user = [n for n in names if n not in OWN_BACKENDS]
    return user or names


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

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.kind]

    def message(self) -> str:
        what = ("the loss value" if self.output == "value"
                else "the directional derivative g·v of the gradient" if self.output == HVP_VALUE
                else f"the Hessian-vector product with respect to {self.output[3:]}"
                if self.output.startswith(HVP_PREFIX)
                else f"the gradient with respect to {self.output[3:]}")
        return (f"{self.backend}: {self.kind} in {what} at sample {self.sample} "
                f"({_point(self.point)}): expected {self.expected!r}, got {self.got!r}, "
                f"error {_fmt(self.ulps)} ULPs (allowed {_fmt(self.allowed_ulps)})"
                + (f"; {self.note}" if self.note else "")
                + (f" [cause: {self.cause}]" if self.cause else ""))

    def as_dict(self) -> dict:
        return {"backend": self.backend, "kind": self.kind, "output": self.output,
                "sample": self.sample, "point": self.point, "expected": self.expected,
                "got": self.got, "ulps": _json_float(self.ulps),
                "allowed_ulps": _json_float(self.allowed_ulps), "explanation": self.explanation,
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

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Result:
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
        """Entries per status (every status of ``compare.STATUS_NAMES``), for one backend."""
        status = self.comparisons[backend].status
        return {STATUS_NAMES[k]: int((status == k).sum()) for k in STATUS_NAMES}

    def total_counts(self) -> dict[str, int]:
        """Entries per status summed over the backends."""
        out = {name: 0 for name in STATUS_NAMES.values()}
        for b in self.comparisons:
            for name, n in self.counts(b).items():
                out[name] += n
        return out

    def measures(self, backend: str, cols: slice | None = None) -> "Measures":
        """Absolute error, allowance, error/allowance, relative error and shown ULPs per entry
        (of the columns ``cols``; all by default). Memoised whole for results up to
        ``MEASURE_WHOLE`` entries; above (GPT-2: 163M entries, five float64 arrays would take
        6.5 GB per backend) computed for the columns asked, every time."""
        comp = self.comparisons[backend]
        if comp.status.size <= MEASURE_WHOLE:
            key = ("measures", backend)
            if key not in self._memo:
                self._memo[key] = measures(comp, self.config)
            m = self._memo[key]
            return m if cols is None else Measures(*(a[:, cols] for a in (
                m.error, m.allowed, m.ratio, m.relative, m.ulps, m.comparable, m.exact)))
        return measures(comp, self.config, cols if cols is not None else slice(None))

    def _chunks(self, backend: str, cols: slice | None):
        """Column slices of ``cols`` of at most ``MEASURE_CHUNK`` entries each."""
        comp = self.comparisons[backend]
        n, width = comp.status.shape
        a, b, _ = (cols or slice(None)).indices(width)
        if comp.status.size <= MEASURE_WHOLE:
            yield slice(a, b)
            return
        step = max(1, MEASURE_CHUNK // max(n, 1))
        for c in range(a, b, step):
            yield slice(c, min(b, c + step))

    def _stats(self, backend: str, cols: slice | None) -> dict:
        """worst ULPs, worst error/allowance, worst relative error over ``cols`` (memoised)."""
        width = self.comparisons[backend].status.shape[1]
        a, b, _ = (cols or slice(None)).indices(width)
        key = ("stats", backend, a, b)
        if key not in self._memo and self.comparisons[backend].status.size > MEASURE_WHOLE:
            self._scan(backend)  # one pass for every row group, the whole and the median
        if key not in self._memo:
            self._memo[key] = self._fold([self.measures(backend, part)
                                          for part in self._chunks(backend, slice(a, b))])
        return self._memo[key]

    @staticmethod
    def _fold(parts, into: dict | None = None) -> dict:
        """Fold chunk measures into (worst ULPs, worst error/allowance, worst relative error,
        the entry test's resolution: the smallest allowance / |exact| over comparable entries
        with a nonzero exact value)."""
        st = dict(into or {"worst_ulps": 0.0, "worst_ratio": 0.0, "worst_rel": 0.0,
                           "resolution": float("inf")})
        for m in parts:
            u = m.ulps
            finite = u[np.isfinite(u)]
            st["worst_ulps"] = float("inf") if finite.size < u.size else max(
                st["worst_ulps"], float(finite.max()) if finite.size else 0.0)
            st["worst_ratio"] = max(st["worst_ratio"], _masked_max(m.ratio, m.comparable))
            st["worst_rel"] = max(st["worst_rel"], _masked_max(m.relative, m.comparable))
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                res = np.where(m.comparable & (m.exact > 0) & np.isfinite(m.allowed),
                               m.allowed / m.exact, np.inf)
            if res.size:
                st["resolution"] = min(st["resolution"], float(np.nanmin(res)))
        return st

    def _scan(self, backend: str) -> None:
        """A large result's one pass over its columns, chunk by chunk within each row group
        (the value, each parameter block): the stats of every group and of the whole, and the
        median ULPs (over float32 copies: 0.65 GB at GPT-2's size)."""
        width = self.comparisons[backend].status.shape[1]
        groups = [(0, 1)] + [(a, b) for _, a, b in self.blocks]
        whole, ulps = None, []
        for a, b in groups:
            st = None
            for part in self._chunks(backend, slice(a, b)):
                m = self.measures(backend, part)
                st = self._fold([m], st)
                whole = self._fold([m], whole)
                ulps.append(m.ulps.astype(np.float32).reshape(-1))
            self._memo[("stats", backend, a, b)] = st or self._fold([])
        if groups[-1][1] == width and all(x[1] == y[0] for x, y in zip(groups, groups[1:])):
            self._memo[("stats", backend, 0, width)] = whole or self._fold([])
            u = np.concatenate(ulps) if ulps else np.zeros(0, np.float32)
            self._memo[("median", backend, 0, width)] = float(np.median(u)) if u.size else 0.0

    def summary(self, backend: str) -> dict:
        """How close ``backend`` came to failing: the worst error relative to its allowance, the
        worst relative error in the dtype's digits, and the entries per status."""
        comp = self.comparisons[backend]
        info = dtype_info(comp.dtype)
        st = self._stats(backend, None)
        ratio, rel = st["worst_ratio"], st["worst_rel"]
        dtype_digits = float(np.log10(2.0 / info.eps))
        digits = dtype_digits if rel == 0 else float(np.clip(-np.log10(rel), 0, dtype_digits))
        verdict = self.backend_verdict(backend)
        return {"backend": backend, "dtype": comp.dtype, "ok": verdict == PASS,
                "verdict": verdict, "decides": self.decides(backend),
                "worst_error_over_allowance": ratio, "worst_relative_error": rel,
                "worst_correct_digits": round(digits, 2),
                "dtype_digits": round(dtype_digits, 2), "counts": self.counts(backend),
                "resolution": self.resolution(backend)}

    def resolution(self, backend: str) -> dict:
        """The smallest backward scale error (got = (1 + s) * exact on every gradient entry)
        this run's tests could have caught on ``backend``.

        The entry test sees it where s * |exact| exceeds the allowance: s_entry is the smallest
        allowance / |exact| over the comparable gradient entries with a nonzero exact value.
        The block test compares each block with the sample's other blocks (common mode), so a
        scale shared by every block is not its to see; the pooled test's threshold is not
        exposed by ``compare.systematic_blocks`` and is not counted (it needs more than
        pooled_sigmas^2 effective samples to fire at all).

        Arguments:
            backend: a backend of this result.
        Returns:
            {"entry": s_entry (None where no entry resolves any scale), "tests": "entry",
            "dtype", "samples": samples compared, "text": one line in words}.
        """
        comp = self.comparisons[backend]
        s_entry = min((self._stats(backend, slice(a, b))["resolution"]
                       for _, a, b in self.blocks), default=float("inf"))
        n = int(comp.status.shape[0])
        at = f"in {comp.dtype} at {n} sample{'s' * (n != 1)}"
        if np.isfinite(s_entry):
            text = (f"a backward scale error (got = (1 + s) x exact) below {s_entry:.2g} "
                    f"relative would not be seen {at} (entry test; the pooled test is not "
                    "counted)")
        else:
            text = f"no gradient entry resolves a backward scale error {at}"
        return {"entry": float(s_entry) if np.isfinite(s_entry) else None, "tests": "entry",
                "dtype": comp.dtype, "samples": n, "text": text}

    def worst_ulps(self, backend: str, cols: slice | None = None) -> float:
        """The largest error in ULPs (at an exact zero: ULPs of the scale of its terms)."""
        return self._stats(backend, cols)["worst_ulps"]

    def median_ulps(self, backend: str, cols: slice | None = None) -> float:
        comp = self.comparisons[backend]
        a, b, _ = (cols or slice(None)).indices(comp.status.shape[1])
        key = ("median", backend, a, b)
        if key not in self._memo and comp.status.size > MEASURE_WHOLE and (a, b) == (
                0, comp.status.shape[1]):
            self._scan(backend)
        if key not in self._memo:
            big = comp.status.size > MEASURE_WHOLE
            parts = [self.measures(backend, c).ulps for c in self._chunks(backend, slice(a, b))]
            parts = [p.astype(np.float32).reshape(-1) if big else p.reshape(-1) for p in parts]
            u = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self._memo[key] = float(np.median(u)) if u.size else 0.0
        return self._memo[key]

    def worst_ratio(self, backend: str, cols: slice | None = None) -> float:
        """The largest error / allowance over comparable entries (> 1 fails)."""
        return self._stats(backend, cols)["worst_ratio"]

    def locate(self, finding: "Failure") -> tuple[int, int]:
        """(row, column) of a finding in the comparison arrays: O(log n) in the samples, O(1)
        in the entries for a finding that carries its column (every one the pipeline makes)."""
        row = int(np.searchsorted(self.oracle_samples, finding.sample))
        if finding.column >= 0:
            return row, finding.column
        if "column_of" not in self._memo:  # a hand-made finding: one index, built once
            self._memo["column_of"] = {name: k for k, name in enumerate(self.outputs)}
        return row, self._memo["column_of"][finding.output]

    def measure(self, finding: "Failure") -> dict:
        """A finding's absolute error, allowance, error/allowance and relative error."""
        i, k = self.locate(finding)
        m = self.measures(finding.backend, slice(k, k + 1))
        return {"error": float(m.error[i, 0]), "allowed": float(m.allowed[i, 0]),
                "error_over_allowance": float(m.ratio[i, 0]),
                "relative_error": float(m.relative[i, 0]), "ulps": float(m.ulps[i, 0])}

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

    def _row_verdict(self, cols: slice, names: list[str]) -> str:
        """The verdict of one row over the backends ``names``: FAIL, inconclusive (with how
        many inconclusive / suspect entries), ok (precision loss / kink) or ok."""
        verdict, unresolved, suspect = "ok", 0, 0
        for name in names:
            st = self.comparisons[name].status[:, cols]
            unresolved = max(unresolved, int((st == INCONCLUSIVE).sum()))  # per backend
            suspect = max(suspect, int((st == SUSPECT).sum()))
            if np.isin(st, FAILING).any():
                verdict = "FAIL"
            elif verdict == "ok" and (st == LOSS).any():
                verdict = "ok (precision loss)"
            elif verdict == "ok" and (st == KINK).any():
                verdict = "ok (kink)"
        if verdict != "FAIL" and (unresolved or suspect):  # never "ok" for what is undecided
            parts = ([f"suspect: {_entries(suspect)}"] if suspect else []) + (
                [_entries(unresolved) if not suspect else f"{unresolved} inconclusive"]
                if unresolved else [])
            verdict = f"inconclusive ({', '.join(parts)} in one backend)"
        return verdict

    def rows(self) -> list[dict]:
        """One row per output group: the value, then each parameter block. The verdict column
        is the deciding backends'; symgrad's own programs' findings, where they do not decide,
        are added after it ("ok; symgrad's own program: FAIL")."""
        value, prefix = (HVP_VALUE, HVP_PREFIX) if self.config.order == 2 else ("value", "d/d")
        groups = [(value, slice(0, 1))] + [(f"{prefix}{name}", slice(a, b))
                                           for name, a, b in self.blocks]
        deciding = self.deciding
        apart = [n for n in self.comparisons if n not in deciding]
        rows = []
        for label, cols in groups:
            row = {"output": label}
            for name in self.comparisons:
                row[f"{name} worst ULPs"] = self.worst_ulps(name, cols)
                row[f"{name} error/allowed"] = self.worst_ratio(name, cols)
            verdict = self._row_verdict(cols, deciding)
            if apart:
                own = self._row_verdict(cols, apart)
                if not own.startswith("ok"):
                    verdict += f"; {OWN_LABEL}: {own}"
            row["verdict"] = verdict
            rows.append(row)
        return rows

    def _verdict_lines(self) -> list[str]:
        """Which backends decide, and why the verdict is inconclusive (if it is)."""
        lines = []
        apart = [n for n in self.comparisons if n not in self.deciding]
        if apart:
            lines.append(f"  decided by {', '.join(self.deciding)} (the code verified); "
                         f"{OWN_LABEL}s ({', '.join(apart)}) are compared and shown apart: "
                         "their findings do not decide the verdict")
        if self.verdict == UNDECIDED:
            n_inc = sum(int((self.comparisons[b].status == INCONCLUSIVE).sum())
                        for b in self.deciding)
            n_sus = sum(int((self.comparisons[b].status == SUSPECT).sum())
                        for b in self.deciding)
            lines.append(f"  INCONCLUSIVE: {n_inc} inconclusive and {n_sus} suspect entr"
                         f"{'y' if n_inc + n_sus == 1 else 'ies'} in the deciding backends, "
                         "none failing: not proven wrong, not proven right (never counted as "
                         "a pass)")
        return lines

    def __str__(self) -> str:
        head = (f"symgrad: {self.model} — {self.verdict.upper()} "
                f"({len(self.oracle_samples)} of {self.config.samples} samples checked against "
                "the exact derivative, "
                + ("order 2: Hessian-vector products H v, a random v per sample, "
                   if self.config.order == 2 else "") +
                f"{self.config.dtype} on {self.config.device}, seed {self.config.seed})")
        table = tabulate([{k: (_fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys")
        lines = [head, table] + self._verdict_lines()
        for name in self.comparisons:
            s = self.summary(name)
            counts = ", ".join(f"{n} {v}" for n, v in s["counts"].items() if v)
            who = "" if s["decides"] else f" ({OWN_LABEL}, not deciding)"
            lines.append(f"  {name}{who}: {s['verdict']}; worst error "
                         f"{_fmt(s['worst_error_over_allowance'])} of its "
                         f"allowance, {s['worst_correct_digits']:.1f} of {s['dtype_digits']:.1f} "
                         f"digits correct; entries: {counts}")
            lines.append(f"    resolution: {s['resolution']['text']}")
        resolution = {c.resolution for c in self.comparisons.values() if c.resolution}
        for text in sorted(resolution):
            lines.append(f"  resolution not reached: {text}")
        for name, comp in self.comparisons.items():  # refuted or untested suspicions
            notes = getattr(comp, "unconfirmed", ())
            for note in notes[:3]:
                lines.append(f"  unconfirmed suspicion (fails nothing): {note}")
            if len(notes) > 3:
                lines.append(f"  ({len(notes) - 3} more unconfirmed suspicion(s) on {name})")
        n = self.finding_counts()
        fails = self.findings("failures")
        mine = [f for f in fails if self.decides(f.backend)]
        theirs = [f for f in fails if not self.decides(f.backend)]
        for f in mine:
            lines.append("  " + f.message())
        if theirs:
            lines.append(f"  {OWN_LABEL} findings (shown apart, not deciding):")
            for f in theirs:
                lines.append(f"    [{OWN_LABEL}] " + f.message())
        if n["failures"] > len(fails):
            lines.append(f"  (showing {len(fails)} of {n['failures']} failing entries)")
        warns = self.findings("warnings")
        if n["warnings"]:
            lines.append(f"  {n['warnings']} precision-loss warning(s), the worst: "
                         + warns[0].message())
        if n["kinks"]:
            lines.append(f"  {n['kinks']} entr(y/ies) at a kink accepted, e.g. "
                         + self.kinks[0].message())
        shown = [f for f in self.undecided if self.decides(f.backend)][:3]
        if shown:
            undecided = sum(int(np.isin(self.comparisons[b].status, (INCONCLUSIVE, SUSPECT)).sum())
                            for b in self.deciding)
            lines.append(f"  {undecided} inconclusive entr{'y' if undecided == 1 else 'ies'} in "
                         "the deciding backends, e.g.:")
            lines += ["    " + f.message() for f in shown]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        """Jupyter display: the verdict and the table per parameter."""
        table = tabulate([{k: (_fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys", tablefmt="github")
        head = f"**{self.model}: {self.verdict.upper()}**"
        notes = "".join(f"\n{line.strip()}\n" for line in self._verdict_lines())
        fails = "".join(f"\n- {'' if self.decides(f.backend) else f'[{OWN_LABEL}] '}"
                        f"{f.message()}" for f in self.failures)
        return f"{head}\n\n{table}\n{notes}{fails}"

    def as_dict(self) -> dict:
        """JSON-ready; deterministic for the same seed and versions (times kept apart)."""
        return {
            "model": self.model, "ok": self.ok, "verdict": self.verdict,
            "deciding": list(self.deciding), "config": self.config.as_dict(),
            "oracle_samples": len(self.oracle_samples),
            "samples_drawn": self.config.samples,  # the rest of the drawn ones run unchecked
            "samples_checked_by_oracle": len(self.oracle_samples),
            "program_size": self.program_size,
            "rows": [{k: _json_float(v) for k, v in r.items()} for r in self.rows()],
            "backends": {n: {"dtype": r.dtype, "device": r.device, "mode": r.mode,
                             "counts": self.counts(n),
                             "median_ulps": _json_float(self.median_ulps(n)),
                             "unconfirmed": list(self.comparisons[n].unconfirmed),
                             "resolution_not_reached": self.comparisons[n].resolution,
                             "confirmed": [f.describe() for f in self.comparisons[n].systematic
                                           if f.confirmed] + list(self.comparisons[n].evidence),
                             **{k: _json_float(v) for k, v in self.summary(n).items()
                                if k not in ("backend", "dtype", "counts")}}
                         for n, r in self.runs.items() if n in self.comparisons},
            "finding_counts": self.finding_counts(),
            "failures": [f.as_dict() for f in self.failures],
            "precision_losses": [f.as_dict() for f in self.precision_losses],
            "kinks": [f.as_dict() for f in self.kinks],
            "inconclusive": [f.as_dict() for f in self.undecided],
            "oracle_bits": self.oracle_bits,
        }


@dataclass(frozen=True)
class Measures:
    """Per-entry figures of one backend for reports, arrays of shape (N, K)."""

    error: np.ndarray  # |got - exact|, absolute
    allowed: np.ndarray  # the allowance, absolute
    ratio: np.ndarray  # error / allowance (> 1 fails)
    relative: np.ndarray  # error / |exact|; at an exact (near-)zero, error / E (terms' scale)
    ulps: np.ndarray  # error in ULPs of |exact|; at an exact zero, in ULPs of E
    comparable: np.ndarray  # exact value finite, not a kink, inconclusive or suspect: ratio
    #                         means something
    exact: np.ndarray | None = None  # |exact|


MEASURE_WHOLE = 20_000_000  # entries: up to here a Result memoises its measures whole
MEASURE_CHUNK = 1 << 22  # entries measured at once above that


def measures(comp: Comparison, config: VerifyConfig, cols: slice = slice(None)) -> Measures:
    """Error figures that mean something at every entry, including exact zeros (where ULPs of
    zero would count subnormal steps): there the error is measured against the scale E of the
    terms that produced the zero, the bound's own scale. ``cols``: only those columns."""
    info, tol = dtype_info(comp.dtype), config.tolerance

    def part(a):
        return None if a is None else np.asarray(a)[:, cols]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        exact = np.asarray(part(comp.expected), dtype=np.float64)
        got, status, comp_ulps = part(comp.got), part(comp.status), part(comp.ulps)
        error = (part(comp.error) if comp.error is not None else np.abs(got - exact))
        allowed = (part(comp.allowed_abs) if comp.allowed_abs is not None
                   else part(comp.allowed_ulps) * ulp(exact, comp.dtype))
        scale_e = np.maximum((allowed - tol.floor * info.tiny) / (tol.safety * info.eps / 2),
                             info.tiny)  # E, the magnitude of the terms
        # an exact value below the rounding scale of its own terms (zero, or nearly zero by
        # cancellation) has no meaningful relative error: measure it against the terms
        zero = np.abs(exact) <= (info.eps / 2) * scale_e
        scale = np.where(zero, scale_e, np.abs(exact))
        relative = error / scale
        ulps = np.where(zero, error / ulp(scale_e, comp.dtype), comp_ulps)
        ratio = np.where(allowed > 0, error / allowed, np.where(error == 0, 0.0, np.inf))
        # kinks (any subgradient is exact), inconclusive and suspect entries (neither ok nor
        # failing: not decided) have no meaningful ratio
        excused = [k for k, name in STATUS_NAMES.items()
                   if name in ("kink", "inconclusive", "suspect")]
        comparable = np.isfinite(exact) & ~np.isin(status, excused)
        ratio = np.where(np.isfinite(got), ratio, np.inf)
        ulps = np.where(np.isfinite(got), ulps, np.inf)
    return Measures(error, allowed, ratio, relative, ulps, comparable, np.abs(exact))


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def undecided_note(comp: Comparison, row: int, col: int) -> str:
    """Why an inconclusive entry could not be decided, in words."""
    if comp.undecided and row in comp.undecided:
        return comp.undecided[row]
    allowed = None if comp.allowed_abs is None else float(comp.allowed_abs[row, col])
    exact = float(comp.expected[row, col])
    if allowed is not None and allowed >= abs(exact):
        return (f"its allowance {allowed:.3g} is at least the exact value itself: 0 or a "
                f"flipped sign would pass too, so {comp.dtype} cannot resolve this entry here "
                "(its terms cancel, or the bound is loose at this depth)")
    notes = getattr(comp, "unconfirmed", ())
    if notes:
        return f"beyond the fast bound or flagged, neither confirmed nor refuted: {notes[0]}"
    return "the oracle could not certify this entry within its precision cap"


def _masked_max(values: np.ndarray, mask: np.ndarray) -> float:
    """The max over ``mask`` (NaN entries ignored; inf is a non-finite result and counts)."""
    v = values[mask]
    v = v[~np.isnan(v)]
    return float(v.max()) if v.size else 0.0


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if not np.isfinite(v):
        return "inf" if v > 0 else str(v)
    return f"{v:.3g}"


def _json_float(v):
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


POINT_BLOCKS_SHOWN = 6  # a message shows at most this many blocks of a sample's point


def _point(point: dict) -> str:
    """A sample's point for a one-line message. Blocks are in the model's order, parameters
    first: beyond ``POINT_BLOCKS_SHOWN`` blocks (a GPT has 38) only the last ones - the inputs -
    are shown, and the rest is counted (the JSON keeps every block)."""
    parts = []
    items = list(point.items())
    if len(items) > POINT_BLOCKS_SHOWN:
        hidden = len(items) - (POINT_BLOCKS_SHOWN - 2)
        parts.append(f"{hidden} earlier blocks as drawn (all in the JSON)")
        items = items[hidden:]
    for k, v in items:
        if isinstance(v, dict):
            v = v["first"]
        if isinstance(v, list):
            flat = np.asarray(v).ravel()
            shown = ", ".join(f"{x:.6g}" for x in flat[:4]) + (", …" if flat.size > 4 else "")
            parts.append(f"{k}=[{shown}]")
        else:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)
