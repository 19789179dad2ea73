"""``sjdl fog``: turn a folder of clear ReID images into an FVRID_syn-style paired foggy set.

Everything is written into ``DST/.sjdl-fog-partial/`` first; only when every image is done do
the ``<split>_foggy``/``<split>_clear`` folders replace those in DST (one rename each) and the
manifest is written last. A failed or interrupted run leaves DST as it was (no partial files;
a leftover staging folder is removed by the next run), and with ``overwrite`` the output
folders hold exactly the files of the manifest.
"""

from __future__ import annotations

import csv
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..storage import folder_lock, fsync_dir, fsync_tree, write_error
from .fog import builtin_depth, find_depth, read_depth, sample_fog_params
from .fog_kinds import format_params, render_fog
from .io import read_image, save_image
from .records import EXTENSIONS_TEXT, DatasetError, list_images

# source sub-folder -> split name (FVRID / generic / VeRi-776 names)
SPLIT_FOLDERS = {
    "train": "train",
    "query": "query",
    "gallery": "gallery",
    "image_train": "train",
    "image_query": "query",
    "image_test": "gallery",
}
MANIFEST_FIELDS = ["file", "source", "beta", "airlight", "depth_source", "kind", "params"]
MANIFEST = "fog_manifest.csv"
STAGE = ".sjdl-fog-partial"
OUTPUT_FOLDERS = [f"{s}_{k}" for s in ("train", "query", "gallery") for k in ("foggy", "clear")]


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
            raise DatasetError(f"{folder}: no images ({EXTENSIONS_TEXT}) found")
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
    """Raise when the manifest, any planned output or any file in an output folder exists."""
    outputs = [dst / MANIFEST] + [p for j in jobs for p in (j.foggy, j.clear)]
    existing = dict.fromkeys(str(p) for p in outputs if p.exists())
    for name in OUTPUT_FOLDERS:
        if (dst / name).is_dir():
            existing.update(dict.fromkeys(str(f) for f in sorted((dst / name).iterdir())))
    existing = list(existing)
    if existing:
        raise DatasetError(
            f"{existing[0]} exists ({len(existing)} output file(s) would be overwritten or "
            "left beside the new set); pass --overwrite or choose another destination"
        )


def refuse_inputs_in_outputs(src: Path, depth_dir: Path | None, dst: Path) -> None:
    """Raise when the sources or depth maps lie in an output folder this command replaces."""
    for name in (*OUTPUT_FOLDERS, STAGE):
        out = (dst / name).resolve()
        for what, folder in (("source", src), ("depth", depth_dir)):
            if folder is not None and out in (folder.resolve(), *folder.resolve().parents):
                raise DatasetError(
                    f"{folder}: the {what} folder lies in {dst / name}, which sjdl fog "
                    "writes; choose another destination"
                )


def _depth_for(job: FogJob, depth_dir: Path | None, h: int, w: int):
    if depth_dir is not None:
        path = find_depth(depth_dir, job.source.name)
        if path is not None:
            d = torch.from_numpy(read_depth(path))[None, None]
            dh, dw = d.shape[-2:]
            if (dh, dw) == (h, w):
                return d[0], str(path)
            shape = f"depth map is {dh}x{dw} (HxW) but {job.source} is {h}x{w}"
            if (dh, dw) == (w, h):
                raise DatasetError(f"{path}: {shape}: transposed?")
            if abs(dh * w - dw * h) > max(h, w):  # another aspect ratio, beyond rounding
                raise DatasetError(f"{path}: {shape}: the aspect ratios differ")
            d = F.interpolate(d, size=(h, w), mode="bicubic", align_corners=False)
            return d[0].clamp(0, 1), f"{path} (resized from {dh}x{dw})"
    return builtin_depth(h, w), "builtin:ground-plane"


def fog_one(
    job: FogJob,
    seed: int,
    beta_range,
    airlight_range,
    depth_dir: Path | None,
    require_depth: bool = False,
    kind: str = "uniform",
) -> dict:
    """Fog one image (``kind``: data/fog_kinds.py), copy its clear partner; return its
    manifest row."""
    clear = read_image(job.source)
    depth, depth_source = _depth_for(job, depth_dir, *clear.shape[-2:])
    if require_depth and depth_source.startswith("builtin"):
        raise DatasetError(f"{job.source}: no depth file in {depth_dir}")
    p = sample_fog_params(seed, job.key, beta_range, airlight_range, kind)
    foggy = render_fog(clear, depth, p.beta, p.airlight, p.kind, p.params)
    save_image(foggy, job.foggy)
    try:
        job.clear.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job.source, job.clear)
    except OSError as e:  # a full disk: one line naming the device, as every other write
        raise write_error(job.clear, e) from None
    return {
        "file": str(job.foggy),
        "source": str(job.source),
        "beta": f"{p.beta:.6f}",
        "airlight": f"{p.airlight:.6f}",
        "depth_source": depth_source,
        "kind": p.kind,
        "params": format_params(p.params),
    }


