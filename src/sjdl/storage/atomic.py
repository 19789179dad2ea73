"""Atomic file writes: a temporary with a unique name in the same folder -> write -> flush +
fsync -> ``os.replace`` -> fsync of the folder. The final name is never half-written; the
temporary is removed on any failure (a kill -9 can still leave one: ``remove_stale_temporaries``
removes those of processes that no longer run). Two writers of the same path never share a
temporary (``NAME.<pid>-<random>.tmp``, created exclusively); the last rename wins whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import WriteError

TMP_SUFFIX = ".tmp"


def _mount_point(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def write_error(path: Path, error: OSError) -> WriteError:
    """One-line error for a failed write; a full disk says so and names the device."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(
            f"no space left on device ({_mount_point(path)}) writing {path}; free some space "
            "and run again (files written earlier are intact)"
        )
    return WriteError(f"cannot write {path} ({error.strerror or error})")


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new entry in ``folder`` durable (no-op where folders can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


NAME_MAX = 255  # bytes in one file name (ext4, XFS, btrfs, APFS, NTFS)


def _temporary_name(name: str) -> str:
    """``NAME.<pid>-<random>.tmp``, with NAME shortened when a long but valid file name would
    make the temporary's name longer than the file system allows."""
    tail = f".{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"
    room = NAME_MAX - len(tail)
    raw = os.fsencode(name)
    return (os.fsdecode(raw[:room]) if len(raw) > room else name) + tail


def _new_temporary(path: Path) -> Path:
    """Create (exclusively) an empty ``NAME.<pid>-<random>.tmp`` beside ``path``."""
    while True:
        tmp = path.with_name(_temporary_name(path.name))
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return tmp
        except FileExistsError:  # pragma: no cover - 2^-32
            continue


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path`` for a writer that takes a file name
    (``np.savez``, ``faiss.write_index``, ``torch.onnx.export``, PIL ``save`` with an explicit
    format); when the block ends it is fsynced and renamed to ``path``. On any failure the
    temporary is removed and ``path`` is as it was; an ``OSError`` becomes a ``WriteError``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temporary(path)
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _write_all(f, data) -> None:  # a seam for tests (a disk that fills up mid-write)
    f.write(data)


def write_atomic(path: str | Path, data: bytes | bytearray | memoryview | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns ``path``."""
    if isinstance(data, str):
        data = data.encode()
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _write_all(f, data)
        f.flush()
    return path


def save_npz(path: str | Path, **arrays) -> Path:
    """``np.savez`` to ``path`` atomically (the name is kept as given)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


def save_pil(image, path: str | Path, **params) -> Path:
    """PIL ``image.save`` to ``path`` atomically; the format comes from the suffix."""
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise WriteError(f"{path}: unknown image format {path.suffix!r}")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **params)
    return path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Temporaries of ``names`` in ``folder`` left by writers that no longer run: the unique
    ``NAME.<pid>-<hex>.tmp`` of a dead PID, and the fixed ``NAME.tmp`` of older versions."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(
        "^(?:" + "|".join(re.escape(n) for n in names) + r")(?:\.(\d+)-[0-9a-f]{8})?\.tmp$"
    )
    stale = []
    for p in sorted(folder.iterdir()):
        m = pattern.match(p.name)
        if m and p.is_file() and (m.group(1) is None or not _alive(int(m.group(1)))):
            stale.append(p)
    return stale


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    stale = stale_temporaries(folder, names)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
