"""Where deployment commands write, checked first: never over an input, never silently over
an earlier result (``overwrite`` says otherwise), never two inputs onto one output."""

from __future__ import annotations

import json
from pathlib import Path

from ..storage import check_replaceable, owner, write_atomic
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
    inputs: list[Path], output: Path, overwrite: bool, keep_existing: bool = False
) -> list[tuple[Path, Path, Path]]:
    """(input file, output file, relative path) per image: a folder's images keep their path
    below the folder, files given directly their name. Refuses output = input (or any output
    that is an input file), two inputs onto one output, and existing outputs unless
    ``overwrite``; ``keep_existing`` (``--continue``) leaves them out of the plan instead."""
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
    if keep_existing:
        plan = [(f, out, rel) for f, out, rel in plan if not out.exists()]
    elif not overwrite:
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


DEFOG_RECORD = ".sjdl-defog.json"  # how the restorations in a defog -o folder were made


def _made_with(record: dict) -> str:
    ckpt = record.get("checkpoint")
    return f"--method {record.get('method')}" + (f", checkpoint {ckpt[:12]}" if ckpt else "")


def check_defog_continue(output: Path, record: dict) -> None:
    """``defog --continue`` adds only to restorations of the same method and checkpoint
    (``record``): a folder without a record, or with another, would mix two restorations."""
    try:
        earlier = json.loads((output / DEFOG_RECORD).read_text())
    except (OSError, ValueError):
        earlier = None
    if earlier == record:
        return
    what = (
        f"restorations made with {_made_with(earlier)}"
        if isinstance(earlier, dict)
        else f"no record of an earlier sjdl defog ({DEFOG_RECORD})"
    )
    raise OutputError(
        f"{output}: --continue adds to an earlier defog with the same method and checkpoint "
        f"({_made_with(record)}), but it holds {what}; use --overwrite or another folder"
    )


def write_defog_record(output: Path, record: dict) -> None:
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / DEFOG_RECORD, json.dumps(record, sort_keys=True) + "\n")
