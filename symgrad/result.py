"""Result dataclasses of a verification and their text table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from .compare import (EXPLANATIONS, FAILING, INCONCLUSIVE, KINK, LOSS, STATUS_NAMES,
                      Comparison)
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

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values())

    def counts(self, backend: str) -> dict[str, int]:
        status = self.comparisons[backend].status
        return {STATUS_NAMES[k]: int((status == k).sum()) for k in STATUS_NAMES}

    def worst_ulps(self, backend: str, cols: slice | None = None) -> float:
        u = self.comparisons[backend].ulps
        u = u[:, cols] if cols is not None else u
        finite = u[np.isfinite(u)]
        if finite.size < u.size:
            return float("inf")
        return float(finite.max()) if finite.size else 0.0

    def median_ulps(self, backend: str, cols: slice | None = None) -> float:
        u = self.comparisons[backend].ulps
        u = u[:, cols] if cols is not None else u
        return float(np.median(u)) if u.size else 0.0

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
                st = comp.status[:, cols]
                unresolved += int((st == INCONCLUSIVE).sum())
                if np.isin(st, FAILING).any():
                    verdict = "FAIL"
                elif verdict == "ok" and (st == LOSS).any():
                    verdict = "ok (precision loss)"
                elif verdict == "ok" and (st == KINK).any():
                    verdict = "ok (kink)"
            if verdict != "FAIL" and unresolved:  # never "ok" for what the dtype cannot resolve
                verdict = f"inconclusive ({unresolved} entries)"
            row["verdict"] = verdict
            rows.append(row)
        return rows

    def __str__(self) -> str:
        head = (f"symgrad: {self.model} — {'OK' if self.ok else 'FAIL'} "
                f"({len(self.oracle_samples)} samples checked against the exact derivative, "
                f"{self.config.dtype} on {self.config.device}, seed {self.config.seed})")
        table = tabulate([{k: (_fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys")
        lines = [head, table]
        unresolved = {n: int((c.status == INCONCLUSIVE).sum()) for n, c in self.comparisons.items()}
        if any(unresolved.values()):
            lines.append("  inconclusive entries (the dtype's bound cannot resolve them; the block "
                         "test still checks their block): "
                         + ", ".join(f"{n} {k}/{self.comparisons[n].status.size}"
                                     for n, k in unresolved.items()))
        for f in self.failures:
            lines.append("  " + f.message())
        if self.precision_losses:
            lines.append(f"  {len(self.precision_losses)} precision-loss warning(s), e.g. "
                         + self.precision_losses[0].message())
        if self.kinks:
            lines.append(f"  {len(self.kinks)} entr(y/ies) at a kink accepted, e.g. "
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
            "program_size": self.program_size,
            "rows": [{k: _json_float(v) for k, v in r.items()} for r in self.rows()],
            "backends": {n: {"dtype": r.dtype, "device": r.device, "mode": r.mode,
                             "counts": self.counts(n),
                             "median_ulps": _json_float(self.median_ulps(n))}
                         for n, r in self.runs.items() if n in self.comparisons},
            "failures": [f.as_dict() for f in self.failures],
            "precision_losses": [f.as_dict() for f in self.precision_losses],
            "kinks": [f.as_dict() for f in self.kinks],
            "oracle_bits": self.oracle_bits,
        }


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
