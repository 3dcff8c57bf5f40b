"""Command line: ``symgrad list``, ``symgrad verify NAME|module:attr``.

Exit codes: 0 every backend agrees with the exact derivative, 1 a mismatch, 2 bad usage or input.
``--json`` prints exactly one JSON document on stdout; progress and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from . import zoo
from .config import VerifyConfig
from .errors import SymgradError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symgrad", description="Verify gradients against the exact "
                                "symbolic derivative, in ULPs.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the built-in models")
    v = sub.add_parser("verify", help="verify a model's gradients")
    v.add_argument("models", nargs="+", metavar="NAME|module:attr")
    _run_options(v)
    v.add_argument("--no-reference", action="store_true",
                   help="skip the built-in model's native torch.nn reference (torch_fn)")
    v.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps (default cpu)")
    p.add_argument("--dtype", default="float64", help="float64 (default), float32, ...")
    p.add_argument("--samples", type=int, default=500, help="random samples (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample generator (default 0)")
    p.add_argument("--oracle-samples", type=int, default=None,
                   help="samples checked by the mpmath oracle (default: all, capped by cost)")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")


def config_from(args: argparse.Namespace) -> VerifyConfig:
    return VerifyConfig(samples=args.samples, seed=args.seed, device=args.device,
                        dtype=args.dtype, oracle_samples=args.oracle_samples,
                        progress=args.progress or (sys.stderr.isatty() and args.samples >= 2000))


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


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name in zoo.names():
            print(f"{name:<12} {zoo.get(name).description}")
        return 0
    if args.command == "verify":
        return _verify(args)
    raise SymgradError(f"unknown command {args.command!r}")  # pragma: no cover


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify

    cfg = config_from(args)
    results = []
    for name in args.models:
        model = zoo.get(name)
        print(f"symgrad: verifying {model.name} ({cfg.samples} samples, {cfg.dtype} on "
              f"{cfg.device})", file=sys.stderr)
        ref = None if args.no_reference else model.reference
        results.append(verify(model, torch_fn=ref, config=cfg))
    if args.json:
        doc = {"ok": all(r.ok for r in results), "models": [r.as_dict() for r in results]}
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for r in results:
            print(r)
            print()
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
