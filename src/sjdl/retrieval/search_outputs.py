"""Where ``sjdl search`` writes (the rank-list picture, the restored query), checked before
the search runs: a known image type, an existing folder, never the query, an image of the
index's gallery or a file in the index folder, never an existing file unless ``overwrite``.
The picture is written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from .outputs import OutputError, _inside, _real

WRITABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


def check_search_outputs(
    outputs: dict[str, Path], query: Path, gallery, overwrite: bool = False
) -> None:
    """Refuse (``OutputError``, naming the option and the file) any of ``outputs``
    ({option: path}) that cannot or must not be written; ``gallery``: the opened
    ``Gallery`` whose images and folder are inputs."""
    rows = gallery._index.paths()
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        where = f"{flag} {path}"
        if path.is_dir():
            raise OutputError(f"{where} is a folder; give a file name, e.g. {path / 'ranks.png'}")
        if path.suffix.lower() not in WRITABLE:
            kinds = ", ".join(WRITABLE)
            raise OutputError(
                f"{where}: cannot write images of type {path.suffix or '(no suffix)'!r}; "
                f"use one of {kinds}"
            )
        if not path.parent.is_dir():
            raise OutputError(f"{where}: the folder {path.parent} does not exist; create it first")
        real = _real(path)
        if real == _real(query):
            raise OutputError(f"{where} is the query image; writing it would destroy the query")
        if str(real) in rows or str(path.absolute()) in rows:
            raise OutputError(
                f"{where} is an image of the index's gallery; writing it would make the index "
                "wrong; choose another file"
            )
        if gallery.folder is not None and _inside(path, gallery.folder):
            raise OutputError(f"{where} is inside the index folder {gallery.folder}")
        if real in seen:
            raise OutputError(f"{seen[real]} and {flag} are the same file {path}")
        seen[real] = flag
        if path.exists() and not overwrite:
            raise OutputError(
                f"{where} exists; pass --overwrite to replace it or choose another file name"
            )


def save_picture(image, path: Path) -> Path:
    """Write a PIL image atomically in the format its suffix names."""
    from ..storage import write_atomic

    buf = io.BytesIO()
    image.save(buf, format=WRITABLE[path.suffix.lower()])
    return write_atomic(path, buf.getvalue())
