"""Command line: ``symgrad list``, ``symgrad verify NAME|module:attr``, ``report``, ``ops``,
``explain``, ``fuzz`` (the arguments here; each command's body in ``symgrad.commands``).

Exit codes (``verify``, ``report --strict``): 0 pass (every deciding backend agrees with the exact
derivative), 1 fail (a failing entry in some model), 3 inconclusive (no failure, but an entry the
dtype or the oracle cannot decide: never counted as a pass), 2 bad usage or input (an unknown
model, a failing model factory, an unwritable ``--out``), 130 interrupted (Ctrl-C).
``--json`` prints exactly one JSON document on stdout; progress (tqdm, ``--progress``, on by
default on a terminal) and logs go to stderr.

The arguments are parsed and a built-in model's name checked (``symgrad.zoo_index``) before
torch or sympy is imported: ``symgrad.commands``, which imports them, is imported where a
command runs (``_dispatch``), so that bad usage costs ~0.1 CPU s, not ~2.6.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Callable, Sequence

from . import heap, zoo_index
from .config import MODEL_SAMPLES
from .errors import SymgradError
from .exits import EXIT_CODES, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, EXIT_USAGE, exit_code
from .version import __version__

__all__ = ["EXIT_FAIL", "EXIT_INCONCLUSIVE", "EXIT_PASS", "EXIT_USAGE", "exit_code", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with symgrad's one-line errors: bad usage prints ``symgrad verify: error: ...``
    and where to read the usage, never the usage block itself (exit 2)."""

    subcommands: dict[str, argparse.ArgumentParser]

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown option is reported by the subcommand it followed
        (``symgrad verify: error: unrecognized arguments: --x (see symgrad verify --help)``),
        where argparse leaves it to the top-level parser."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = getattr(self, "subcommands", {}).get(getattr(parsed, "command", None), self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}{_meant(owner, extras)}")
        return parsed


def _meant(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """"; did you mean '--dtype'?" for each misspelled option among ``extras`` that is near
    one of ``parser``'s (``--dtpye float32``: newuser8), "" where none is."""
    options = [o[2:] for o in parser._option_string_actions if o.startswith("--")]
    near = [(o, f"did you mean '--{m[0]}'?") for e in extras if e.startswith("--")
            for o in [e.split("=", 1)[0]]  # the name alone: "--" made --frobnicate --format
            if (m := difflib.get_close_matches(o[2:], options, n=1, cutoff=0.75))]
    if len(near) == 1:
        return f"; {near[0][1]}"
    return "".join(f"; {o}: {h}" for o, h in near)


def _count(what: str, least: int = 1) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``least`` (1: a positive count; 0: a
    non-negative seed of a generator), else a one-line error naming ``what``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            kind = "positive" if least == 1 else "non-negative"
            raise argparse.ArgumentTypeError(f"{what} must be a {kind} integer, got {text!r}")
        return value
    return parse


_seed = _count("seed", 0)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symgrad", description="Verify gradients against the exact "
                                "symbolic derivative, in ULPs.",
                                epilog="exit codes: 0 pass, 1 fail, 3 inconclusive (nothing "
                                       "failed, but something could not be decided), 2 bad "
                                       "usage or input")
    p.add_argument("--version", action="version", version=f"symgrad {__version__}")
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
    v.add_argument("--at", default=None, metavar="x=1.1,w=2.2,...",
                   help="verify at this one point instead of random samples: every scalar "
                        "parameter and input by name (as explain --at; a matrix model: "
                        "sg.verify(model, at={...}) in Python)")
    r = sub.add_parser("report", help="verify models and write Markdown/HTML/JSON reports",
                       epilog=EXIT_CODES)
    r.add_argument("models", nargs="*", metavar="NAME|module:attr",
                   help="models to report (default: every built-in model)")
    r.add_argument("--out", default="reports", help="output folder (default reports/)")
    _run_options(r)
    r.add_argument("--strict", action="store_true",
                   help="exit 1 when a model fails, 3 when none fails but one is inconclusive "
                        "(without --strict: 0 once the report is written)")
    r.add_argument("--order", type=int, choices=(1, 2), default=1,
                   help="2: Hessian-vector products (torch's double backward, symgrad.hvp), "
                        "written to OUT/order2/ beside the first-order report")
    f = sub.add_parser("fuzz", help="verify random expressions; exit 1 on an unexplained one")
    f.add_argument("--budget", type=_count("budget"), default=200,
                   help="expressions to draw (default 200)")
    f.add_argument("--seed", type=_seed, default=0, help="seed of the expression generator")
    f.add_argument("--samples", type=_count("samples"), default=20,
                   help="samples per expression")
    o = sub.add_parser("ops", help="verify torch's own operators against exact derivatives; "
                       "write ops.md/.html/.json; exit 1 on an unexplained finding")
    o.add_argument("--ops", default=None, help="comma-separated catalogue rows (default: all)")
    o.add_argument("--dtype", default="float64,float32",
                   help="comma-separated: float64, float32, bfloat16, float16 "
                        "(default float64,float32)")
    o.add_argument("--budget", type=_count("budget"), default=32,
                   help="inputs per operator and dtype (default 32)")
    o.add_argument("--seed", type=_seed, default=0, help="seed of the input draws (default 0)")
    o.add_argument("--out", default="reports", help="output folder (default reports/)")
    o.add_argument("--device", default="cpu", help="torch device (default cpu)")
    o.add_argument("--no-second-order", action="store_true", help="skip Hessian-vector products")
    o.add_argument("--no-gradcheck", action="store_true", help="skip torch.autograd.gradcheck")
    _cluster_options(o)
    e = sub.add_parser("explain", help="print a step-by-step derivation")
    e.add_argument("model", metavar="NAME|module:attr")
    e.add_argument("--at", default=None, help="evaluate at a point, e.g. x=1.1,w=2.2,b=0,y=1")
    e.add_argument("--format", default="markdown", choices=["latex", "markdown", "html"])
    _gpt_options(e)
    p.subcommands = dict(sub.choices)
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps (default cpu)")
    p.add_argument("--dtype", default="float64", help="float64 (default), float32, ...")
    p.add_argument("--samples", type=_count("samples"), default=None,
                   help=f"random samples (default {MODEL_SAMPLES}; for a GPT tensor model as "
                        "many as the oracle checks within its budget: 14 for tiny_gpt, 1 for "
                        "gpt2)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the sample generator (default 0)")
    p.add_argument("--oracle-samples", type=_count("oracle_samples"), default=None,
                   help="samples checked by the certified oracle (default: all, capped by cost)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr for every long phase (default: on when stderr "
                        "is a terminal)")
    p.add_argument("--backends", default=None,
                   help="comma-separated subset of numpy,torch,torch_fn to verify (default all); "
                        "torch_fn alone verifies only the native/your torch code")
    p.add_argument("--threads", type=_count("threads"), default=None, metavar="N",
                   help="threads of the oracle's and the bound's large passes (default: the "
                        "machine's cores; the same result on any count)")
    p.add_argument("--oracle-device", default=None, metavar="WHERE",
                   help="where the oracle's double-double products run: numpy, or a torch "
                        "device (cuda, cpu) (default: --device's when it is CUDA, else numpy)")
    _gpt_options(p)
    _cluster_options(p)


