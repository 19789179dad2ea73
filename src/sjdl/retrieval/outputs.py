"""Where deployment commands write, checked first: never over an input, never silently over
an earlier result (``overwrite`` says otherwise), never two inputs onto one output."""

from __future__ import annotations

from pathlib import Path

from ..storage import check_replaceable, owner
from .embed import image_files
from .index import OWN_FILES, GalleryIndex, IndexError_, is_index


class OutputError(ValueError):
    """An output path would overwrite inputs or earlier results."""


def _real(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a looping symlink
        return p.absolute()


def _inside(path: Path, folder: Path) -> bool:
    path, folder = _real(path), _real(folder)
    return path == folder or folder in path.parents


def check_index_name(folder: Path) -> None:
    """An index folder is replaced as a whole, beside itself: it needs a name of its own
    (not ``.``, ``..`` or ``/``, which name the current, parent or root folder)."""
    if Path(folder).name in ("", ".", ".."):
        raise OutputError(
            f"{str(folder)!r} as the index folder: an index is written to a folder of its own "
            "that it replaces whole; name one, e.g. -o my_index (run from its parent folder)"
        )


def check_index_output(output: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an index folder that holds (or is) an input, that is a file, or that is not
    empty unless ``overwrite``; even then, a folder holding anything but an index's own files
    (another command's output, foreign files) is refused: only an index's files may go."""
    check_index_name(output)
    for p in inputs:
        if _inside(p, output):
            raise OutputError(
                f"{output}: writing the index there would delete {p}, an input of this "
                "command; choose another folder"
            )
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file, not an index folder")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if overwrite:
        if not is_index(output) and owner(output) != "index":
            raise OutputError(
                f"{output} is not empty and is not an sjdl index; --overwrite replaces only an "
                "index's own files: choose an empty or new folder"
            )
        check_replaceable(output, "index", OWN_FILES, "sjdl index build --overwrite")
        return
    if is_index(output):
        try:
            what = f"an existing index of {len(GalleryIndex.load(output).rows)} images"
        except IndexError_:
            what = "an existing (damaged) index"
        raise OutputError(
            f"{output} is {what}; pass --overwrite to replace it, or use sjdl index add"
        )
    raise OutputError(
        f"{output} is not empty and is not an sjdl index; choose an empty or new folder"
    )


def plan_defog_outputs(
    inputs: list[Path], output: Path, overwrite: bool
) -> list[tuple[Path, Path, Path]]:
    """(input file, output file, relative path) per image: a folder's images keep their path
    below the folder, files given directly their name. Refuses output = input (or any output
    that is an input file), two inputs onto one output, and existing outputs unless
    ``overwrite``."""
    for p in inputs:
        if p.is_dir() and _real(p) == _real(output):
            raise OutputError(
                f"-o {output} is the input folder: the restored images would replace the "
                "foggy ones; choose another folder"
            )
    plan = [(f, output / rel, rel) for f, rel in image_files(inputs)]
    sources = {_real(f): f for f, _, _ in plan}
    targets: dict[Path, Path] = {}
    for f, out, _ in plan:
        key = _real(out)
        if key in sources:
            raise OutputError(f"{out} would overwrite the input {sources[key]}; choose another -o")
        if key in targets and targets[key].absolute() != f.absolute():
            raise OutputError(
                f"{targets[key]} and {f} would both be written to {out}; "
                "defog them into separate folders"
            )
        targets[key] = f
    if not overwrite:
        existing = [out for _, out, _ in plan if out.exists()]
        if existing:
            raise OutputError(
                f"{existing[0]} exists ({len(existing)} output file(s) would be replaced); "
                "pass --overwrite or choose another folder"
            )
    seen: set[Path] = set()
    unique = []
    for f, out, rel in plan:  # an image listed twice is restored once
        if out.absolute() not in seen:
            seen.add(out.absolute())
            unique.append((f, out, rel))
    return unique
