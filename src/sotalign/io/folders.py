"""Output folders: :func:`prepare_output_dir` checks one before a run writes into it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import InputError
from .files import PathLike, reason
from .lock import LOCK_FILE

__all__ = ["prepare_output_dir"]


def prepare_output_dir(path: PathLike, overwrite: bool = False, *, create: bool = True) -> Path:
    """Check (and by default create) an output folder that can be written to; return it.

    An existing non-empty folder is refused unless ``overwrite`` (the lock file of
    :func:`~sotalign.io.lock.lock_output_dir` does not count); with ``overwrite`` its files
    are kept and the ones a run writes are replaced atomically (nothing is deleted). Write access
    is checked by creating and removing a temporary file. With ``create=False`` nothing is left
    on disk: a missing folder is not created, and the check runs in its nearest existing parent
    (use this to check the output before reading the inputs, so a bad input writes nothing).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is a file; choose a folder path for the output")
    if p.is_dir() and not overwrite:
        try:
            nonempty = any(not _is_scratch(q.name) for q in p.iterdir())
        except OSError as exc:
            raise InputError(f"{p}: cannot list this folder ({reason(exc)})") from exc
        if nonempty:
            raise InputError(
                f"{p}: the output folder exists and is not empty; choose another folder or"
                " pass --overwrite (overwrite=True) to replace its files"
            )
    probe = p
    if not create:
        probe = p.absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(
                f"{p}: cannot create this output folder ({probe} is a file); choose another path"
            )
    try:
        if create:
            p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(
            f"{p}: cannot write to this output folder ({reason(exc)}); choose a folder you"
            " can write to"
        ) from exc
    return p


_PROBE_PREFIX = ".sotalign-write-test."


def _is_scratch(name: str) -> bool:
    """A lock file or a write probe: files that do not make a folder "not empty" (under
    torchrun, another rank may be probing or locking the same folder at that moment)."""
    return _is_lock(name) or name.startswith(_PROBE_PREFIX)


def _is_lock(name: str) -> bool:
    """A lock file, or the temporary file one is made from (``.lock.XXXX.tmp``)."""
    return name == LOCK_FILE or (name.startswith(LOCK_FILE + ".") and name.endswith(".tmp"))
