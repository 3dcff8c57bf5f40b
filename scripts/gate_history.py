"""Issue 17's gate row "`symgrad fuzz --budget 1000` and the op catalogue: same verdicts, old
vs new", run against the old scalar pipeline from git history.

The scalar verification pipeline was deleted in db9dfd1 (issue 17 step 4a); its parent 0f85cde
is the last commit where ``SYMGRAD_PIPELINE=scalar`` pinned it. This script runs, each in a
child process with its own ``PYTHONPATH``:

- old:  a detached worktree of 0f85cde with ``SYMGRAD_PIPELINE=scalar`` (the scalar side);
- mid:  the same tree with ``SYMGRAD_PIPELINE=program`` (the program pipeline as it stood the
        day the scalar one was deleted: tells a pipeline difference from a later change);
- new:  this tree (today's program pipeline).

Each child runs ``symgrad.fuzz.fuzz`` (what ``symgrad fuzz`` runs) with ``verify`` wrapped to
record every model's result, and ``symgrad.opcatalog.run_ops`` (what ``symgrad ops`` runs), and
writes JSON. The parent compares per fuzz model (outcome: verified / domain refusal /
unsupported; verdict; agreed; the set of (backend, cause) findings) and per op-catalogue
(operator, dtype) row (status; the set of (order, cause) findings; the failing count of each
order), classifies each difference by ``REASONS`` (each rule names the commit that made the
change) and writes ``reports/gate_history.md`` / ``.json``.

    python scripts/gate_history.py                          # fuzz 1000 seed 0, ops budget 32
    python scripts/gate_history.py --seeds 0,1 --ops-budget 16
    python scripts/gate_history.py --compare-only           # re-read the saved child JSON

A child: ``PYTHONPATH=TREE python scripts/gate_history.py --child fuzz --budget 1000 --seed 0
--json out.json`` (the tree's own symgrad is imported; the script itself imports nothing else
of symgrad at top level so it runs against either tree).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "0f85cde"  # parent of db9dfd1 (step 4a: the scalar verification pipeline deleted)
OLD_TREE = Path("/work/wt/gate_old")
RUNS = {"old": ("old tree", "scalar"), "mid": ("old tree", "program"), "new": ("this tree", None)}


# ---------------------------------------------------------------- child: run and record
def _child_fuzz(budget: int, seed: int) -> dict:
    import symgrad.fuzz as fz
    records: dict[str, dict] = {}
    real = fz.verify

    def recording(model, **kw):
        rec = records.setdefault(model.name, {"expression": str(model.loss)})
        try:
            result = real(model, **kw)
        except Exception as exc:  # recorded, then raised on: fuzz classifies it as before
            rec.update(outcome=type(exc).__name__, message=str(exc)[:300])
            raise
        causes = sorted({(f.backend, f.kind, fz._cause(f.kind, f.backend, model.loss, f.got,
                                                       f.expected)[0]) for f in result.failures})
        rec.update(outcome="verified", verdict=result.verdict, agreed=not result.failures,
                   backends={b: result.backend_verdict(b) for b in result.comparisons},
                   counts={k: v for k, v in result.total_counts().items() if v},
                   findings=[list(c) for c in causes])
        return result

    fz.verify = recording
    t0 = time.perf_counter()
    report = fz.fuzz(budget, seed=seed)
    wall = time.perf_counter() - t0
    by_cause: dict[str, int] = {}
    for d in report.disagreements:
        by_cause[d.cause] = by_cause.get(d.cause, 0) + 1
    return {"budget": budget, "seed": seed, "verified": report.verified,
            "agreed": report.agreed, "disagreements_by_cause": by_cause,
            "unexplained": len(report.unexplained), "wall_s": wall,
            "summary": report.summary(), "models": records}


def _child_ops(budget: int, dtypes: list[str]) -> dict:
    from symgrad.opcatalog import OpsConfig, run_ops
    t0 = time.perf_counter()
    report = run_ops(OpsConfig(dtypes=tuple(dtypes), budget=budget))
    rows = []
    for r in report.rows:
        rows.append({"op": r.op, "dtype": r.dtype, "status": r.status, "note": r.note,
                     "first": asdict(r.first), "second": asdict(r.second) if r.second else None,
                     "findings": sorted({(f.order, f.cause, f.kind) for f in r.findings}),
                     "finding_counts": {f"{f.order}|{f.cause}|{f.kind}": f.count
                                        for f in r.findings},
                     "gradcheck": {k: v for k, v in r.gradcheck.items()
                                   if isinstance(v, (bool, int, str))}})
    return {"budget": budget, "dtypes": dtypes, "wall_s": time.perf_counter() - t0,
            "rows": rows}


# ---------------------------------------------------------------- parent: run the children
def _ensure_old_tree() -> None:
    if not (OLD_TREE / "symgrad" / "verify.py").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(OLD_TREE),
                        OLD_COMMIT], check=True)


def _run_child(run: str, what: str, args, out: Path) -> dict:
    tree = OLD_TREE if RUNS[run][0] == "old tree" else ROOT
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    env.pop("SYMGRAD_PIPELINE", None)
    if RUNS[run][1]:
        env["SYMGRAD_PIPELINE"] = RUNS[run][1]
    cmd = ["nice", "-n", "10", sys.executable, __file__, "--child", what, "--json", str(out),
           "--budget", str(args.budget if what == "fuzz" else args.ops_budget),
           "--seed", str(args.seed_now), "--dtypes", args.dtypes]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, env=env, check=True, cwd=tree)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = json.loads(out.read_text())
    data["cpu_s"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1)
    data["tree"] = str(tree)
    data["pipeline"] = RUNS[run][1] or "program (only)"
    out.write_text(json.dumps(data, indent=1, sort_keys=True))
    return data


# ---------------------------------------------------------------- compare and explain
def _fuzz_key(m: dict | None) -> tuple:
    if m is None:
        return ("not drawn",)
    if m.get("outcome") != "verified":
        return (m.get("outcome"),)
    return (m["verdict"], m["agreed"], tuple(tuple(f) for f in m["findings"]))


def _ops_key(r: dict | None) -> tuple:
    if r is None:
        return ("absent",)
    return (r["status"], tuple(tuple(f) for f in r["findings"]))


# Each rule: (name, test on the (old, mid, new) records, reason naming the commit behind it).
# A difference no rule explains is UNEXPLAINED on the page.
def _out(r) -> str:
    return (r or {}).get("outcome", "absent")


def _causes(r) -> set:
    return {c for _b, _k, c in (r or {}).get("findings", [])}


def _undefined_share(r) -> float | None:
    """k / N of a refusal's 'k of N samples undefined'."""
    m = re.search(r"(\d+) of (\d+) samples undefined", (r or {}).get("message", ""))
    return int(m.group(1)) / int(m.group(2)) if m else None


