"""Plain image records, file-name parsing, pid relabelling and the per-split summary table."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..storage.fingerprint import sha256_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
EXTENSIONS_TEXT = "/".join(IMAGE_EXTENSIONS)  # for messages
NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)")
NAME_HELP = "PID_cCAM_*.jpg, e.g. 00012_c003_000123_0.jpg (pid -1 = junk, skipped)"
MAX_ID = 2**31 - 1  # a longer number in a name is not an id (it would overflow int64 tensors)


class DatasetError(ValueError):
    """A dataset folder or file is missing or malformed; the message names it."""


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path, identity, camera (0-based) and the clear partner, if any."""

    path: Path
    pid: int = -1
    camid: int = -1
    clear: Path | None = None


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (deterministic order)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def parse_name(name: str) -> tuple[int, int] | None:
    """(pid, camid) from ``PID_cCAM_...``; camid is 0-based (CAM - 1, as released)."""
    m = NAME_PATTERN.match(name)
    if m is None or max(len(m.group(1)), len(m.group(2))) > 10:
        return None
    pid, cam = int(m.group(1)), int(m.group(2))
    if pid > MAX_ID or cam > MAX_ID:
        return None
    return pid, cam - 1


def _examples(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def read_labelled_folder(folder: Path, allow_empty: bool = False) -> list[ImageRecord]:
    """Records for every ``PID_cCAM_*`` image in ``folder``; junk (pid -1) skipped."""
    paths = list_images(folder)
    if not paths and not allow_empty:
        raise DatasetError(f"{folder}: no images ({EXTENSIONS_TEXT}) found")
    bad = [p.name for p in paths if parse_name(p.name) is None]
    if bad:
        raise DatasetError(
            f"{folder}: {len(bad)} file name(s) do not parse: {_examples(bad)}; "
            f"expected {NAME_HELP}, ids up to {MAX_ID}"
        )
    records = []
    for p in paths:
        pid, camid = parse_name(p.name)
        if pid != -1:
            records.append(ImageRecord(p, pid, camid))
    if not records and not allow_empty:
        raise DatasetError(f"{folder}: every image has pid -1 (junk); nothing to use")
    return records


def read_unlabelled_folder(folder: Path) -> list[ImageRecord]:
    """Records for every image in ``folder``, without identities (pid = camid = -1)."""
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{folder}: no images ({EXTENSIONS_TEXT}) found")
    return [ImageRecord(p) for p in paths]


def pair_with_clear(records: list[ImageRecord], clear_dir: Path) -> list[ImageRecord]:
    """Attach the clear image of identical file name; error on partners missing either way."""
    if not clear_dir.is_dir():
        raise DatasetError(f"{clear_dir}: folder not found (clear partners of the foggy images)")
    clear_names = {p.name for p in list_images(clear_dir)}
    foggy_names = {r.path.name for r in records}
    no_clear = sorted(foggy_names - clear_names)
    if no_clear:
        raise DatasetError(
            f"{clear_dir}: {len(no_clear)} foggy image(s) have no clear partner of the same "
            f"name: {_examples(no_clear)}"
        )
    # junk (pid -1) foggy images were dropped, so ignore their clear partners too
    no_foggy = sorted(
        n for n in clear_names - foggy_names if parse_name(n) and parse_name(n)[0] != -1
    )
    if no_foggy:
        foggy_dir = records[0].path.parent if records else "the foggy folder"
        raise DatasetError(
            f"{foggy_dir}: {len(no_foggy)} clear image(s) in {clear_dir} have no foggy partner: "
            f"{_examples(no_foggy)}"
        )
    return [replace(r, clear=clear_dir / r.path.name) for r in records]


def relabel(records: list[ImageRecord]) -> tuple[list[ImageRecord], dict[int, int]]:
    """Map train pids to 0..N-1 in sorted pid order (deterministic); return records and map."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [replace(r, pid=mapping[r.pid]) for r in records], mapping


def check_query_gallery(query: list[ImageRecord], gallery: list[ImageRecord], where: str) -> None:
    """Every query id must appear in the gallery; warn-worthy camera problems raise too."""
    gallery_ids = {r.pid for r in gallery}
    absent = sorted({r.pid for r in query} - gallery_ids)
    if absent:
        raise DatasetError(
            f"{where}: {len(absent)} query id(s) have no image in the gallery: "
            f"{_examples([str(a) for a in absent])}"
        )
    cams = {(r.pid, r.camid) for r in gallery}
    ids_cams: dict[int, set[int]] = {}
    for pid, cam in cams:
        ids_cams.setdefault(pid, set()).add(cam)
    unmatched = [r for r in query if not (ids_cams[r.pid] - {r.camid})]
    if unmatched and len(unmatched) == len(query):
        raise DatasetError(
            f"{where}: every query's gallery matches share its camera, so the standard "
            "same-id-same-camera filter removes them all; give query and gallery images "
            "different camera ids (the cCAM field of the file name)"
        )


def summarise(splits: dict[str, Iterable[ImageRecord]]) -> list[tuple[str, int, int, int]]:
    """(split, #ids, #images, #cameras) per split; unlabelled images count no ids/cameras."""
    rows = []
    for name, recs in splits.items():
        recs = list(recs)
        ids = {r.pid for r in recs if r.pid >= 0}
        cams = {r.camid for r in recs if r.camid >= 0}
        rows.append((name, len(ids), len(recs), len(cams)))
    return rows


def summary_table(splits: dict[str, Iterable[ImageRecord]], title: str = "dataset") -> str:
    """A torchreid-style text table of ids / images / cameras per split."""
    rows = summarise(splits)
    width = max([len("subset")] + [len(r[0]) for r in rows])
    line = "  " + "-" * (width + 32)
    out = [f"=> {title}", line, f"  {'subset':<{width}} | # ids | # images | # cameras", line]
    out += [f"  {n:<{width}} | {i:5d} | {m:8d} | {c:9d}" for n, i, m, c in rows]
    out.append(line)
    return "\n".join(out)


def split_validation(train: list[ImageRecord], n_ids: int):
    """Hold out the last ``n_ids`` train identities (sorted) for model selection.

    Returns (train relabelled 0..N-1, val query, val gallery): for each held-out id its first
    image (by name) is the query and the rest are the gallery. Ids with one image are kept
    for training instead (they cannot be queried).
    """
    by_pid: dict[int, list[ImageRecord]] = {}
    for r in train:
        by_pid.setdefault(r.pid, []).append(r)
    usable = [p for p in sorted(by_pid) if len(by_pid[p]) > 1]
    held = set(usable[len(usable) - n_ids :]) if n_ids > 0 else set()
    if n_ids > 0 and len(by_pid) - len(held) < 2:
        raise DatasetError(f"train.val_ids={n_ids} leaves fewer than 2 training identities")
    query, gallery = [], []
    for pid in sorted(held):
        recs = sorted(by_pid[pid], key=lambda r: r.path.name)
        query.append(recs[0])
        gallery += recs[1:]
    rest, _ = relabel([r for r in train if r.pid not in held])
    return rest, query, gallery


def with_clear_twins(train: list[ImageRecord]) -> list[ImageRecord]:
    """The training records plus, for each with a clear partner, that clear image as a ReID
    training image of the same id (its own restoration target): data.clear_twins."""
    from dataclasses import replace

    twins = [replace(r, path=r.clear) for r in train if r.clear is not None and r.clear != r.path]
    if not twins:
        raise DatasetError("data.clear_twins=true needs training images with clear partners")
    return list(train) + twins


def records_summary(records: Sequence[ImageRecord]) -> dict:
    """Images, identities and a digest of every (file name, identity, camera): what a resumed
    run must find again, since the ID classifier's rows follow the sorted identities."""
    rows = sorted((r.path.name, r.pid, r.camid) for r in records)
    ids = len({pid for _, pid, _ in rows if pid >= 0})
    return {"images": len(rows), "ids": ids, "digest": sha256_json(rows)[:16]}
