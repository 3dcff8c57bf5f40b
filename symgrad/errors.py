"""The one exception type a user sees for bad input (the CLI maps it to exit code 2)."""


class SymgradError(ValueError):
    """Bad model description, option or argument. The message names the culprit and the fix."""