def _refused_domain(o, m, n):
    """New refuses (UndefinedOnDomain) where old verified and found 'domain' entries, every
    other finding with a named cause (none unexplained)."""
    return (_out(n) == "UndefinedOnDomain" and _out(o) == "verified" and "domain" in _causes(o)
            and "unexplained" not in _causes(o))


def _refused_inconclusive(o, m, n):
    """New refuses where old found nothing and left at least the refusal's share of undefined
    samples inconclusive (its share of inconclusive entries >= 'k of N samples undefined')."""
    share = _undefined_share(n)
    if _out(n) != "UndefinedOnDomain" or _out(o) != "verified" or o["findings"] or not share:
        return False
    return o["counts"].get("inconclusive", 0) / sum(o["counts"].values()) >= share - 1e-9


def _domain_to_inconclusive(o, n):
    """Old's domain entries (its only finding) are new's inconclusive ones, as many."""
    return (_out(o) == _out(n) == "verified" and _causes(o) == {"domain"} and not n["findings"]
            and o["counts"].get("domain") == n["counts"].get("inconclusive")
            and n["verdict"] == "inconclusive")


def _key_of(r):
    return _fuzz_key(r)


REASONS_FUZZ = [
    ("domain refusal", _refused_domain,
     "deliberate (8c72afe, newuser5 L4): a model the certified oracle proves undefined at "
     "samples drawn from its own declared domains is refused in one line (UndefinedOnDomain; "
     "fuzz counts it under its 'domain' cause) instead of a FAIL whose every line said 'not a "
     "backend error'; the scalar path verified it and reported those samples as 'domain'"),
    ("domain refusal of samples the scalar path left inconclusive", _refused_inconclusive,
     "deliberate (8c72afe): as above; the scalar oracle had found nothing and left at least "
     "the undefined samples' share of its entries inconclusive (on seed 0 exactly that share: "
     "the refusal's 'k of N samples undefined')"),
    ("a scalar refusal the program verifies: undefined there",
     lambda o, m, n: (_out(n) == "UndefinedOnDomain" and _out(o) == "SymgradError"
                      and "not supported" in o.get("message", "")),
     "pipeline: the scalar derivative of Abs(f(sqrt(v w))) came out through sympy's atan2/arg "
     "(complex sqrt), outside the vocabulary, so the scalar path refused the model; the "
     "program writes Abs' derivative as sign(u) and gets as far as the oracle, which proves "
     "the model undefined at the drawn samples with v w < 0 (8c72afe's refusal). Both refuse"),
    ("sqrt(Max(0, ...)) at 0: pass on the scalar path, inconclusive on the program",
     lambda o, m, n: (_out(o) == _out(n) == "verified" and o["verdict"] == "pass"
                      and n["verdict"] == "inconclusive" and not n["findings"]
                      and "sqrt(Max(0," in o["expression"] and (m is None or
                                                                 _key_of(m) == _key_of(n))),
     "pipeline (0f85cde's program path already inconclusive): where the Max is exactly 0 the "
     "exact gradient is 0 and both backends give 0, but the program checks the formula as "
     "written too (7a83245: the stable rewrite's original, whose enclosure is unioned in), and "
     "there 1/(2 sqrt 0) * 0 has no finite ball at any precision ('the formula as written ... "
     "is not certified at entry 1: its ball is still too wide at 4096 bits'); the scalar "
     "oracle's limit ladder gave 0. A pass lost to inconclusive, never a false pass; left for "
     "the lead (whether the tensor limits of f8731ca, 0/0 and 0 log 0 at exact zeros, should "
     "take this 0 * (1/sqrt 0) too)"),
    ("sqrt(Max(0, ...)) at 0: the scalar oracle's domain, the program's where-trap",
     lambda o, m, n: (_out(o) == _out(n) == "verified" and o["verdict"] == n["verdict"] == "fail"
                      and _causes(o) == {"domain"} and _causes(n) <= {"where-trap"}
                      and o["counts"].get("domain") == n["counts"].get("non-finite", 0)
                      + n["counts"].get("inconclusive", 0)),
     "pipeline: sqrt(Max(0, w, w - x)) is defined everywhere; where the Max is 0 (w, w - x < 0) "
     "the exact d/dw is 0 (the Max is locally 0). The scalar oracle computed 1/(2 sqrt 0) * 0 "
     "and called it undefined (domain: wrong); the program's oracle has 0, so numpy's non-finite value "
     "there is classified a where-trap (a named cause: the NaN of a branch not taken) and "
     "torch's entries stay inconclusive. The same entries; still FAIL on a named, benign cause"),
    ("NaN not proven: inconclusive, not domain",
     lambda o, m, n: _domain_to_inconclusive(m, n) and _key_of(m) == _key_of(o),
     "deliberate (99699e3): 'domain' (exact value NaN) only where the balls prove every NaN "
     "they made (precise/arbdomain: an argument wholly outside its domain, or exact operands); "
     "a NaN reached through Max/Min or a difference that is zero only exactly stays "
     "inconclusive (it had made BCE of sigmoid at x = 1000 a false domain FAIL). The same "
     "entries, as many; neither is a backend finding, neither a pass"),
    ("log(0) under Max: the scalar oracle's NaN, the program's -inf",
     lambda o, m, n: _domain_to_inconclusive(o, n) and _key_of(m) == _key_of(n),
     "pipeline, not a later change (0f85cde's program path already answered so): at v <= 0, "
     "log(Max(0, v)) = log 0; the scalar oracle called the loss value undefined (NaN: domain), "
     "the program's oracle takes log 0 = -inf, which loses the outer Max, so the exact value "
     "is the other argument (numpy within 0.3 ULP of it on fuzz169) with an infinite allowance "
     "(the -inf term): inconclusive. The same entries, as many; neither a backend finding nor "
     "a pass"),
    ("domain -> inconclusive (0f85cde's program not run)",
     lambda o, m, n: (m is None and _out(o) == _out(n) == "verified" and _causes(o) == {"domain"}
                      and not n["findings"] and n["verdict"] == "inconclusive"),
     "one of the two rules above (99699e3's proven-NaN rule, or log 0 = -inf under Max); "
     "without the middle run they cannot be told apart: old's only findings were 'domain', "
     "new has none and is inconclusive; neither a backend finding nor a pass"),
]
def _ops_causes(r) -> set:
    return {c for _o, c, _k in (r or {}).get("findings", [])}


