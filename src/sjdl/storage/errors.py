"""The storage room's errors: each message is one line that names the file or folder."""

from __future__ import annotations


class StorageError(ValueError):
    """A file or folder could not be written, locked or replaced safely."""


class WriteError(StorageError):
    """A write failed (a full disk included); the final file is as it was before."""


class LockedError(StorageError):
    """Another process holds the folder's lock; the message names its PID."""


class OwnershipError(StorageError):
    """Writing there would replace or delete files that are not the command's own output."""
