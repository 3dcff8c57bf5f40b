"""How a Result reads: the text table per parameter block, the verdict lines, Markdown for
notebooks and the JSON-ready dict (``ResultText``, a part of ``symgrad.result.Result``), and the
number and point formatting of one-line messages.

>>> fmt(0.0), fmt(float("inf")), fmt(12.3456)
('0', 'inf', '12.3')
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
from tabulate import tabulate

from .compare import FAILING, INCONCLUSIVE, KINK, LOSS, SUSPECT
from .failpattern import block_lines
from .verdict import OWN_LABEL, UNDECIDED, all_clear

HVP_VALUE, HVP_PREFIX = "g·v", "Hv:"  # output names at order 2 (symgrad.hvp)
SHAPES_SHOWN = 4  # failing blocks described under a backend's summary (failpattern)


class ResultText:
    """The presenting half of ``Result``: table, verdict lines, Markdown, ``as_dict``."""

    def _row_verdict(self, cols: slice, names: list[str]) -> str:
        """The verdict of one row over the backends ``names``: FAIL, inconclusive (with how
        many inconclusive / suspect entries), ok (precision loss / kink) or ok."""
        verdict, unresolved, suspect = "ok", 0, 0
        for name in names:
            st = self.comparisons[name].status[:, cols]
            if all_clear(st):  # ok and precision losses only: one max pass, not five
                if verdict == "ok" and st.size and st.max() == LOSS:
                    verdict = "ok (precision loss)"
                continue
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

    def _as_measured(self, f):
        """A finding with its ULPs and allowance in the table's measure (``measures``)."""
        m = self.measure(f)
        allowed = m["ulps"] * m["allowed"] / m["error"] if m["error"] > 0 else f.allowed_ulps
        return replace(f, ulps=m["ulps"], allowed_ulps=allowed)

    def output_groups(self) -> list[tuple[str, slice]]:
        """(label, columns) of each row: the value, then each parameter block ("g·v" and
        "Hv:<block>" at order 2)."""
        value, prefix = (HVP_VALUE, HVP_PREFIX) if self.config.order == 2 else ("value", "d/d")
        return [(value, slice(0, 1))] + [(f"{prefix}{name}", slice(a, b))
                                         for name, a, b in self.blocks]

    def rows(self) -> list[dict]:
        """One row per output group: the value, then each parameter block. The verdict column
        is the deciding backends'; symgrad's own programs' findings, where they do not decide,
        are added after it ("ok; symgrad's own program: FAIL")."""
        deciding = self.deciding
        apart = [n for n in self.comparisons if n not in deciding]
        rows = []
        for label, cols in self.output_groups():
            row = {"output": label}
            for name in self.comparisons:
                row[f"{name} worst ULPs"] = self.worst_ulps(name, cols)
                row[f"{name} error/allowed"] = self._row_ratio(name, cols)
            verdict = self._row_verdict(cols, deciding)
            if apart:
                own = self._row_verdict(cols, apart)
                if not own.startswith("ok"):
                    verdict += f"; {OWN_LABEL}: {own}"
            row["verdict"] = verdict
            rows.append(row)
        return rows

    def _row_ratio(self, name: str, cols: slice) -> float | str:
        """A row's worst error / allowance, as ``summary`` gives it: over the decided entries;
        where those are all exact (0) and some are undecided, over every entry (a 0 would
        claim an agreement the run did not show); "—" where that figure is not a number."""
        ratio = self.worst_ratio(name, cols)
        if ratio == 0 and np.isin(self.comparisons[name].status[:, cols],
                                  (INCONCLUSIVE, SUSPECT)).any():
            ratio = self._stats(name, cols).get("worst_ratio_all", float("nan"))
            return "—" if np.isnan(ratio) else ratio
        return ratio

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
        return "\n".join(self.summary_lines() + self.finding_lines())

    def summary_lines(self) -> list[str]:
        """The verdict line, the table and each backend's summary: ``str(result)`` without its
        findings (``finding_lines``), for a message that shows those first."""
        head = (f"symgrad: {self.model} — {self.verdict.upper()} "
                f"({len(self.oracle_samples)} of {self.config.samples} samples checked against "
                "the exact derivative, "
                + ("order 2: Hessian-vector products H v, a random v per sample, "
                   if self.config.order == 2 else "") +
                f"{self.config.dtype} on {self.config.device}, seed {self.config.seed})")
        table = tabulate([{k: (fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys")
        lines = [head, table] + self._verdict_lines() + [f"  note: {n}" for n in self.notes]
        for name in self.comparisons:
            s = self.summary(name)
            counts = ", ".join(f"{n} {v}" for n, v in s["counts"].items() if v)
            who = "" if s["decides"] else f" ({OWN_LABEL}, not deciding)"
            lines.append(f"  {name}{who}: {s['verdict']}; worst error "
                         f"{fmt(s['worst_error_over_allowance'])} of its "
                         f"allowance, {s['worst_correct_digits']:.1f} of {s['dtype_digits']:.1f} "
                         f"digits correct; entries: {counts}")
            off = getattr(self, "float64_seen", {}).get(name, {}).get("rule_check_off")
            lines.append(f"    resolution: {s['resolution']['text']}" + (f"; {off}" if off
                                                                           else ""))
            shapes = block_lines(self.comparisons[name], self.blocks, self.outputs, kept=getattr(
                self, "_memo", {}).get(("failing_blocks", name)))  # (a reduced comparison's)
            lines += [f"    failing: {t}" for t in shapes[:SHAPES_SHOWN]] + (
                [f"    ({len(shapes) - SHAPES_SHOWN} more failing blocks)"]
                if len(shapes) > SHAPES_SHOWN else [])
        resolution = {c.resolution for c in self.comparisons.values() if c.resolution}
        for text in sorted(resolution):
            lines.append(f"  resolution not reached: {text}")
        for name, comp in self.comparisons.items():  # refuted or untested suspicions
            notes = getattr(comp, "unconfirmed", ())
            for note in notes[:3]:
                lines.append(f"  unconfirmed suspicion (fails nothing): {note}")
            if len(notes) > 3:
                lines.append(f"  ({len(notes) - 3} more unconfirmed suspicion(s) on {name})")
        return lines

    def finding_lines(self) -> list[str]:
        """The findings of ``str(result)``, one line each: the deciding backends' failures,
        symgrad's own programs' apart, the worst precision-loss warning, a kink, a few
        inconclusive entries."""
        lines = []
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
        # a warning reads in the table's measure (at an exact zero: ULPs of its terms' scale,
        # the flag's own: ``compare.losing``), the worst by it
        warns = sorted((self._as_measured(f) for f in self.findings("warnings")),
                       key=lambda f: -f.ulps)
        if warns:
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
        return lines

    def _repr_markdown_(self) -> str:
        """Jupyter display: the verdict and the table per parameter."""
        table = tabulate([{k: (fmt(v) if isinstance(v, float) else v) for k, v in r.items()}
                          for r in self.rows()], headers="keys", tablefmt="github")
        head = f"**{self.model}: {self.verdict.upper()}**"
        notes = "".join(f"\n{line.strip()}\n" for line in self._verdict_lines()
                        + [f"note: {n}" for n in self.notes])
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
            "rows": [{k: json_float(v) for k, v in r.items()} for r in self.rows()],
            "backends": {n: {"dtype": r.dtype, "device": r.device, "mode": r.mode,
                             "counts": self.counts(n),
                             "median_ulps": json_float(self.median_ulps(n)),
                             "unconfirmed": list(self.comparisons[n].unconfirmed),
                             "resolution_not_reached": self.comparisons[n].resolution,
                             "confirmed": [f.describe() for f in self.comparisons[n].systematic
                                           if f.confirmed] + list(self.comparisons[n].evidence),
                             **{k: json_float(v) for k, v in self.summary(n).items()
                                if k not in ("backend", "dtype", "counts")}}
                         for n, r in self.runs.items() if n in self.comparisons},
            "finding_counts": self.finding_counts(),
            "failures": [f.as_dict() for f in self.failures],
            "precision_losses": [f.as_dict() for f in self.precision_losses],
            "kinks": [f.as_dict() for f in self.kinks],
            "inconclusive": [f.as_dict() for f in self.undecided],
            "oracle_bits": self.oracle_bits,
            "notes": list(self.notes),
        }


# a cause's explanation a line keeps whole (``_kept``): where the forward departs, or that it
# agrees everywhere compared
KEPT = ("the forward first departs at", "the forward agrees at every compared intermediate")
CLAMP_NOT_DIFFERENTIATED = "norm's eps clamp not differentiated"  # causes.catalogue's name
KEPT_CAUSES = ("function differs", CLAMP_NOT_DIFFERENTIATED)  # the why is data


def short_note(note: str, cause: str = "") -> str:
    """What a finding's one line keeps of its note: a proof as one word ("proven"; "suspected,
    confirmed by experiment" for a suspicion an experiment confirmed), without the cause's
    explanation before it (above ``CERTIFY_UP_TO``: "suspected, confirmed on a fresh sample
    (seed ...)", ``tensor.confirm_big``; the [cause: ...] name says it; ``Failure.explanation``, the JSON
    and ``Result.explain`` keep it all); a note without a proof (a kink's convention, why an
    entry stays inconclusive, no subgradient) whole. Where a forward departs (``KEPT``) and
    a "function differs" or an eps clamp's explanation (``_kept``) always stay.

    >>> short_note("x; error 1e-6 is outside the rigorous enclosure ±1e-9 ...: proven", "c")
    'proven'
    >>> short_note("c; no rigorous enclosure at this size ...: confirmed on a fresh sample "
    ...            "(seed SeedSequence([0, 2])): 3 entries ... beyond it again", "c")
    'suspected, confirmed on a fresh sample (seed SeedSequence([0, 2]))'
    >>> short_note("at a kink: the backend used the convention H(0) = 1/2")
    'at a kink: the backend used the convention H(0) = 1/2'
    """
    body, proof = note, ""
    if "rigorous enclosure" in note:  # with_proof's join: the explanation; the proof note
        k = note.find("; error ")
        k = k if k >= 0 else note.find("; no rigorous enclosure")  # above CERTIFY_UP_TO
        body, tail = (note[:k], note[k + 2:]) if k >= 0 else ("", note)
        fresh = re.search(r"confirmed on a fresh sample \((?:[^()]|\([^()]*\))*\)", tail)
        proof = (f"suspected, {fresh.group(0)}" if fresh else "suspected, confirmed by "
                 "experiment" if "not proven" in tail else "proven" if "proven" in tail else "")
        if cause and not _kept(body, cause):
            body = ""
    return "; ".join(p for p in (body, proof) if p)


def _kept(body: str, cause: str) -> bool:
    """Does a line keep this cause's explanation whole? "Function differs" says where and why
    with the run's own data (the departure, the loss value's expected and got, a random site);
    a forward that agrees everywhere compared is said too. Other explanations are fixed text
    (the cause's name stands for them); a norm's eps clamp says the norm and eps at the sample
    and how to clamp with autograd."""
    return any(c in cause for c in KEPT_CAUSES) or any(p in body for p in KEPT)


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if not np.isfinite(v):
        return "inf" if v > 0 else str(v)
    return f"{v:.3g}"


def json_float(v):
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


LINE_CHARS = 250  # a finding's line: the point gets what the numbers and cause leave of this
POINT_CHARS = 40  # ... but at least about this many characters of a sample's point
POINT_ENTRIES_SHOWN = 3  # ... at most this many entries of each block
POINT_DIGITS = 4  # ... each to this many significant digits
HIDDEN_IN = "Failure.point"  # where the blocks a line leaves out are, whole
SAVED_FILE = "file"  # a point's saved sample (modules.replay): always shown


def point_text(point: dict, chars: int = POINT_CHARS, *, entry: str = "") -> str:
    """A sample's point, shortened for the end of a one-line message: each value to
    ``POINT_DIGITS`` significant digits, a block's first ``POINT_ENTRIES_SHOWN`` entries and
    "…". Blocks are in the model's order, parameters first: the finding's own block (that of
    ``entry``) is always shown, then the last ones - the inputs - as many as fit in ``chars``,
    and the rest are counted.
    ``entry`` (the finding's own entry, ``x[8]``): where the first entries do not show it, its
    block is shown as that one value. The JSON (``Failure.as_dict``) keeps every block and
    every digit. A saved sample's ``file`` is always shown.

    >>> point_text({"W1": [[1.0039612, -0.6179071], [1.8220123, 2.5]], "y": 1.0})
    'W1=[1.004, -0.6179, 1.822, …], y=1'
    >>> point_text({"x": [0.5, 1.25, 2.0, 3.0, 21.0]}, entry="x[4]")
    'x[4]=21'
    >>> point_text({"w1": 0.5, "w2": 20.0, "b": 0.0, "x": [1.0, 2.0]}, 20, entry="w2")
    '2 more blocks in Failure.point, w2=20, x=[1, 2]'
    """
    parts, keys = [], list(point)
    for k, v in point.items():
        more = False
        if isinstance(v, dict):  # shown_value of a large block: its first entries
            v, more = v["first"], True
        if isinstance(v, list):
            arr = np.asarray(v)
            flat = arr.ravel()
            more = more or flat.size > POINT_ENTRIES_SHOWN
            shown = ", ".join(_short(x) for x in flat[:POINT_ENTRIES_SHOWN])
            own = _entry_value(k, arr, entry, more)
            parts.append(f"{entry}={_short(own)}" if own is not None  # its own value only
                         else f"{k}=[{shown}{', …' if more else ''}]")
        else:
            parts.append(f"{k}={_short(v)}")
    own_block = entry.partition("[")[0]
    always = (own_block, SAVED_FILE)  # the entry's own value, and the saved sample's file
    order = sorted(range(len(parts)), key=lambda i: (keys[i] not in always, -i))
    kept, used = set(), 0
    for i in order:  # the finding's own block, then the inputs (last), then parameters
        if kept and keys[i] not in always and used + len(parts[i]) + 2 > chars:
            break
        kept.add(i)
        used += len(parts[i]) + 2 if keys[i] != SAVED_FILE else 0  # the file is shown anyway:
        #   its path (long under $TMPDIR) hid a lone input (newuser10: "1 more block in ...")
    hidden = len(parts) - len(kept)
    return ", ".join(([f"{hidden} more block{'s' if hidden > 1 else ''} in {HIDDEN_IN}"]
                      if hidden else []) + [parts[i] for i in sorted(kept)])


def _entry_value(block: str, arr: np.ndarray, entry: str, more: bool):
    """The value of ``entry`` (``block[i, j]``) in ``arr`` (the whole block, row-major), or
    None: another block's entry, an index the shown first entries already hold, or a block
    shown only by its first entries (a large one: the JSON has it)."""
    head, _, rest = entry.partition("[")
    if head != block or not rest.endswith("]") or not more or arr.size == 0:
        return None
    try:
        index = tuple(int(i) for i in rest[:-1].split(","))
        flat = int(np.ravel_multi_index(index, arr.shape)) if arr.ndim else 0
    except ValueError:
        return None
    return None if flat < POINT_ENTRIES_SHOWN or flat >= arr.size else arr.ravel()[flat]


def _short(x) -> str:
    try:
        return f"{float(x):.{POINT_DIGITS}g}"
    except (TypeError, ValueError):
        return repr(x)