def _named(causes: set) -> bool:
    return not any(c == "unexplained" or c.startswith("real derivative error") for c in causes)


def _unproven(o, m, n) -> bool:
    """Old's failing entries with named causes are inconclusive or ok on new; no new cause."""
    if not (o and n) or o["status"] != "finding" or n["status"] not in ("ok", "finding"):
        return False
    pairs = [{(od, c) for od, c, _k in r["findings"]} for r in (o, n)]
    lost = {c for _od, c in pairs[0] - pairs[1]}
    return (bool(lost) and _named(lost) and pairs[1] <= pairs[0] and all(
        (o[d] or {}).get("failing", 0) >= (n[d] or {}).get("failing", 0) for d in ("first", "second")))


def _new_named(o, m, n) -> bool:
    """New finds entries with a named cause where old had none failing."""
    return bool(o and n and o["status"] == "ok" and n["status"] == "finding"
                and _named(_ops_causes(n)))


REASONS_OPS = [
    ("named findings unproven on the program path", _unproven,
     "pipeline (gaussian_nll_loss float64 run on 0f85cde's program path: the same "
     "entries inconclusive there): entries the scalar path proved failing with a named, benign "
     "cause (precision loss, overflow, a known torch convention; never 'unexplained' nor 'real "
     "derivative error') are inconclusive or within the allowance on the program path: an exact "
     "0 whose allowance (4 tiny) is >= |exact| is inconclusive by the program comparer's rule "
     "whatever the error (gaussian_nll_loss's straight-through clamp at v = 5e-324: exact 0, "
     "torch -4.8e14); a suspicion beyond the fast bound is confirmed only by a float64 re-run "
     "(none: the row is float64) or fresh samples (none: the catalogue passes at=), else "
     "inconclusive (a9da455); an output-derived derivative can fall inside the larger "
     "textbook-program allowance (d5389fe). No bug passed, but these named findings of the "
     "catalogue are not reported at these inputs"),
    ("a named finding the scalar path did not report", _new_named,
     "the program path reports entries with a catalogued cause where the scalar path had none "
     "failing (cosine_similarity's H v: entries the scalar oracle called outside the range are "
     "finite on the program's, torch's non-finite value there named 'overflow: intermediate "
     "overflow'; vector_norm_3: one gradient entry beyond the program's allowance, named "
     "'precision loss: rounded exponent 1/p', a cause catalogued since 26a721c). More findings, "
     "each named: no false alarm"),
]

