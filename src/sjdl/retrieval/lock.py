"""An exclusive lock on an index folder while it is written (``<folder>.lock`` beside it).

The lock is an ``flock`` on the lock file, so the kernel releases it when its holder exits,
even by kill -9: a lock is never stale. The holder's PID is written into the file, so a second
writer fails at once with "being written by PID N" instead of silently losing one side's rows.
A thread that already holds the lock of a folder may enter it again (``Gallery.save`` inside
``sjdl index build``'s lock).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL lock file only
    fcntl = None


class LockedError(ValueError):
    """Another process is writing the same index folder."""


_held = threading.local()  # lock files this thread holds (re-entry is a no-op)


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).absolute()
    return folder.with_name(folder.name + ".lock")


def _busy(folder: Path, path: Path) -> LockedError:
    try:
        pid = path.read_text().strip() or "?"
    except OSError:
        pid = "?"
    return LockedError(
        f"{folder}: the index is being written by PID {pid} (lock {path}); "
        "wait for that command to finish, then run this one again"
    )


@contextlib.contextmanager
def folder_lock(folder: str | Path):
    """Hold an exclusive, non-blocking lock on ``folder`` for the ``with`` block."""
    folder = Path(folder)
    path = lock_path(folder)
    held = _held.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    held.add(path)
    try:
        with _acquire(folder, path):
            yield
    finally:
        held.discard(path)


@contextlib.contextmanager
def _acquire(folder: Path, path: Path):
    if fcntl is None:  # pragma: no cover
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise _busy(folder, path) from None
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:  # a folder or a file we may not write in the lock's place
            raise LockedError(
                f"{path}: cannot use it as the lock of {folder} ({e.strerror}); remove it "
                "if no sjdl command is running"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, path) from None
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
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
