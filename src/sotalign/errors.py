"""Exceptions raised for user mistakes.

Every error that a user can cause by what they pass in (a bad file, a bad option, a bad array)
is a :class:`SotalignError`. The command line catches it, prints its one-line message and exits
with status 2; library users can catch it as well.
"""

from __future__ import annotations


class SotalignError(Exception):
    """A user-facing error with a one-line, actionable message."""


class InputError(SotalignError, ValueError):
    """Bad data: a file that cannot be read, wrong shapes, non-finite values."""


class ConfigError(SotalignError, ValueError):
    """A bad option, method name or configuration key."""