def _fog_chunk(args):
    """Fog a chunk with one torch thread (processes run side by side), then restore the
    caller's thread count (the chunk may run in the calling process)."""
    jobs, rest = args
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [fog_one(j, *rest) for j in jobs]
    finally:
        torch.set_num_threads(threads)


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
    kind: str = "uniform",
) -> Path:
    """Write the paired set and ``dst/fog_manifest.csv``; return the manifest path.

    Refuses existing outputs unless ``overwrite`` (then the output folders are replaced and
    hold exactly the manifest's files), and sources or depth maps inside the output folders.
    Nothing in ``dst`` changes unless every image succeeds. ``progress(n_done)`` is called as
    images finish. Results do not depend on ``workers``. ``kind``: the fog kind
    (data/fog_kinds.py; ``uniform`` = the homogeneous model).
    """
    from .fog_kinds import check_kinds

    check_kinds([kind])
    src, dst = Path(src), Path(dst)
    depth_dir = Path(depth_dir) if depth_dir else None
    if depth_dir is not None and not depth_dir.is_dir():
        raise DatasetError(f"{depth_dir}: depth folder not found")
    jobs = plan_jobs(src, dst, copies)
    refuse_inputs_in_outputs(src, depth_dir, dst)
    # two fog runs into one DST would share (and delete) one staging folder: one at a time
    with folder_lock(dst, "fog output"):
        if not overwrite:  # again under the lock: a run that just finished published them
            refuse_overwrite(jobs, dst)
        fog = (seed, beta_range, airlight_range, depth_dir, require_depth, workers, progress, kind)
        return _staged(src, dst, copies, fog)


def _staged(src: Path, dst: Path, copies: int, fog: tuple) -> Path:
    """Fog into ``DST/.sjdl-fog-partial``, then publish; the stage never outlives the run."""
    stage = dst / STAGE
    shutil.rmtree(stage, ignore_errors=True)  # left by a killed run
    created = not dst.exists()
    try:
        rows = _run(plan_jobs(src, stage, copies), *fog)
        _write_manifest(stage / MANIFEST, rows, stage, src)
        _publish(stage, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and dst.is_dir() and not any(dst.iterdir()):
            dst.rmdir()  # a failed run leaves no trace
    return dst / MANIFEST


def _run(jobs, seed, beta_range, airlight_range, depth_dir, require_depth, workers, progress, kind):
    rest = (seed, beta_range, airlight_range, depth_dir, require_depth, kind)
    chunks = [jobs[i : i + 16] for i in range(0, len(jobs), 16)]
    rows: list[dict] = []
    if workers > 1 and len(chunks) > 1:
        pool = ProcessPoolExecutor(workers)
        try:
            for part in pool.map(_fog_chunk, [(c, rest) for c in chunks]):
                rows += part
                if progress:
                    progress(len(part))
        finally:  # interrupted or failed: drop the chunks not started instead of running them
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for c in chunks:
            part = _fog_chunk((c, rest))
            rows += part
            if progress:
                progress(len(part))
    return rows


def _write_manifest(path: Path, rows: list[dict], root: Path, src: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "file": str(Path(row["file"]).relative_to(root)),
                    "source": str(Path(row["source"]).relative_to(src)),
                }
            )


def _publish(stage: Path, dst: Path) -> None:
    """Swap the staged output folders into ``dst`` (earlier ones go), manifest last; the
    stage is fsynced first and every rename made durable (storage room)."""
    fsync_tree(stage)
    (dst / MANIFEST).unlink(missing_ok=True)  # no manifest while the folders change
    for name in OUTPUT_FOLDERS:
        if (dst / name).exists():
            os.replace(dst / name, stage / f".old-{name}")
        if (stage / name).exists():
            os.replace(stage / name, dst / name)
    os.replace(stage / MANIFEST, dst / MANIFEST)
    fsync_dir(dst)


__all__ = [
    "FogJob",
    "fog_folder",
    "fog_one",
    "plan_jobs",
    "refuse_inputs_in_outputs",
    "refuse_overwrite",
]
