"""One writer per output folder: :func:`lock_output_dir` holds ``FOLDER/.lock`` during a run.

The lock file holds the writer's pid and host (JSON) and is ``flock``-ed by the writer for as
long as it runs. The kernel drops an ``flock`` when its process dies, however it dies (SIGKILL
included), so a lock file that nobody holds is stale and is reclaimed; one that somebody holds
is refused with :class:`FolderLockedError` naming the holder. The file is put in place with
``link(2)`` from a temporary file that is already written and locked, so a lock file is never
seen empty or unlocked; a stale one is replaced with ``rename(2)`` by a process that holds its
``flock`` (and has checked that the name still points at that file), so two processes
reclaiming the same stale lock cannot both win. Linux (or any POSIX system with ``flock``)
only; on a file system without ``flock`` the lock cannot be taken and the error says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, SotalignError
from .files import PathLike, reason

__all__ = ["LOCK_FILE", "FolderLock", "FolderLockedError", "lock_output_dir", "read_lock"]

LOCK_FILE = ".lock"
_ATTEMPTS = 20  # rounds of "create, or inspect the existing lock" before giving up


class FolderLockedError(InputError):
    """Another live process holds the output folder's lock."""

    def __init__(self, folder: Path, holder: dict[str, object], what: str) -> None:
        self.folder, self.holder = folder, holder
        super().__init__(
            f"{folder} is being written by another {what} ({_who(holder)}); wait for it or"
            " choose another --out"
        )


@dataclass
class FolderLock:
    """A held lock: the folder, the lock file, its open descriptor, and what it replaced."""

    folder: Path
    path: Path
    fd: int
    stale: dict[str, object] | None = None
    """The holder recorded in a stale lock that was reclaimed (``None``: there was none)."""

    @property
    def stale_message(self) -> str | None:
        """One line for the user about a reclaimed stale lock, or ``None``."""
        if self.stale is None:
            return None
        return (
            f"note: {self.folder}: removed a stale lock left by a run that is no longer running"
            f" ({_who(self.stale)})"
        )


def _who(holder: dict[str, object]) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"


def read_lock(path: PathLike) -> dict[str, object]:
    """The holder recorded in a lock file (``{}`` when it cannot be read or parsed)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _new_lock_file(folder: Path, what: str) -> tuple[int, Path]:
    """A temporary lock file in ``folder``: locked, holding this process's pid and host."""
    fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_FILE}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o644)  # other users' runs can read who holds the folder
        if not _try_flock(fd):  # nobody else can know this file yet
            raise OSError("flock refused on a new file")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what}
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, Path(tmp)


_FRESH: dict[str, object] = {}


def _install(fd: int, tmp: Path, path: Path, folder: Path, what: str) -> dict[str, object]:
    """Put the locked file ``tmp`` in place as ``path``; return the stale holder it replaced
    (``_FRESH`` if there was none). Raises :class:`FolderLockedError` if a live process holds
    ``path``."""
    for _ in range(_ATTEMPTS):
        try:
            os.link(tmp, path)  # atomic: fails if a lock file is there
            return _FRESH
        except FileExistsError:
            pass
        try:
            old = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile: try again
        try:
            if not _try_flock(old):
                raise FolderLockedError(folder, read_lock(path), what)
            if not _same_file(old, path):
                continue  # replaced or removed while we waited for it: look again
            holder = read_lock(path)
            os.rename(tmp, path)  # we hold the stale file's flock: replace it atomically
            return holder
        finally:
            os.close(old)
    raise InputError(f"{folder}: cannot take the lock {path} (it keeps changing); try again")


def _acquire(folder: Path, what: str) -> FolderLock:
    path = folder / LOCK_FILE
    fd, tmp = _new_lock_file(folder, what)
    try:
        stale = _install(fd, tmp, path, folder, what)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # after link(2), the temporary name is a second name of the lock
    return FolderLock(folder, path, fd, stale=None if stale is _FRESH else stale)


def _release(lock: FolderLock) -> None:
    try:
        if _same_file(lock.fd, lock.path):
            os.unlink(lock.path)  # still under our flock: nobody can reclaim it meanwhile
    finally:
        os.close(lock.fd)


@contextlib.contextmanager
def lock_output_dir(folder: PathLike, what: str = "sotalign fit") -> Iterator[FolderLock]:
    """Hold ``folder/.lock`` for the block: one writer per output folder.

    The folder (and missing parents) is created if needed; folders this call created are
    removed again at the end if they are still empty, so a run that fails before writing
    anything leaves nothing behind. Raises :class:`FolderLockedError` when another live process
    holds the lock; a stale lock (its process died) is reclaimed and reported in
    :attr:`FolderLock.stale`. The lock is released however the block ends (exceptions and
    ``KeyboardInterrupt`` included). ``what`` names the writer in the lock and in messages.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is a file; choose a folder path for the output")
    created: list[Path] = []
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
        lock = _acquire(folder, what)
    except SotalignError:
        _remove_empty(created)
        raise
    except OSError as exc:
        _remove_empty(created)
        raise InputError(
            f"{folder}: cannot lock this output folder ({reason(exc)}); choose a folder you can"
            " write to on a local file system"
        ) from exc
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield lock
    finally:
        _release(lock)
        _remove_empty(created)


def _remove_empty(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            return
