"""The one exception type a user sees for bad input (the CLI maps it to exit code 2), and the
"did you mean" hint its messages share."""

import difflib
from typing import Iterable


class SymgradError(ValueError):
    """Bad model description, option or argument. The message names the culprit and the fix."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"did you mean 'x'?" for the choice nearest ``name`` (difflib), "" when none is near.

    >>> did_you_mean("sigmod", ["sigmoid", "tanh"]), did_you_mean("zzz", ["tanh"])
    ("did you mean 'sigmoid'?", '')
    """
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
