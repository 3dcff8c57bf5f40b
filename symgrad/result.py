"""Result dataclasses of a verification and their text table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from .compare import (EXPLANATIONS, FAILING, INCONCLUSIVE, KINK, LOSS, STATUS_NAMES,
                      Comparison, dtype_info, ulp)
from .config import VerifyConfig


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
    oracle_bits: dict = field(default_factory=dict)  # bits the certified oracle needed (max,
    #                                                  distribution over samples)
    values: dict | None = field(default=None, repr=False, compare=False)  # the drawn samples,
    #                          block -> (N, *shape) (tensor path; a module's departure search)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values())

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
                m.error, m.allowed, m.ratio, m.relative, m.ulps, m.comparable)))
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
        """Fold chunk measures into (worst ULPs, worst error/allowance, worst relative error)."""
        st = dict(into or {"worst_ulps": 0.0, "worst_ratio": 0.0, "worst_rel": 0.0})
        for m in parts:
            u = m.ulps
            finite = u[np.isfinite(u)]
            st["worst_ulps"] = float("inf") if finite.size < u.size else max(
                st["worst_ulps"], float(finite.max()) if finite.size else 0.0)
            st["worst_ratio"] = max(st["worst_ratio"], _masked_max(m.ratio, m.comparable))
            st["worst_rel"] = max(st["worst_rel"], _masked_max(m.relative, m.comparable))
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
        return {"backend": backend, "dtype": comp.dtype, "ok": comp.ok,
                "worst_error_over_allowance": ratio, "worst_relative_error": rel,
                "worst_correct_digits": round(digits, 2),
                "dtype_digits": round(dtype_digits, 2), "counts": self.counts(backend)}

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

    def rows(self) -> list[dict]:
        """One row per output group: the value, then each parameter block."""
        groups = [("value", slice(0, 1))] + [(f"d/d{name}", slice(a, b))
                                             for name, a, b in self.blocks]
        rows = []
        for label, cols in groups:
            row = {"output": label}
            verdict, unresolved = "ok", 0
            for name, comp in self.comparisons.items():
                row[f"{name} worst ULPs"] = self.worst_ulps(name, cols)
                row[f"{name} error/allowed"] = self.worst_ratio(name, cols)
                st = comp.status[:, cols]
                unresolved = max(unresolved, int((st == INCONCLUSIVE).sum()))  # per backend
                if np.isin(st, FAILING).any():
                    verdict = "FAIL"
                elif verdict == "ok" and (st == LOSS).any():
                    verdict = "ok (precision loss)"
                elif verdict == "ok" and (st == KINK).any():
                    verdict = "ok (kink)"
            if verdict != "FAIL" and unresolved:  # never "ok" for what the dtype cannot resolve
                verdict = f"inconclusive ({unresolved} entries in a backend)"
            row["verdict"] = verdict
            rows.append(row)
        return rows

    def __str__(self) -> str:
        head = (f"symgrad: {self.model} — {'OK' if self.ok else 'FAIL'} "
                f"({len(self.oracle_samples)} of {self.config.samples} samples checked against "
                "the exact derivative, "
                f"{self.config.dtype} on {self.config.device}, seed {self.config.seed})")
        table = tabulate([{k: (_fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys")
        lines = [head, table]
        for name in self.comparisons:
            s = self.summary(name)
            counts = ", ".join(f"{n} {v}" for n, v in s["counts"].items() if v)
            lines.append(f"  {name}: worst error {_fmt(s['worst_error_over_allowance'])} of its "
                         f"allowance, {s['worst_correct_digits']:.1f} of {s['dtype_digits']:.1f} "
                         f"digits correct; entries: {counts}")
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
        for f in fails:
            lines.append("  " + f.message())
        if n["failures"] > len(fails):
            lines.append(f"  (showing {len(fails)} of {n['failures']} failing entries)")
        warns = self.findings("warnings")
        if n["warnings"]:
            lines.append(f"  {n['warnings']} precision-loss warning(s), the worst: "
                         + warns[0].message())
        if n["kinks"]:
            lines.append(f"  {n['kinks']} entr(y/ies) at a kink accepted, e.g. "
                         + self.kinks[0].message())
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        """Jupyter display: the verdict and the table per parameter."""
        table = tabulate([{k: (_fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys", tablefmt="github")
        head = f"**{self.model}: {'OK' if self.ok else 'FAIL'}**"
        fails = "".join(f"\n- {f.message()}" for f in self.failures)
        return f"{head}\n\n{table}\n{fails}"

    def as_dict(self) -> dict:
        """JSON-ready; deterministic for the same seed and versions (times kept apart)."""
        return {
            "model": self.model, "ok": self.ok, "config": self.config.as_dict(),
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
    comparable: np.ndarray  # exact value finite, not a kink or inconclusive: ratio means something


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
        # kinks (any subgradient is exact) and inconclusive entries have no meaningful ratio
        excused = [k for k, name in STATUS_NAMES.items() if name in ("kink", "inconclusive")]
        comparable = np.isfinite(exact) & ~np.isin(status, excused)
        ratio = np.where(np.isfinite(got), ratio, np.inf)
        ulps = np.where(np.isfinite(got), ulps, np.inf)
    return Measures(error, allowed, ratio, relative, ulps, comparable)


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


def _point(point: dict) -> str:
    parts = []
    for k, v in point.items():
        if isinstance(v, dict):
            v = v["first"]
        if isinstance(v, list):
            flat = np.asarray(v).ravel()
            shown = ", ".join(f"{x:.6g}" for x in flat[:4]) + (", …" if flat.size > 4 else "")
            parts.append(f"{k}=[{shown}]")
        else:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)
