"""Embeddings of image files with a trained model (for building and querying an index)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.dataset import ReIDDataset, collate
from ..data.records import EXTENSIONS_TEXT, IMAGE_EXTENSIONS, ImageRecord, parse_name
from ..data.transforms import PairedTransform


def image_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input) for image files and folders of images (recursive).

    A folder's images keep their path below the folder; a file given directly is its own name.
    Broken or looping symlinks are kept (reading them fails and is reported as unreadable)."""
    files: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS]
            files += sorted((f, f.relative_to(p)) for f in found if not f.is_dir())
        elif p.is_file() or p.is_symlink():
            files.append((p, Path(p.name)))
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    if not files:
        raise FileNotFoundError(f"no images ({EXTENSIONS_TEXT}) in {', '.join(map(str, paths))}")
    return files


def _absolute(f: Path) -> Path:
    try:
        return f.resolve(strict=True)
    except (OSError, RuntimeError):  # a broken or looping symlink: read_image reports it
        return f.absolute()


def printable(path) -> str:
    """``path`` as text that can always be printed or written: bytes of a file name that are
    not UTF-8 appear as backslash escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def image_records(paths: list[Path], bad_names: list[str] | None = None) -> list[ImageRecord]:
    """Records for image files or folders of images; pid/camid parsed when names allow.
    A file reached twice (listed twice, or through a symlink) gives one record. Files whose
    path is not valid UTF-8 are left out (an index stores paths as UTF-8 text) and, escaped,
    appended to ``bad_names`` when given."""
    out, seen = [], set()
    for f, _ in image_files(paths):
        path = _absolute(f)
        if printable(path) != str(path):
            if bad_names is not None:
                bad_names.append(printable(path))
            continue
        if path in seen:
            continue
        seen.add(path)
        parsed = parse_name(f.name) or (-1, -1)
        out.append(ImageRecord(path, parsed[0], parsed[1]))
    return out


def _loader(records: list[ImageRecord], size, batch_size: int, workers: int = 0) -> DataLoader:
    """Batches of the records' images as evaluation prepares them (unreadable ones skipped)."""
    ds = ReIDDataset(records, PairedTransform(tuple(size)), with_clear=False)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate)


def image_batches(records: list[ImageRecord], size, batch_size: int, progress=None):
    """The readable images of ``records`` as (N, 3, H, W) tensors, as ``embed`` sees them."""
    for batch in _loader(records, size, batch_size):
        if "img" in batch:
            if progress:
                progress(len(batch["img"]))
            yield batch["img"]


@torch.no_grad()
def embed(
    model,
    records: list[ImageRecord],
    size,
    device,
    batch_size: int = 64,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
    normalize: bool = False,
    nonfinite: list | None = None,
    errors: list[str] | None = None,
):
    """(embeddings (N, D) float32, kept records, skipped paths) in record order; L2-normalised
    when ``normalize`` (the checkpoint's ``test.normalize``, as in evaluation). An image whose
    embedding is not finite (NaN/inf) is left out too: its path goes to ``nonfinite`` when
    given, else to the skipped paths. Why each skipped image could not be read is appended to
    ``errors`` when given."""
    loader = _loader(records, size, batch_size, workers)
    feats, kept, skipped = [], [], []
    errors = [] if errors is None else errors
    model.eval()
    for batch in loader:
        skipped += [p for p, _ in batch["skipped"]]
        errors += [e for _, e in batch["skipped"]]
        if "img" in batch:
            f = model.extract_features(batch["img"].to(device)).float().cpu()
            f = torch.nn.functional.normalize(f, dim=1) if normalize else f
            ok = torch.isfinite(f).all(1)
            recs = [records[int(i)] for i in batch["index"]]
            bad = [str(r.path) for r, good in zip(recs, ok.tolist(), strict=True) if not good]
            (nonfinite if nonfinite is not None else skipped).extend(bad)
            feats.append(f[ok])
            kept += [r for r, good in zip(recs, ok.tolist(), strict=True) if good]
            if progress:
                progress(len(batch["img"]))
    if not kept:
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ValueError(f"none of the images could be read: {errors[0]}{more}")
        raise ValueError(
            f"none of the {len(records)} image(s) gave a finite embedding (NaN or inf values), "
            f"e.g. {records[0].path}: are the model's weights or the images damaged?"
        )
    return torch.cat(feats).numpy().astype(np.float32), kept, skipped
