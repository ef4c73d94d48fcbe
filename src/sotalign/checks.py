"""Typed checks of configuration values: convert what is unambiguous, refuse the rest.

Each check returns the value converted to its type or raises a one-line
:class:`~sotalign.errors.ConfigError` that names the parameter, what it must be and what was
given. Values from JSON, TOML or ``--set`` arrive as JSON types; an integral float such as
``1e3`` is accepted where an integer is expected, a bool never counts as a number, and
strings are never parsed here (that is :func:`sotalign.config.parse_value`'s job).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, closest

__all__ = ["check_bool", "check_choice", "check_float", "check_int", "check_optional_str"]


def _bound(lo: float | None, hi: float | None, lo_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    return " and ".join(parts)


def _eg(example: str | None) -> str:
    return f" (e.g. {example})" if example else ""


def check_int(name: str, value: Any, *, lo: int | None = None, example: str | None = None) -> int:
    """An integer (``>= lo`` when given); integral floats such as ``2000.0`` are converted."""
    ok = not isinstance(value, bool) and (
        isinstance(value, int)
        or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    )
    if ok and (lo is None or value >= lo):
        return int(value)
    what = "an integer" + (f" >= {lo}" if lo is not None else "")
    raise ConfigError(f"{name} must be {what}{_eg(example)}, got {value!r}")


def check_float(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    example: str | None = None,
) -> float:
    """A finite real number in the given bounds (``lo_open``: strictly above ``lo``)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(float(value))
    )
    if ok:
        v = float(value)
        below = lo is not None and (v <= lo if lo_open else v < lo)
        above = hi is not None and v > hi
        if not (below or above):
            return v
    bound = _bound(lo, hi, lo_open)
    what = "a finite number" + (f" {bound}" if bound else "")
    raise ConfigError(f"{name} must be {what}{_eg(example)}, got {value!r}")


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (JSON ``true``/``false``); nothing else is guessed."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``, with a "did you mean" for near misses."""
    if isinstance(value, str) and value in choices:
        return value
    hint = closest(value, list(choices)) if isinstance(value, str) else ""
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}{hint}")


def check_optional_str(name: str, value: Any) -> str | None:
    """A string or ``None`` (e.g. a folder path); ``os.PathLike`` values become strings."""
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "__fspath__"):
        return str(value)
    raise ConfigError(f"{name} must be a string or null, got {value!r}")
