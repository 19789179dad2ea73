"""Which sjdl command owns a folder, and what ``--overwrite`` may replace there.

A folder that sjdl writes holds a small marker, ``.sjdl-owner.json`` ({"kind": ..., "command":
...}). A command may replace only its own kind of output, and only its own file names:
foreign files are never deleted (the command refuses and names them). Outputs are never
written over an input of the same command.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .atomic import write_atomic
from .errors import OwnershipError
from .lock import real_path

MARKER = ".sjdl-owner.json"


def marker(kind: str, command: str) -> str:
    return json.dumps({"kind": kind, "command": command}, indent=1) + "\n"


def write_marker(folder: str | Path, kind: str, command: str) -> Path:
    """Mark ``folder`` as ``kind`` output of ``command`` (atomic)."""
    return write_atomic(Path(folder) / MARKER, marker(kind, command))


def owner(folder: str | Path) -> str | None:
    """The kind named by ``folder``'s marker; None without a readable marker."""
    try:
        kind = json.loads((Path(folder) / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def foreign_entries(folder: str | Path, own: Iterable[str]) -> list[str]:
    """Names in ``folder`` that are neither ``own`` nor the marker (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    mine = {*own, MARKER}
    return sorted(p.name for p in folder.iterdir() if p.name not in mine)


def check_replaceable(folder: str | Path, kind: str, own: Iterable[str], command: str) -> None:
    """Refuse to replace ``folder`` unless it holds only ``kind`` output of ours: a marker
    of another kind, or any file that is not one of ``own``, stops ``command``."""
    folder = Path(folder)
    found = owner(folder)
    if found is not None and found != kind:
        raise OwnershipError(
            f"{folder} holds the output of another sjdl command ({found}, not {kind}); "
            f"{command} replaces only its own kind of output: choose another folder"
        )
    foreign = foreign_entries(folder, own)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise OwnershipError(
            f"{folder} holds files that are not {kind} output ({', '.join(foreign[:3])}{more}); "
            f"{command} deletes only its own files: move them out or choose another folder"
        )


def _inside(path: Path, folder: Path) -> bool:
    path, folder = real_path(path), real_path(folder)
    return path == folder or folder in path.parents


def check_not_input(output: str | Path, inputs: Iterable[str | Path], what: str = "-o") -> None:
    """Refuse an output that is an input, lies inside an input folder or holds an input
    (symlinks resolved)."""
    output = Path(output)
    for p in inputs:
        if p is None:
            continue
        p = Path(p)
        if _inside(output, p) or _inside(p, output):
            raise OwnershipError(
                f"{what} {output} would write over {p}, an input of this command; "
                "choose another name"
            )
