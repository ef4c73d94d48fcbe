"""Atomic writes: a file or a folder appears complete under its final name, or not at all.

:func:`atomic_write` writes a file: data goes to a temporary file in the target folder, is
flushed and fsync'ed, then renamed over the target. :func:`atomic_dir` does the same for a
folder of files (a training checkpoint). A crash or an exception mid-write leaves the previous
version (or nothing) in place, never a truncated one, and removes the temporary. The folder
holding the target is fsync'ed after the rename so that the rename survives a power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import InputError
from .files import PathLike, reason

__all__ = ["atomic_dir", "atomic_write", "write_json_atomic"]

# The process umask, read once: temporary files are created 0600 (folders 0700), and the renamed
# result should get the permissions an ordinary ``open(path, "w")`` (``mkdir``) would have given.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync it and rename it over ``path``.

    A crash or an exception leaves ``path`` as it was (absent or the previous version); the
    temporary file is removed. The rename is atomic on POSIX file systems because the temporary
    file lives in the same folder; the folder is fsync'ed afterwards so the rename survives a
    power loss.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a read-only place: one line, not a traceback
            raise _cannot_write(path, exc) from exc
        raise
    _fsync_dir(path.parent)


def _cannot_write(path: Path, exc: OSError) -> InputError:
    return InputError(f"{path}: cannot write here ({reason(exc)}); choose another place for it")


@contextlib.contextmanager
def atomic_dir(final: PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success move it into place.

    Write the folder's files into the yielded path. When the block ends, every file in it (and
    the folder itself) is fsync'ed and the folder is renamed to ``final``. An existing ``final``
    is replaced: it is first renamed aside and deleted only after the new folder is in place, so
    ``final`` is never a half-written or half-deleted folder. An exception in the block (or in
    the move) removes the temporary folder, puts the old ``final`` back if it was moved aside,
    and propagates. Temporary names start with ``.`` (``.NAME.XXXX.tmp``), so they never match
    the pattern of the real folders.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    aside = tmp.with_suffix(".old")  # unique: it carries the random part of ``tmp``
    moved_aside = False
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)
        if final.exists() or final.is_symlink():
            os.replace(final, aside)
            moved_aside = True
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved_aside:
            with contextlib.suppress(OSError):
                os.replace(aside, final)
        raise
    _fsync_dir(final.parent)
    if moved_aside:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(aside)


def _fsync_tree(folder: Path) -> None:
    """fsync every regular file below ``folder``, then each folder (deepest first)."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename inside it is durable (best effort; not on all systems)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _json_default(obj: Any) -> Any:
    """JSON encoding for numpy scalars and arrays, torch scalars and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if type(obj).__module__.startswith("torch") and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically.

    numpy and torch scalars/arrays and paths are converted to plain JSON values.
    """
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
