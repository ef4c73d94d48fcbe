"""What every reader shares: opening an input file, naming its contents in one-line messages,
picking the embeddings array in a file that holds several, importing optional format packages.

The bottom of :mod:`sotalign.io`: it imports nothing else from the package.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependencyError, closest

__all__ = [
    "FORMATS_EXTRA",
    "PathLike",
    "choose_array",
    "existing_file",
    "is_int",
    "name_list",
    "reason",
    "require",
]

PathLike = str | os.PathLike[str]

#: How to install the optional packages that read HDF5 and parquet.
FORMATS_EXTRA = "pip install 'sotalign[formats]'"


def reason(exc: BaseException) -> str:
    """A one-line, bounded description of a low-level exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def existing_file(path: PathLike, what: str) -> Path:
    """Return ``Path(path)`` if it is a readable, non-empty file; else raise InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file; check the path of the {what}")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a file; pass the {what} file itself")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"{p}: cannot read it ({reason(exc)}); check its permissions") from exc
    if size == 0:
        raise InputError(f"{p}: the file is empty (0 bytes); re-create the {what}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied; make the file readable (chmod +r)")
    return p


def require(module: str, path: Path) -> Any:
    """Import an optional package, or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{path}: reading {path.suffix} files needs the '{module}' package; install it with:"
            f" {FORMATS_EXTRA}"
        ) from exc


def is_int(x: Any) -> bool:
    """True for a Python ``int`` that is not a ``bool`` (as parsed from JSON)."""
    return isinstance(x, int) and not isinstance(x, bool)


def name_list(names: list[str], limit: int = 8) -> str:
    """``'a', 'b' and 3 more``: the names a file holds, bounded for a one-line message."""
    if not names:
        return "nothing"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def choose_array(
    names: list[str], key: str | None, candidates: list[str], where: str, what: str
) -> str:
    """Pick the array to read: ``key``, else "embeddings", else the only candidate."""
    if key is not None:
        if key in names:
            return key
        raise InputError(
            f"{where}: no {what} named '{key}'{closest(key, names)}; it holds:"
            f" {name_list(names)}; pass one of these as the key"
        )
    if "embeddings" in names:
        return "embeddings"
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(
            f"{where}: no 2-D float {what} found (it holds: {name_list(names)}); store the"
            " embeddings as a 2-D float array named 'embeddings'"
        )
    raise InputError(
        f"{where}: several 2-D {what}s ({name_list(candidates)}) and none is named 'embeddings';"
        " pass the one to use as the key"
    )
