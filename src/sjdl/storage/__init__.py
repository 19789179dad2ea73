"""The storage room: every file sjdl writes goes through here (atomic writes and folder
publication, the advisory lock of a folder, ownership markers, fingerprints). It sits at the
bottom of the package, beside ``config``, and imports nothing else from sjdl."""

from .atomic import (
    TMP_SUFFIX,
    atomic_path,
    fsync_dir,
    remove_stale_temporaries,
    save_npz,
    save_pil,
    stale_temporaries,
    write_atomic,
    write_error,
)
from .errors import LockedError, OwnershipError, StorageError, WriteError
from .fingerprint import sha256_bytes, sha256_file, sha256_json
from .lock import folder_lock, lock_path, real_path
from .ownership import (
    MARKER,
    check_not_input,
    check_replaceable,
    foreign_entries,
    owner,
    write_marker,
)
from .publish import fsync_tree, new_stage, publish, recover

__all__ = [
    "MARKER",
    "TMP_SUFFIX",
    "LockedError",
    "OwnershipError",
    "StorageError",
    "WriteError",
    "atomic_path",
    "check_not_input",
    "check_replaceable",
    "folder_lock",
    "foreign_entries",
    "fsync_dir",
    "fsync_tree",
    "lock_path",
    "new_stage",
    "owner",
    "publish",
    "real_path",
    "recover",
    "remove_stale_temporaries",
    "save_npz",
    "save_pil",
    "sha256_bytes",
    "sha256_file",
    "sha256_json",
    "stale_temporaries",
    "write_atomic",
    "write_error",
    "write_marker",
]
