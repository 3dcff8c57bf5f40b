"""Command line: ``symgrad list``, ``symgrad verify NAME|module:attr``.

Exit codes (``verify``, ``report --strict``): 0 pass (every deciding backend agrees with the exact
derivative), 1 fail (a failing entry in some model), 3 inconclusive (no failure, but an entry the
dtype or the oracle cannot decide: never counted as a pass), 2 bad usage or input (an unknown
model, a failing model factory, an unwritable ``--out``), 130 interrupted (Ctrl-C).
``--json`` prints exactly one JSON document on stdout; progress (tqdm, ``--progress``, on by
default on a terminal) and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import zoo
from .cluster import session
from .config import VerifyConfig
from .errors import SymgradError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symgrad", description="Verify gradients against the exact "
                                "symbolic derivative, in ULPs.",
                                epilog="exit codes: 0 pass, 1 fail, 3 inconclusive (nothing "
                                       "failed, but something could not be decided), 2 bad "
                                       "usage or input")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the built-in models")
    v = sub.add_parser("verify", help="verify a model's gradients; exit 0 pass, 1 fail, 3 "
                       "inconclusive", epilog=EXIT_CODES)
    v.add_argument("models", nargs="+", metavar="NAME|module:attr")
    _run_options(v)
    v.add_argument("--no-reference", action="store_true",
                   help="skip the built-in model's native torch.nn reference (torch_fn)")
    v.add_argument("--module", default=None, metavar="pkg.mod:attr",
                   help="verify your nn.Module by parameter name: attr is a module instance, or "
                        "a class/factory called with the --config dict")
    v.add_argument("--train", action="store_true",
                   help="--module in train mode: dropout fed symgrad's keep-masks")
    v.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    v.add_argument("--order", type=int, choices=(1, 2), default=1,
                   help="2: Hessian-vector products (torch's double backward, symgrad.hvp)")
    r = sub.add_parser("report", help="verify models and write Markdown/HTML/JSON reports",
                       epilog=EXIT_CODES)
    r.add_argument("models", nargs="*", metavar="NAME|module:attr",
                   help="models to report (default: every built-in model)")
    r.add_argument("--out", default="reports", help="output folder (default reports/)")
    _run_options(r)
    r.add_argument("--strict", action="store_true",
                   help="exit 1 when a model fails, 3 when none fails but one is inconclusive "
                        "(without --strict: 0 once the report is written)")
    f = sub.add_parser("fuzz", help="verify random expressions; exit 1 on an unexplained one")
    f.add_argument("--budget", type=int, default=200, help="expressions to draw (default 200)")
    f.add_argument("--seed", type=int, default=0, help="seed of the expression generator")
    f.add_argument("--samples", type=int, default=20, help="samples per expression")
    o = sub.add_parser("ops", help="verify torch's own operators against exact derivatives; "
                       "write ops.md/.html/.json; exit 1 on an unexplained finding")
    o.add_argument("--ops", default=None, help="comma-separated catalogue rows (default: all)")
    o.add_argument("--dtype", default="float64,float32",
                   help="comma-separated: float64, float32, bfloat16, float16 "
                        "(default float64,float32)")
    o.add_argument("--budget", type=int, default=32, help="inputs per operator and dtype "
                   "(default 32)")
    o.add_argument("--seed", type=int, default=0, help="seed of the input draws (default 0)")
    o.add_argument("--out", default="reports", help="output folder (default reports/)")
    o.add_argument("--device", default="cpu", help="torch device (default cpu)")
    o.add_argument("--no-second-order", action="store_true", help="skip Hessian-vector products")
    o.add_argument("--no-gradcheck", action="store_true", help="skip torch.autograd.gradcheck")
    _cluster_options(o)
    e = sub.add_parser("explain", help="print a step-by-step derivation")
    e.add_argument("model", metavar="NAME|module:attr")
    e.add_argument("--at", default=None, help="evaluate at a point, e.g. x=1.1,w=2.2,b=0,y=1")
    e.add_argument("--format", default="markdown", choices=["latex", "markdown", "html"])
    e.add_argument("--config", default=None,
                   help="tiny_gpt, gpt2: a GPT_CONFIG-shaped JSON object or .json file")
    e.add_argument("--tokens", type=int, default=None,
                   help="gpt2, tiny_gpt: sequence length of a sample (<= context_length)")
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps (default cpu)")
    p.add_argument("--dtype", default="float64", help="float64 (default), float32, ...")
    p.add_argument("--samples", type=int, default=None,
                   help=f"random samples (default {DEFAULT_SAMPLES}; for a GPT tensor model as "
                        "many as the oracle checks within its budget: 14 for tiny_gpt, 1 for "
                        "gpt2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample generator (default 0)")
    p.add_argument("--oracle-samples", type=int, default=None,
                   help="samples checked by the certified oracle (default: all, capped by cost)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr for every long phase (default: on when stderr "
                        "is a terminal)")
    p.add_argument("--backends", default=None,
                   help="comma-separated subset of numpy,torch,torch_fn to verify (default all); "
                        "torch_fn alone verifies only the native/your torch code")
    p.add_argument("--config", default=None,
                   help="tiny_gpt, gpt2: a GPT_CONFIG-shaped JSON object or .json file, e.g. "
                        "'{\"n_layers\": 1}'")
    p.add_argument("--tokens", type=int, default=None,
                   help="gpt2, tiny_gpt: sequence length of a sample (<= context_length)")
    _cluster_options(p)


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the exact oracle (ops: each operator x dtype) as tasks on the Dask "
                        "scheduler at ADDRESS (tcp://host:port); needs symgrad[cluster]")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="... or on a local Dask cluster of N worker processes")


DEFAULT_SAMPLES = 500  # samples drawn when --samples is not given (scalar models)
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_CODES = ("exit codes: 0 pass, 1 fail (a model has a failing entry), 3 inconclusive (none "
              "fails, but an entry is inconclusive or suspect: not a pass), 2 bad usage or input")


def exit_code(verdicts: Sequence[str]) -> int:
    """The exit code of several models' verdicts: 1 if any fails, else 3 if any is
    inconclusive, else 0.

    >>> exit_code(["pass", "inconclusive"]), exit_code(["inconclusive", "fail"]), exit_code([])
    (3, 1, 0)
    """
    if "fail" in verdicts:
        return EXIT_FAIL
    if "inconclusive" in verdicts:
        return EXIT_INCONCLUSIVE
    return EXIT_PASS


def config_from(args: argparse.Namespace) -> VerifyConfig:
    backends = (tuple(b.strip() for b in args.backends.split(",") if b.strip())
                if args.backends else None)
    samples = args.samples if args.samples is not None else DEFAULT_SAMPLES
    return VerifyConfig(samples=samples, seed=args.seed, device=args.device,
                        dtype=args.dtype, oracle_samples=args.oracle_samples,
                        progress=(args.progress if args.progress is not None
                                  else sys.stderr.isatty()), backends=backends)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        return _dispatch(args)
    except SymgradError as exc:
        print(f"symgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symgrad: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `symgrad verify ... --json | head`: the reader left; no traceback
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name in zoo.names() + zoo.tensor_names():
            print(f"{name:<18} {zoo.describe(name)}")
        return 0
    if args.command == "verify":
        return _verify(args)
    if args.command == "report":
        return _report(args)
    if args.command == "explain":
        return _explain(args)
    if args.command == "ops":
        return _ops(args)
    if args.command == "fuzz":
        from .fuzz import fuzz
        report = fuzz(args.budget, seed=args.seed, samples=args.samples,
                      progress=sys.stderr.isatty())
        print(report.summary())
        for d in report.unexplained:
            print(f"UNEXPLAINED: {d.reproducer}")
        return 1 if report.unexplained else 0
    raise SymgradError(f"unknown command {args.command!r}")  # pragma: no cover


def _verify(args: argparse.Namespace) -> int:
    base = config_from(args)
    with session(args.scheduler, args.workers) as client:
        return _verify_all(args, base, client)


def _verify_all(args: argparse.Namespace, base: VerifyConfig, client) -> int:
    from .verify import verify

    results, lines = [], []
    for name in args.models:
        model = _get(name, args)
        given = args.samples is not None
        cfg = samples_for(model, base, given=given)
        print(f"symgrad: verifying {model.name}: {sampling(model, cfg, given=given)}; "
              f"{cfg.dtype} on {cfg.device}", file=sys.stderr)
        if args.module:
            from .modules.load import load_module
            module = load_module(args.module, _module_config(model, args), cfg.dtype,
                                 cfg.device)
            results.append(verify(model, module=module, train=args.train, config=cfg,
                                  order=args.order))
        else:
            ref = None if args.no_reference else model.reference
            results.append(verify(model, torch_fn=ref, config=cfg, client=client,
                                  order=args.order))
        lines.append(sampling(model, cfg, given=given, checked=len(results[-1].oracle_samples)))
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


def _checked(model, cfg: VerifyConfig) -> int | None:
    """How many of ``cfg.samples`` the oracle checks (known before the run for tensor
    models; None for scalar models, whose cost is known once derived)."""
    from .tensor.model import TensorModel
    if not isinstance(model, TensorModel):
        return None
    from .tensor.verify import oracle_subset
    return len(oracle_subset(model, cfg))


def samples_for(model, cfg: VerifyConfig, *, given: bool) -> VerifyConfig:
    """Without --samples, a tensor model draws only the samples its oracle checks (the first
    K within ``oracle_budget``): samples past them would run on every backend unchecked."""
    from dataclasses import replace
    k = _checked(model, cfg)
    return cfg if given or k is None else replace(cfg, samples=k)


def sampling(model, cfg: VerifyConfig, *, given: bool, checked: int | None = None) -> str:
    """One line: samples drawn, how many the oracle checks (``checked`` once known), and why
    (on stderr before the run, in the JSON after it).

    >>> from symgrad import zoo
    >>> sampling(zoo.get("tiny_gpt"), VerifyConfig(samples=500), given=True)[:60]
    '500 samples drawn, 14 of 500 checked by the oracle (oracle_b'
    """
    n, known = cfg.samples, _checked(model, cfg)
    k = checked if checked is not None else known
    drawn = f"{n} sample{'s' * (n != 1)}"
    if k is None:  # a scalar model before its run: the result's first line says how many
        return f"{drawn} drawn"
    size = f" at {model.n_parameters:,} parameters" if known is not None else ""
    why = (f"--oracle-samples {cfg.oracle_samples}" if cfg.oracle_samples is not None else
           f"oracle_budget {cfg.oracle_budget:,} operations{size}")
    if k == n:
        every = "every one " if n > 1 else ""
        if known is None or given:
            return f"{drawn}, {every}checked by the oracle"
        return (f"{drawn}, {every}checked by the oracle (the default for this model: as many "
                f"as {why} allows)")
    return (f"{drawn} drawn, {k} of {n} checked by the oracle ({why}); the other {n - k} run "
            "on the backends but are not compared (--oracle-samples N checks more)")


def _module_config(model, args: argparse.Namespace) -> dict:
    """The config a module factory gets: the model's whole config (defaults filled in, as the
    model was built), not only the keys given with --config."""
    import dataclasses
    cfg = getattr(model, "gpt_config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else _config_dict(args)


def _config_dict(args: argparse.Namespace) -> dict:
    from .zoo.gpt import load_config
    return load_config(args.config) if getattr(args, "config", None) else {}


def _get(name: str, args: argparse.Namespace):
    tokens = getattr(args, "tokens", None)
    extra = {"tokens": tokens} if tokens is not None else {}
    try:
        if getattr(args, "config", None):
            from .zoo.gpt import load_config
            return zoo.get(name, config=load_config(args.config), **extra)
        return zoo.get(name, **extra)
    except (SymgradError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory: report it, no traceback
        raise SymgradError(f"model {name!r}: building it raised {type(exc).__name__}: {exc}; "
                           "fix the model factory (run it in Python to see the traceback)"
                           ) from None


def _report(args: argparse.Namespace) -> int:
    import time

    from .progress import phase
    from .report import Entry, write_reports
    from .verify import verify

    cfg = config_from(args)
    check_writable(Path(args.out))
    names = args.models or zoo.names()
    entries = []
    t_all = time.perf_counter()
    with session(args.scheduler, args.workers) as client, \
            phase("models", enabled=cfg.progress, total=len(names), unit="model") as bar:
        for name in names:
            model = _get(name, args)
            bar.set_postfix_str(model.name)
            if not cfg.progress:
                print(f"symgrad: verifying {model.name}", file=sys.stderr)
            t0 = time.perf_counter()
            result = verify(model, torch_fn=model.reference,
                            config=samples_for(model, cfg, given=args.samples is not None),
                            client=client)
            entries.append(Entry(model, result, time.perf_counter() - t0))
            bar.update(1)
    with phase(f"writing the report to {args.out}/", enabled=cfg.progress):
        written = write_reports(entries, args.out)
    for e in entries:
        n = e.result.finding_counts()
        print(f"{e.model.name:<18} {e.result.verdict.upper():<12} {e.seconds:6.2f} s  "
              f"{n['failures']} failing, {n['warnings']} precision-loss entries")
    print(f"symgrad: wrote {len(written)} files to {args.out}/ in "
          f"{time.perf_counter() - t_all:.1f} s", file=sys.stderr)
    print(f"symgrad: open {Path(args.out) / 'index.html'}", file=sys.stderr)
    return exit_code([e.result.verdict for e in entries]) if args.strict else EXIT_PASS


def check_writable(out: Path) -> None:
    """Fail early (exit 2) when the report could not be written to ``out``."""
    import tempfile
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


def _ops(args: argparse.Namespace) -> int:
    from .opcatalog import OpsConfig, run_ops
    from .opcatalog.report import write_ops_report

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


def _explain(args: argparse.Namespace) -> int:
    from .explain import explain, parse_point

    model = _get(args.model, args)
    at = _block_point(model, parse_point(args.at)) if args.at else None
    e = explain(model, at=at)
    print({"latex": e.latex, "markdown": e.markdown, "html": e.html}[args.format]())
    return 0


def _block_point(model, point: dict) -> dict:
    """--at gives scalars by name; matrix blocks need every entry (W1_{0,3}=...)."""
    for b in model.blocks:
        if b.shape and b.name not in point:
            raise SymgradError(f"--at: {b.name!r} is a block of shape {b.shape}; --at takes "
                               "scalar values only, use the Python API (sg.explain) for "
                               "matrix models")
    return point


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
