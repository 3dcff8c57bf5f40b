"""The commands behind ``symgrad`` (``symgrad.cli`` parses the arguments and calls one):
verify, report, ops, explain, fuzz, and how a run's samples are chosen and described (the
exit codes: ``symgrad.exits``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from . import zoo
from .cluster import session
from .backends.torch import check_device
from .config import MODEL_SAMPLES, VerifyConfig, dtype_name
from .errors import SymgradError
from .exits import (EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, exit_code)
from .explain import explain, inexact_note, parse_point
from .fuzz import fuzz
from .modules.load import load_module
from .opcatalog import OpsConfig, run_ops
from .points import given_samples
from .opcatalog.report import write_ops_report
from .progress import phase
from .report import Entry, write_reports
from .tensor.model import program_of
from .tensor.verify import oracle_subset
from .verify import verify
from .zoo.gpt import load_config


def config_from(args: argparse.Namespace) -> VerifyConfig:
    """The run's config from the command line, its device and dtype checked before any model
    is built or announced (verify and report)."""
    dtype = dtype_name(args.dtype)
    check_device(args.device, dtype)
    backends = (tuple(b.strip() for b in args.backends.split(",") if b.strip())
                if args.backends else None)
    samples = args.samples if args.samples is not None else MODEL_SAMPLES
    cfg = VerifyConfig(samples=samples, seed=args.seed, device=args.device,
                       dtype=dtype, oracle_samples=args.oracle_samples,
                       progress=(args.progress if args.progress is not None
                                 else sys.stderr.isatty()), backends=backends,
                       threads=getattr(args, "threads", None),
                       oracle_device=getattr(args, "oracle_device", None))
    if cfg.oracle_products != "numpy":  # --oracle-device cuda on a machine without one
        check_device(cfg.oracle_products, "float64")
    return cfg


def verify_cmd(args: argparse.Namespace) -> int:
    base = config_from(args)
    if args.train and not args.module:
        raise SymgradError("--train runs your --module in train mode and applies only with it; "
                           "drop --train, or give --module pkg.mod:attr")
    if args.at is not None and args.samples is not None:
        raise SymgradError(f"--at {args.at} is the one point verified, --samples "
                           f"{args.samples} asks for random draws; drop one of them")
    with session(args.scheduler, args.workers) as client:
        return _verify_all(args, base, client)


def _verify_all(args: argparse.Namespace, base: VerifyConfig, client) -> int:
    results, lines = [], []
    for name in args.models:
        model = _get(name, args)
        given = args.samples is not None
        at = (_block_point(model, parse_point(args.at), "verify") if args.at is not None
              else None)
        if at is not None:  # a missing or misspelled name: its one line before the run starts
            given_samples(model, at, "--at")
        cfg = replace(base, samples=1) if at is not None else samples_for(model, base,
                                                                          given=given)
        line = (f"the one point given by --at ({args.at}), checked by the oracle"
                if at is not None else sampling(model, cfg, given=given))
        # the user's module is loaded before the run is announced: an import error is the
        # one line, not a second one after "verifying ..."
        module = (load_module(args.module, _module_config(model, args), cfg.dtype, cfg.device)
                  if args.module else None)
        if module is None and "torch_fn" in (cfg.backends or ()) and (  # (newuser12: read
                args.no_reference or model.reference is None):  # "pass torch_fn=...")
            raise SymgradError(f"--backends torch_fn: model {model.name!r} has no torch code of "
                               "its own to verify" + (" (--no-reference drops it)" if
                                                      args.no_reference else "")
                               + "; give your model one, sg.Model(..., reference=your_torch_fn)"
                               ", or a module with --module, or drop torch_fn from --backends")
        what = " at order 2 (Hessian-vector products)" if args.order == 2 else ""
        print(f"symgrad: verifying {model.name}{what}: {line}; {cfg.dtype} on {cfg.device}",
              file=sys.stderr)
        if at is not None and (note := inexact_note(args.at)):  # 0.3 is 0.2999...9889
            print(f"symgrad: note: {note}", file=sys.stderr)
        if module is not None:
            results.append(verify(model, module=module, train=args.train, config=cfg,
                                  order=args.order, at=at))
        else:
            ref = None if args.no_reference else model.reference
            results.append(verify(model, torch_fn=ref, config=cfg, client=client,
                                  order=args.order, at=at))
        lines.append(line if at is not None else
                     sampling(model, cfg, given=given, checked=len(results[-1].oracle_samples)))
    if args.json:
        doc = {"ok": all(r.ok for r in results),
               "verdict": _overall([r.verdict for r in results]),
               "models": [dict(r.as_dict(), sampling=line) for r, line in zip(results, lines)]}
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for r in results:
            print(r)
            print()
    return exit_code([r.verdict for r in results])


def _overall(verdicts: Sequence[str]) -> str:
    """One verdict for several models: fail > inconclusive > pass."""
    return {EXIT_FAIL: "fail", EXIT_INCONCLUSIVE: "inconclusive", EXIT_PASS: "pass"}[
        exit_code(verdicts)]


def _checked(model, cfg: VerifyConfig) -> int:
    """How many of ``cfg.samples`` the oracle checks (known before the run: every model is
    verified as its tensor program, ``program_of``)."""
    return len(oracle_subset(program_of(model), cfg))


def samples_for(model, cfg: VerifyConfig, *, given: bool) -> VerifyConfig:
    """Without --samples, a model draws only the samples its oracle checks (the first K within
    ``oracle_budget``): samples past them would run on every backend unchecked."""
    return cfg if given else replace(cfg, samples=_checked(model, cfg))


def sampling(model, cfg: VerifyConfig, *, given: bool, checked: int | None = None) -> str:
    """One line: samples drawn, how many the oracle checks (``checked`` once known), and why
    (on stderr before the run, in the JSON after it).

    >>> from symgrad import zoo
    >>> sampling(zoo.get("tiny_gpt"), VerifyConfig(samples=500), given=True)[:60]
    '500 samples drawn, 14 of 500 checked by the oracle (oracle_b'
    """
    n = cfg.samples
    k = checked if checked is not None else _checked(model, cfg)
    drawn = f"{n} sample{'s' * (n != 1)}"
    why = (f"--oracle-samples {cfg.oracle_samples}" if cfg.oracle_samples is not None else
           f"oracle_budget {cfg.oracle_budget:,} operations at "
           f"{program_of(model).n_parameters:,} parameters")
    if k == n:
        every = "every one " if n > 1 else ""
        if given:
            return f"{drawn}, {every}checked by the oracle"
        return (f"{drawn}, {every}checked by the oracle (the default for this model: as many "
                f"as {why} allows)")
    return (f"{drawn} drawn, {k} of {n} checked by the oracle ({why}); the other {n - k} run "
            "on the backends but are not compared (--oracle-samples N checks more)")


def _module_config(model, args: argparse.Namespace) -> dict:
    """The config a module factory gets: the model's whole config (defaults filled in, as the
    model was built), not only the keys given with --config."""
    cfg = getattr(model, "gpt_config", None)
    return (dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else
            load_config(args.config) if getattr(args, "config", None) else {})


def _get(name: str, args: argparse.Namespace):
    tokens = getattr(args, "tokens", None)
    extra = {"tokens": tokens} if tokens is not None else {}
    try:
        if getattr(args, "config", None):
            return zoo.get(name, config=load_config(args.config), **extra)
        return zoo.get(name, **extra)
    except (SymgradError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory: report it, no traceback
        raise SymgradError(f"model {name!r}: building it raised {type(exc).__name__}: {exc}; "
                           "fix the model factory (run it in Python to see the traceback)"
                           ) from None


ORDER2_DIR = "order2"  # `report --order 2` writes its set here, inside --out


def report_cmd(args: argparse.Namespace) -> int:
    """``symgrad report``: verify models, write the report set (``--order 2``: the
    Hessian-vector products' set, to ``<out>/order2/``; the first-order set is left as is)."""
    cfg = config_from(args)
    order = getattr(args, "order", 1)
    out = Path(args.out) / ORDER2_DIR if order == 2 else Path(args.out)
    check_writable(out)
    names = args.models or zoo.names()
    what = " at order 2 (Hessian-vector products)" if order == 2 else ""
    entries = []
    t_all = time.perf_counter()
    with session(args.scheduler, args.workers) as client, \
            phase("models", enabled=cfg.progress, total=len(names), unit="model") as bar:
        for name in names:
            model = _get(name, args)
            bar.set_postfix_str(model.name)
            if not cfg.progress:
                print(f"symgrad: verifying {model.name}{what}", file=sys.stderr)
            t0 = time.perf_counter()
            result = verify(model, torch_fn=model.reference,
                            config=samples_for(model, cfg, given=args.samples is not None),
                            client=client, order=order)
            entries.append(Entry(model, result, time.perf_counter() - t0))
            bar.update(1)
    with phase(f"writing the report to {out}/", enabled=cfg.progress):
        written = write_reports(entries, out)
    for e in entries:
        n = e.result.finding_counts()
        print(f"{e.model.name:<18} {e.result.verdict.upper():<12} {e.seconds:6.2f} s  "
              f"{n['failures']} failing, {n['warnings']} precision-loss entries")
    print(f"symgrad: wrote {len(written)} files to {out}/{what} in "
          f"{time.perf_counter() - t_all:.1f} s", file=sys.stderr)
    print(f"symgrad: open {out / 'index.html'}", file=sys.stderr)
    return exit_code([e.result.verdict for e in entries]) if args.strict else EXIT_PASS


def check_writable(out: Path) -> None:
    """Fail early (exit 2) when the report could not be written to ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
        with tempfile.TemporaryFile(dir=out.resolve().parent):  # where the set is staged
            pass
    except OSError as exc:
        raise SymgradError(f"--out {str(out)!r}: cannot write the report there "
                           f"({exc.strerror or exc}); choose a writable folder, e.g. "
                           "--out reports") from None


def ops_cmd(args: argparse.Namespace) -> int:
    check_writable(Path(args.out))  # before the run, not after it (a traceback, exit 1)
    names = tuple(n.strip() for n in args.ops.split(",") if n.strip()) if args.ops else None
    cfg = OpsConfig(ops=names, dtypes=tuple(d.strip() for d in args.dtype.split(",")),
                    budget=args.budget, seed=args.seed, device=args.device,
                    second_order=not args.no_second_order, gradcheck=not args.no_gradcheck,
                    progress=sys.stderr.isatty())
    with session(args.scheduler, args.workers) as client:
        report = run_ops(cfg, client=client)
    written = write_ops_report(report, args.out)
    for row in report.rows:
        if row.status in ("unexplained", "error"):
            print(f"{row.op:<28} {row.dtype:<9} {row.status.upper()}: "
                  f"{row.note or '; '.join(f.cause for f in row.findings)}")
    n = len({r.op for r in report.rows if r.status not in ("unsupported", "error")})
    print(f"symgrad ops: {n} operators x {len(cfg.dtypes)} dtypes in {report.seconds:.1f} s; "
          f"{len(report.findings)} findings ({len(report.unexplained)} unexplained); wrote "
          f"{', '.join(str(p) for p in written)}")
    return 0 if report.ok else 1


def explain_cmd(args: argparse.Namespace) -> int:
    model = _get(args.model, args)
    at = _block_point(model, parse_point(args.at)) if args.at else None
    e = explain(model, at=at)
    print({"latex": e.latex, "markdown": e.markdown, "html": e.html}[args.format]())
    if args.at and (note := inexact_note(args.at)):  # z = 2.8e-17 at a point meant to give 0
        print(f"symgrad: note: {note}", file=sys.stderr)
    return 0


def _block_point(model, point: dict, command: str = "explain") -> dict:
    """--at gives scalars by name; a matrix block is refused, naming the Python call that takes
    its array (``sg.explain`` / ``sg.verify`` with ``at={...}``): the first one given (an
    array block left out was named even where the user gave another: ``--at W=1`` said "'c'
    is a block of shape (3,)", newuser8), and every array block listed."""
    arrays = [b for b in model.blocks if b.shape]
    if arrays:
        b = next((b for b in arrays if b.name in point), arrays[0])
        every = ", ".join(f"{a.name} {tuple(a.shape)}" for a in arrays)
        raise SymgradError(f"--at: {b.name!r} is a block of shape {tuple(b.shape)} (array "
                           f"blocks: {every}); --at takes scalar values only, use the Python "
                           f"API (sg.{command}(model, at={{...}})) for matrix models")
    return point


def fuzz_cmd(args: argparse.Namespace) -> int:
    """``symgrad fuzz``: random models and inputs; 1 if any disagreement is unexplained."""
    report = fuzz(args.budget, seed=args.seed, samples=args.samples,
                  progress=sys.stderr.isatty())
    print(report.summary())
    for d in report.unexplained:
        print(f"UNEXPLAINED: {d.reproducer}")
    return 1 if report.unexplained else 0