# What running the gate found in today's main, and what was done (shown on the page as is).
FOUND = [
    "**Fixed (38e8604, precise/walk):** fuzz draws 546 ((w + x - Abs(v))/log(Max(-1, sqrt(x)))) "
    "and 816 (Max(w, sqrt(Max(-1/2, x, x/v)))) of seed 0 were refused by the program path "
    "('ARB map: constant I is not real', 'DD map: constant sqrt(2)*I/2 is not real'; fuzz "
    "counted them 'unsupported: outside the vocabulary', which they are not), where the scalar "
    "path verified them (inconclusive / domain + where-trap). The kink sides' Piecewise branch "
    "Max = -1 holds sympy's log(-1) = I*pi (sqrt(-1/2)), and the ball re-evaluation of an "
    "undefined row walks every branch. A non-real constant is now NaN under the oracle's real "
    "semantics, as log/sqrt of a negative entry is: both models are refused as undefined on "
    "their declared domains (7 and 4 of 20 samples: the scalar path's inconclusive / domain "
    "samples); tests/test_domains.py::test_a_complex_constant_in_a_kink_branch_is_undefined_"
    "not_a_refusal fails on main. The 'new' runs on this page include the fix.",
    "**Left for the lead (a named finding lost, not fixed here):** on the program path an "
    "entry whose exact value is 0 and whose allowance (4 tiny) is therefore >= |exact| is "
    "inconclusive whatever its error: torch's gaussian_nll_loss (float64) gradient "
    "d/dv[2] at v[2] = 5e-324 (clamped to eps: exact 0) is -4.8e14, and H v 1.1e21, yet the "
    "undecided note reads 'its allowance 8.9e-308 is at least the exact value itself: 0 or a "
    "flipped sign would pass too'. The scalar path proved these failing (cause: the known "
    "straight-through clamp); 0f85cde's program path was already inconclusive. Where |got - "
    "exact| exceeds the allowance by orders of magnitude at a certified exact 0, the error is "
    "seen whatever 0 itself would do; a rule 'exact 0 certified, error > allowance: fail' (the "
    "loss value already has 'wrong by more than itself') would restore it. The comparer is "
    "compare/ (another helper's area): not changed here."
    " **Since fixed (honest34, 574b965, 7 Dec; this page's rows predate it):** the compare's rule was right (inconclusive only where the error is within the allowance); the rigorous enclosure was not: v[0] = 1e300 squared leaves float64's range, and the plain model's one-hot scatter (0 x NaN) spread that entry's unbounded ball over the whole block. A one-hot selection now keeps a non-finite ball in its own entry when a mismatch is proven (rigorous/tensor, precise/arb_select), and the catalogue row (gaussian_nll_loss, float64) is a finding again, its cause named (the straight-through var clamp).",
    "**Left for the lead (not a pass, not fixed here):** since 99699e3, 'domain' needs the "
    "balls to prove every NaN they made (precise/arbdomain: an argument wholly outside its "
    "domain, or exact operands; a comparison a NaN ball leaves undecided counts unproven). "
    "Fuzz draws 410 (exp(sin(erf(3/2)) Max(x + 1, log(v))), undefined at v < 0) and 741 "
    "(Max(-3/2, cos(Max(v, x)))/(x - Max(0, x)), undefined at x > 0) reach their NaN through "
    "a Max, and the new path leaves those entries inconclusive ('not certified by ARB balls at "
    "2048 bits, nor a NaN ball at 4096') where the old one, and 0f85cde's program path, said "
    "domain. Honest, but the fuzz convention is that NaN propagates through Max/Min: a Max "
    "with a proven-NaN argument (and x - Max(0, x) at an exact x > 0) could be proven too, and "
    "the two models refused as undefined like the other 142 (the place: arbdomain.WatchedKernels"
    ".compare / DomainWatch.seen)."
    " **Since then (honest34, 7 Dec; this page's rows predate it):** draw 410 was already domain on main (6f12ae6); draw 741's NaN came from dividing by x - Max(0, x), exactly 0 for x > 0: `arbdomain.RULES['div']` now proves a NaN from a divisor ball that is exactly 0, and the model is refused as undefined (7 of 20 samples).",
]


