"""Embeddings of image files with a trained model (for building and querying an index)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.dataset import ReIDDataset, collate
from ..data.records import IMAGE_EXTENSIONS, ImageRecord, parse_name
from ..data.transforms import PairedTransform


def image_records(paths: list[Path]) -> list[ImageRecord]:
    """Records for image files or folders of images; pid/camid parsed when names allow."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    if not files:
        raise FileNotFoundError(f"no images (.jpg/.jpeg/.png/.bmp) in {', '.join(map(str, paths))}")
    out = []
    for f in files:
        parsed = parse_name(f.name) or (-1, -1)
        out.append(ImageRecord(f.resolve(), parsed[0], parsed[1]))
    return out


@torch.no_grad()
def embed(
    model,
    records: list[ImageRecord],
    size,
    device,
    batch_size: int = 64,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
):
    """(embeddings (N, D) float32, kept records, skipped paths) in record order."""
    ds = ReIDDataset(records, PairedTransform(tuple(size)), with_clear=False)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    feats, kept, skipped = [], [], []
    model.eval()
    for batch in loader:
        skipped += [p for p, _ in batch["skipped"]]
        if "img" in batch:
            feats.append(model.extract_features(batch["img"].to(device)).float().cpu())
            kept += [records[int(i)] for i in batch["index"]]
            if progress:
                progress(len(batch["img"]))
    if not feats:
        raise ValueError("none of the images could be read")
    return torch.cat(feats).numpy().astype(np.float32), kept, skipped
