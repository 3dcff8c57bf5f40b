"""The one exception type a user sees for bad input (the CLI maps it to exit code 2), the
"did you mean" hint its messages share, and the check that turns a misspelled keyword into
one such line (``checked_keywords``)."""

import difflib
import functools
import inspect
from typing import Any, Callable, Iterable, Sequence, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class SymgradError(ValueError):
    """Bad model description, option or argument. The message names the culprit and the fix."""


class KeywordError(SymgradError, TypeError):
    """A keyword the function does not take: a ``SymgradError`` (one line, the CLI's exit code
    2) that is also the ``TypeError`` Python raises for it, so ``except TypeError`` still holds."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"did you mean 'x'?" for the choice nearest ``name`` (difflib), "" when none is near.

    >>> did_you_mean("sigmod", ["sigmoid", "tanh"]), did_you_mean("zzz", ["tanh"])
    ("did you mean 'sigmoid'?", '')
    """
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def unknown_keywords(who: str, unknown: Sequence[str], valid: Sequence[str],
                     hints: dict[str, str] | None = None, also: Sequence[str] = (),
                     also_said: str = "also") -> str:
    """The one line for keywords ``who`` does not take: each named, with its ``hints`` entry
    or else the nearest valid one suggested (among ``valid`` and ``also``), and the valid ones
    listed (``also``, the keywords a ``**kwargs`` takes, after ``also_said``).

    >>> unknown_keywords("verify", ["sampels"], ["model", "samples", "seed"])
    "verify: unknown keyword 'sampels' (did you mean 'samples'?); its keywords: model, samples, seed"
    """
    hints = hints or {}

    def hint(u: str) -> str:  # its own hint, the valid keyword it is near, or a near hint's
        near = difflib.get_close_matches(u, list(hints), n=1)
        return (hints.get(u) or did_you_mean(u, [*valid, *also])
                or (hints[near[0]] if near else ""))
    said = "; ".join(f"{u!r}" + (f" ({h})" if (h := hint(u)) else "") for u in unknown)
    return (f"{who}: unknown keyword{'s' * (len(unknown) > 1)} {said}; its keywords: "
            f"{', '.join(valid)}" + (f"; {also_said}: {', '.join(also)}" if also else ""))


def checked_keywords(fn: F | None = None, *, hints: dict[str, str] | None = None,
                     also: Iterable[str] = (), also_said: str = "also") -> Any:
    """``fn`` (a function, or a class: its ``__init__``) with a keyword it does not take
    refused in one line (``unknown_keywords``, a ``KeywordError``) before it runs, instead of
    Python's plain TypeError; the signature (``inspect.signature``), name and docstring stay
    ``fn``'s own, and ``keywords_checked`` is set on it. A function taking ``**kwargs`` is
    returned as it is, unless ``also`` names the keywords its ``**kwargs`` takes
    (``@checked_keywords(also=...)``: gradcheck's torch options).

    Arguments:
        fn: the function or class (omitted: the decorator with ``hints`` / ``also``).
        hints: a keyword a user may expect but the function does not take -> what to do
            instead (``explain(format="latex")``: the ``Explanation``'s ``.latex()``), said
            in place of "did you mean".
        also: the keywords a ``**kwargs`` of ``fn`` takes.
        also_said: how the message introduces them.
    Returns:
        The checked function, or the class with its ``__init__`` checked.

    >>> @checked_keywords
    ... def run(model: str, *, samples: int = 8, seed: int = 0) -> int:
    ...     return samples
    >>> run("m", samples=3)
    3
    >>> run("m", sampels=3)
    Traceback (most recent call last):
    ...
    symgrad.errors.KeywordError: run: unknown keyword 'sampels' (did you mean 'samples'?); its keywords: model, samples, seed
    """
    if fn is None:
        return functools.partial(checked_keywords, hints=hints, also=tuple(also),
                                 also_said=also_said)
    if isinstance(fn, type):
        fn.__init__ = _checked(fn.__init__, fn.__name__, tuple(also),  # type: ignore[misc]
                               also_said, hints)
        return fn
    return _checked(fn, fn.__name__, tuple(also), also_said, hints)


def _checked(fn: F, who: str, also: tuple[str, ...], also_said: str,
             hints: dict[str, str] | None = None) -> F:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and not also:
        return fn
    valid = [n for n, p in params.items() if p.kind in NAMED and n != "self"]
    allowed = frozenset(valid) | frozenset(also)

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not allowed.issuperset(kwargs):  # a set test: nothing measurable per call
            raise KeywordError(unknown_keywords(who, [k for k in kwargs if k not in allowed],
                                                valid, hints, also, also_said))
        return fn(*args, **kwargs)
    checked.keywords_checked = True  # type: ignore[attr-defined]
    return checked  # type: ignore[return-value]
