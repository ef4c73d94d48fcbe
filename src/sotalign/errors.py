"""Exceptions and warnings raised for user mistakes.

Every error that a user can cause by what they pass in (a bad file, a bad option, a bad array)
is a :class:`SotalignError`. The command line catches it, prints its one-line message and exits
with status 2; library users can catch it as well. Messages are one line: what is wrong, where
(the file or option), and how to fix it.
"""

from __future__ import annotations


def one_line(text: object) -> str:
    """``str(text)`` with line breaks and other control characters escaped (``\\n``), so that a
    message built from file contents (a key, a column name) always prints as one line."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text)
    )


class SotalignError(Exception):
    """A user-facing error with a one-line, actionable message (control characters escaped)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(message), *args)


class InputError(SotalignError, ValueError):
    """Bad data: a file that cannot be read, wrong shapes, non-finite values."""


class ConfigError(SotalignError, ValueError):
    """A bad option, method name or configuration key."""


class MissingDependencyError(SotalignError, ImportError):
    """An optional package needed for this file format or feature is not installed."""


class UnderdeterminedWarning(UserWarning):
    """Fewer pairs than dimensions: the pair covariance is rank-deficient and only the ridge
    term keeps the linear teacher well-posed."""


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest valid name, or ``""`` if none is close."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
