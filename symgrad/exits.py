"""The command line's exit codes (``symgrad verify``, ``report --strict``) and the one code of
several verdicts; importable before torch or sympy (``symgrad.cli`` shows them in its help).

>>> exit_code(["pass", "inconclusive"]), exit_code(["inconclusive", "fail"]), exit_code([])
(3, 1, 0)
"""

from __future__ import annotations

from typing import Sequence

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_CODES = ("exit codes: 0 pass, 1 fail (a model has a failing entry), 3 inconclusive (none "
              "fails, but an entry is inconclusive or suspect: not a pass), 2 bad usage or input")


def exit_code(verdicts: Sequence[str]) -> int:
    """The exit code of several models' verdicts: 1 if any fails, else 3 if any is
    inconclusive, else 0.

    Arguments:
        verdicts: the models' verdicts ("pass", "fail", "inconclusive").
    Returns:
        ``EXIT_FAIL``, ``EXIT_INCONCLUSIVE`` or ``EXIT_PASS``."""
    if "fail" in verdicts:
        return EXIT_FAIL
    if "inconclusive" in verdicts:
        return EXIT_INCONCLUSIVE
    return EXIT_PASS