def _classify(rules, o, m, n) -> str:
    for name, test, why in rules:
        if test(o, m, n):
            return f"{name}: {why}"
    return "UNEXPLAINED"


def compare(old: dict, mid: dict | None, new: dict, key, items: str, rules,
            common_only: bool = False) -> dict:
    """Per item: equal keys agree; each difference gets its run of origin and its reason.
    ``common_only``: items both have (the op catalogue's rows; the others are listed)."""
    a, b = set(old[items]), set(new[items])
    names = sorted(a & b if common_only else a | b, key=lambda s: (len(s), s))
    only = {"old": sorted(a - b), "new": sorted(b - a)} if common_only else {}
    diffs, agree = [], 0
    for name in names:
        o, n = old[items].get(name), new[items].get(name)
        m = mid[items].get(name) if mid else None
        if key(o) == key(n):
            agree += 1
            continue
        where = ("pipeline (old scalar != old program == new)" if mid and key(m) == key(n)
                 else "later change (old scalar == old program != new)" if mid and key(m) == key(o)
                 else "both" if mid else "(0f85cde program not run)")
        diffs.append({"item": name, "old": o, "mid": m, "new": n, "where": where,
                      "reason": _classify(rules, o, m, n)})
    return {"compared": len(names), "agree": agree, "differences": diffs, "only": only}