def _gpt_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--tokens``, for the models the zoo's table builds with the GPT builder
    (``zoo_index.GPT``: the list is read from it, not written here)."""
    gpts = ", ".join(zoo_index.GPT)
    p.add_argument("--config", default=None,
                   help=f"{gpts}: a GPT_CONFIG-shaped JSON object or .json file, e.g. "
                        "'{\"n_layers\": 1}'")
    p.add_argument("--tokens", type=int, default=None,
                   help=f"{gpts}: sequence length of a sample (<= context_length)")


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p = p.add_mutually_exclusive_group()  # both: refused before torch loads
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the exact oracle (ops: each operator x dtype) as tasks on the Dask "
                        "scheduler at ADDRESS (tcp://host:port); needs symgrad[cluster]")
    p.add_argument("--workers", type=_count("workers"), default=None, metavar="N",
                   help="... or on a local Dask cluster of N worker processes")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `symgrad` program's own process (not a caller's: symgrad.heap)
        heap.keep_freed()  # freed arrays reused, not faulted in again
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        _check_names(args)
        return _dispatch(args)
    except SymgradError as exc:
        print(f"symgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symgrad: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `symgrad verify ... --json | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _check_names(args: argparse.Namespace) -> None:
    """An unknown model name's one-line error (exit 2), before anything heavy is imported
    (``module:attr``, a user's model, is imported where the command runs)."""
    names = getattr(args, "models", None) or [getattr(args, "model", None)]
    for name in names:
        if name is not None and ":" not in name and not zoo_index.known(name):
            raise SymgradError(zoo_index.unknown_model(name))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name, entry in zoo_index.ZOO.items():
            print(f"{name:<18} {entry.description}")
        return 0
    # torch and sympy load here, where a command runs (not a circle: startup cost)
    from . import commands
    run = {"verify": commands.verify_cmd, "report": commands.report_cmd,
           "explain": commands.explain_cmd, "ops": commands.ops_cmd, "fuzz": commands.fuzz_cmd}
    if args.command in run:
        return run[args.command](args)
    raise SymgradError(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
