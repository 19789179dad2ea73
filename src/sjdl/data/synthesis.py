"""``sjdl fog``: turn a folder of clear ReID images into an FVRID_syn-style paired foggy set."""

from __future__ import annotations

import csv
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .fog import add_fog, builtin_depth, find_depth, read_depth, sample_fog_params
from .io import read_image, save_image
from .records import DatasetError, list_images

# source sub-folder -> split name (FVRID / generic / VeRi-776 names)
SPLIT_FOLDERS = {
    "train": "train",
    "query": "query",
    "gallery": "gallery",
    "image_train": "train",
    "image_query": "query",
    "image_test": "gallery",
}
MANIFEST_FIELDS = ["file", "source", "beta", "airlight", "depth_source"]


@dataclass(frozen=True)
class FogJob:
    source: Path
    foggy: Path
    clear: Path
    key: str  # stable name used to seed this image's fog


def plan_jobs(src: Path, dst: Path, copies: int = 1) -> list[FogJob]:
    """One job per (image, copy): ``<split>_clear/NAME`` copied, ``<split>_foggy/NAME`` fogged.

    ``src`` holds split folders (train/query/gallery or VeRi's image_*) or images directly
    (then they form the train split). With ``copies > 1`` names get a ``_f<k>`` suffix.
    """
    if not src.is_dir():
        raise DatasetError(f"{src}: folder not found")
    splits = [(src / d, s) for d, s in SPLIT_FOLDERS.items() if (src / d).is_dir()]
    if not splits:
        splits = [(src, "train")]
    jobs = []
    for folder, split in splits:
        images = list_images(folder)
        if not images:
            raise DatasetError(f"{folder}: no images (.jpg/.jpeg/.png/.bmp) found")
        for path in images:
            for k in range(copies):
                name = path.name if copies == 1 else f"{path.stem}_f{k}{path.suffix}"
                jobs.append(
                    FogJob(
                        path,
                        dst / f"{split}_foggy" / name,
                        dst / f"{split}_clear" / name,
                        f"{split}/{name}",
                    )
                )
    return jobs


def refuse_overwrite(jobs: list[FogJob], dst: Path) -> None:
    """Raise when any output (or the manifest) already exists."""
    outputs = [dst / "fog_manifest.csv"] + [p for j in jobs for p in (j.foggy, j.clear)]
    existing = [str(p) for p in outputs if p.exists()]
    if existing:
        raise DatasetError(
            f"{existing[0]} exists ({len(existing)} output file(s) would be overwritten); "
            "pass --overwrite or choose another destination"
        )


def _depth_for(job: FogJob, depth_dir: Path | None, h: int, w: int):
    if depth_dir is not None:
        path = find_depth(depth_dir, job.source.name)
        if path is not None:
            d = torch.from_numpy(read_depth(path))[None, None]
            if d.shape[-2:] != (h, w):
                d = F.interpolate(d, size=(h, w), mode="bicubic", align_corners=False)
            return d[0].clamp(0, 1), str(path)
    return builtin_depth(h, w), "builtin:ground-plane"


def fog_one(
    job: FogJob,
    seed: int,
    beta_range,
    airlight_range,
    depth_dir: Path | None,
    require_depth: bool = False,
) -> dict:
    """Fog one image, copy its clear partner; return its manifest row."""
    clear = read_image(job.source)
    depth, depth_source = _depth_for(job, depth_dir, *clear.shape[-2:])
    if require_depth and depth_source.startswith("builtin"):
        raise DatasetError(f"{job.source}: no depth file in {depth_dir}")
    p = sample_fog_params(seed, job.key, beta_range, airlight_range)
    foggy = add_fog(clear, depth, p.beta, p.airlight)
    save_image(foggy, job.foggy)
    job.clear.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job.source, job.clear)
    return {
        "file": str(job.foggy),
        "source": str(job.source),
        "beta": f"{p.beta:.6f}",
        "airlight": f"{p.airlight:.6f}",
        "depth_source": depth_source,
    }


def _fog_chunk(args):
    jobs, rest = args
    torch.set_num_threads(1)
    return [fog_one(j, *rest) for j in jobs]


def fog_folder(
    src,
    dst,
    depth_dir=None,
    copies: int = 1,
    seed: int = 0,
    beta_range=(0.4, 1.6),
    airlight_range=(0.5, 1.0),
    overwrite: bool = False,
    workers: int = 2,
    require_depth: bool = False,
    progress=None,
) -> Path:
    """Write the paired set and ``dst/fog_manifest.csv``; return the manifest path.

    Refuses to overwrite existing outputs unless ``overwrite``. ``progress(n_done)`` is
    called as images finish. Results do not depend on ``workers``.
    """
    src, dst = Path(src), Path(dst)
    depth_dir = Path(depth_dir) if depth_dir else None
    if depth_dir is not None and not depth_dir.is_dir():
        raise DatasetError(f"{depth_dir}: depth folder not found")
    jobs = plan_jobs(src, dst, copies)
    if not overwrite:
        refuse_overwrite(jobs, dst)
    rest = (seed, beta_range, airlight_range, depth_dir, require_depth)
    chunks = [jobs[i : i + 16] for i in range(0, len(jobs), 16)]
    rows: list[dict] = []
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_fog_chunk, [(c, rest) for c in chunks]):
                rows += part
                if progress:
                    progress(len(part))
    else:
        for c in chunks:
            part = _fog_chunk((c, rest))
            rows += part
            if progress:
                progress(len(part))
    manifest = dst / "fog_manifest.csv"
    tmp = manifest.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "file": str(Path(row["file"]).relative_to(dst)),
                    "source": str(Path(row["source"]).relative_to(src)),
                }
            )
    tmp.replace(manifest)
    return manifest


__all__ = ["FogJob", "refuse_overwrite", "fog_folder", "fog_one", "plan_jobs"]