def _index(data: dict, what: str) -> dict:
    if what == "fuzz":
        return {"items": data["models"]}
    return {"items": {f"{r['op']}/{r['dtype']}": r for r in data["rows"]}}


def _short(rec: dict | None, what: str) -> str:
    if rec is None:
        return "-"
    if what == "fuzz":
        if rec.get("outcome") != "verified":
            return f"refused ({rec.get('outcome')})"
        found = "; ".join(f"{b} {c}" for b, _k, c in rec["findings"]) or "no finding"
        return f"{rec['verdict']} ({found})"
    found = "; ".join(f"{o} {c}" for o, c, _k in rec["findings"]) or "no finding"
    return f"{rec['status']} ({found})"


def _lost(d: dict, what: str) -> bool:
    """A failure of the old path that the new one passes (a bug the new path lets through,
    unless the reason shows the old one was a false alarm); inconclusive and a refusal are
    no pass. Op rows: a row ok on new whose old findings include an unexplained or 'real
    derivative error' one (rows whose old findings all had benign named causes are counted
    apart on the page)."""
    o, n = d["old"] or {}, d["new"] or {}
    if what == "fuzz":
        return o.get("verdict") == "fail" and n.get("verdict") == "pass"
    return o.get("status") in ("finding", "unexplained") and n.get("status") == "ok" and not (
        _named(_ops_causes(o)))


