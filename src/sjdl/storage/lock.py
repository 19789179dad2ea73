"""The advisory lock of a folder that a command writes (an index, a run, a study).

The lock is ``<folder>.lock`` beside the folder, with the folder's path resolved through
symlinks first (a link to a folder and the folder share one lock). It is an ``flock`` on that
file, so the kernel releases it when its holder exits, even by kill -9: a lock is never stale.
The holder writes its PID into the file; a second writer fails at once with "being written by
PID N". A thread that already holds a folder's lock may enter it again.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from .errors import LockedError, StorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL lock file only
    fcntl = None

_held = threading.local()  # lock files this thread holds (re-entry is a no-op)


def real_path(path: str | Path) -> Path:
    """``path`` made absolute with every symlink resolved (a looping one is kept as is)."""
    try:
        return Path(path).absolute().resolve()
    except (OSError, RuntimeError):
        return Path(path).absolute()


def lock_path(folder: str | Path) -> Path:
    folder = real_path(folder)
    return folder.with_name(folder.name + ".lock")


def _busy(folder: Path, path: Path, what: str) -> LockedError:
    try:
        pid = path.read_text().strip() or "?"
    except (OSError, UnicodeDecodeError):
        pid = "?"
    return LockedError(
        f"{folder}: {what} is being written by PID {pid} (lock {path}); "
        "wait for that command to finish, then run this one again"
    )


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "the index"):
    """Hold an exclusive, non-blocking lock on ``folder`` for the ``with`` block; ``what``
    names the folder's content in the message a second writer gets."""
    folder = Path(folder)
    path = lock_path(folder)
    held = _held.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    if path.is_dir():
        raise StorageError(
            f"{path} is a folder, not a lock file; remove it (sjdl creates it while "
            f"writing {folder})"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {path.parent} ({e.strerror or e})") from None
    held.add(path)
    try:
        with _acquire(folder, path, what):
            yield
    finally:
        held.discard(path)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except IsADirectoryError:
        raise StorageError(f"{path} is a folder, not a lock file; remove it") from None
    except OSError as e:
        raise StorageError(f"cannot open the lock file {path} ({e.strerror or e})") from None


@contextlib.contextmanager
def _acquire(folder: Path, path: Path, what: str):
    if fcntl is None:  # pragma: no cover
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise _busy(folder, path, what) from None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, path, what) from None
        # the file may have been unlinked by the previous holder between open and flock
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