def write_page(args, jobs, with_mid: bool) -> None:
    sections, lines, total, agree, lost = {}, [], 0, 0, []
    for what, seed in jobs:
        tag = f"{what}{seed if what == 'fuzz' else ''}"
        data = {r: json.loads((args.work / f"{tag}_{r}.json").read_text())
                for r in (("old", "mid", "new") if with_mid else ("old", "new"))
                if r != "mid" or (args.work / f"{tag}_{r}.json").exists()}
        ix = {r: _index(d, what) for r, d in data.items()}
        key, rules = (_fuzz_key, REASONS_FUZZ) if what == "fuzz" else (_ops_key, REASONS_OPS)
        cmp = compare(ix["old"], ix.get("mid"), ix["new"], key, "items", rules,
                      common_only=what == "ops")
        cmp["runs"] = {r: {k: d[k] for k in ("cpu_s", "wall_s", "tree", "pipeline")}
                       | ({k: d[k] for k in ("verified", "agreed", "disagreements_by_cause",
                                              "unexplained")} if what == "fuzz" else {})
                       for r, d in data.items()}
        if "mid" in ix and what == "fuzz":  # 0f85cde's program path alone failing unexplained
            cmp["mid_unexplained"] = sorted(
                k for k, r in ix["mid"]["items"].items()
                if "unexplained" in _causes(r) and k not in {d["item"] for d in cmp["differences"]})
        sections[tag] = cmp
        total += cmp["compared"]
        agree += cmp["agree"]
        lost += [(tag, d) for d in cmp["differences"] if _lost(d, what)]
    named_lost = [f"{d['item']}" for s in sections.values() for d in s["differences"]
                  if "/" in d["item"] and (d["old"] or {}).get("status") == "finding"
                  and (d["new"] or {}).get("status") == "ok"]
    settings = []
    for what, seed in jobs:
        tag = f"{what}{seed if what == 'fuzz' else ''}"
        d = json.loads((args.work / f"{tag}_old.json").read_text())
        settings.append(f"{tag}: budget {d['budget']}" + (f", seed {seed}" if what == "fuzz" else
                        f", dtypes {', '.join(d['dtypes'])}, seed 0 (reports/ops.json: budget "
                        "32 and bfloat16 too; 8 here, to fit the time under load ~15)"))
    unexplained = sum(d["reason"] == "UNEXPLAINED" for s in sections.values()
                      for d in s["differences"])
    lines += ["# Gate history: the old scalar pipeline (0f85cde, from git) vs today's program "
              "pipeline", "",
              f"**Result: {agree} of {total} rows agree** (fuzz models and op-catalogue "
              f"(operator, dtype) rows); {total - agree} differ, {unexplained} of them without "
              f"an explanation; findings of the old path that the new path passes: "
              f"**{len(lost)}** ({sum(d['reason'] == 'UNEXPLAINED' for _t, d in lost)} "
              "unexplained); op rows whose old findings all had benign named causes (precision "
              f"loss, overflow, a known torch convention) and that the new path calls ok: "
              f"{len(named_lost)} ({', '.join(named_lost) or 'none'}; see their reason).", "",
              "Settings: " + "; ".join(settings) + ". 0f85cde's program path ran for the fuzz "
              "seeds only ('-' where not run): on the op catalogue (budget 8) it grew to 19 GB "
              "resident in 6 minutes and was killed by the kernel's OOM killer (today's main: "
              "the whole catalogue at budget 8 in 154 CPU s), so its op rows are not "
              "attributed; one row (gaussian_nll_loss float64) was run on it alone.", "",
              "How: `scripts/gate_history.py` (this page is its output). The old pipeline is "
              f"{OLD_COMMIT}, the parent of db9dfd1 (issue 17 step 4a, which deleted the scalar "
              "verification pipeline), checked out as a detached worktree and run with "
              "`SYMGRAD_PIPELINE=scalar` in a child process whose `PYTHONPATH` is that tree "
              "(the child checks `symgrad.__file__`); 'new' is this tree; '0f85cde program' is "
              "the old tree with `SYMGRAD_PIPELINE=program`, run where listed, to tell a "
              "pipeline difference from a change made after the deletion. Fuzz: "
              "`symgrad.fuzz.fuzz` (what `symgrad fuzz` runs) with `verify` wrapped to record "
              "each model's outcome; a model agrees when its outcome (verified / refused and "
              "why), verdict, 'agreed everywhere' and the set of (backend, kind, named cause) "
              "of its findings are equal. Op catalogue: `run_ops` (what `symgrad ops` runs), "
              "a row agrees when its status and the set of (order, cause, kind) of its findings "
              "are equal. Wording is not compared. A 'pass' is never claimed for an "
              "inconclusive or a refusal.", ""] + [f"- {f}" for f in FOUND] + [""]
    for tag, s in sections.items():
        lines += [f"## {tag}: {s['agree']} of {s['compared']} agree", "",
                  "| run | tree | pipeline | CPU s | wall s | " +
                  ("verified | agreed | by cause |" if tag.startswith("fuzz") else ""),
                  "|---|---|---|---|---|" + ("---|---|---|" if tag.startswith("fuzz") else "")]
        for r, v in s["runs"].items():
            extra = (f" {v['verified']} | {v['agreed']} | {v['disagreements_by_cause']} |"
                     if tag.startswith("fuzz") else "")
            lines.append(f"| {r} | {v['tree']} | {v['pipeline']} | {v['cpu_s']} | "
                         f"{v['wall_s']:.0f} |{extra}")
        if s.get("mid_unexplained"):
            lines += ["", "0f85cde's program path alone failed these with an unexplained mismatch "
                      "(the scalar path and today's agree on them: that path's own failure then, "
                      "gone since): " + ", ".join(s["mid_unexplained"])]
        what = "fuzz" if tag.startswith("fuzz") else "ops"
        reasons: dict[str, list[str]] = {}
        for d in s["differences"]:
            reasons.setdefault(d["reason"], []).append(d["item"])
        lines += ["", "| reason (name: why, with the commit) | differences | items |",
                  "|---|---|---|"]
        for why, items in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"| {why} | {len(items)} | {', '.join(items)} |")
        lines += ["", "| item | old (scalar) | 0f85cde program | new | where | reason |",
                  "|---|---|---|---|---|---|"]
        for d in s["differences"]:
            lines.append(f"| {d['item']} | {_short(d['old'], what)} | {_short(d['mid'], what)} "
                         f"| {_short(d['new'], what)} | {d['where']} | "
                         f"{d['reason'].split(':')[0]} |")
        for side, rows in s["only"].items():
            if rows:
                lines += ["", f"Only in the {side} catalogue ({len(rows)}, not compared): "
                          + ", ".join(rows)]
        lines.append("")
    out = ROOT / "reports" / "gate_history"
    from symgrad.atomic import write_text  # this tree's symgrad (the parent runs in it)
    write_text(out.with_suffix(".md"), "\n".join(lines))
    for tag, sec in sections.items():  # the JSON keeps each side's summary and counts
        what = "fuzz" if tag.startswith("fuzz") else "ops"
        for d in sec["differences"]:
            for side in ("old", "mid", "new"):
                r = d[side]
                d[side] = None if r is None else {
                    "summary": _short(r, what), "counts": r.get("counts") or {
                        od: {k: v for k, v in (r.get(od) or {}).items() if k != "note"}
                        for od in ("first", "second")}}
            d["reason"] = d["reason"].split(":")[0]
    write_text(out.with_suffix(".json"), json.dumps(sections, indent=1, sort_keys=True,
                                                    default=str))
    print("\n".join(lines[:4]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=("fuzz", "ops"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--ops-budget", type=int, default=32)
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--skip", default="", help="comma-separated: fuzz, ops, mid")
    ap.add_argument("--compare-only", action="store_true")
    ap.add_argument("--rerun", default="old,mid,new", help="runs to run again (the others' "
                    "JSON in --work is reused): e.g. new after a fix")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gate_history"))
    args = ap.parse_args()
    if args.child:
        import symgrad
        here = Path(symgrad.__file__).resolve().parent.parent
        if os.environ.get("PYTHONPATH") and here != Path(os.environ["PYTHONPATH"]).resolve():
            sys.exit(f"gate_history: symgrad imported from {here}, not PYTHONPATH")
        data = (_child_fuzz(args.budget, args.seed) if args.child == "fuzz"
                else _child_ops(args.budget, args.dtypes.split(",")))
        args.json.write_text(json.dumps(data, default=str))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    runs = [r for r in RUNS if not (r == "mid" and "mid" in skip)]
    if not args.compare_only:
        _ensure_old_tree()
    seeds = [int(s) for s in args.seeds.split(",")] if "fuzz" not in skip else []
    jobs = [("fuzz", s) for s in seeds[:1]] + ([("ops", 0)] if "ops" not in skip else [])
    jobs += [("fuzz", s) for s in seeds[1:]]  # the op catalogue before a second fuzz seed
    for what, seed in jobs:
        args.seed_now = seed
        for run in runs:
            out = args.work / f"{what}{seed if what == 'fuzz' else ''}_{run}.json"
            if not args.compare_only and run in args.rerun.split(","):
                print(f"gate_history: {what} seed {seed} on {run} ...", file=sys.stderr)
                _run_child(run, what, args, out)
    write_page(args, jobs, "mid" in runs)


if __name__ == "__main__":
    main()
