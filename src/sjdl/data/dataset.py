"""Torch datasets over image records, bad-image handling, and DataLoader builders."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .cache import configure_cache
from .fog import FOG_PRESETS, builtin_depth, random_fog
from .fog_kinds import random_kind_fog
from .io import ImageReadError, read_image
from .records import ImageRecord
from .sampler import PKSampler, RandomBatchSampler
from .transforms import PairedTransform

STRICT_NOTE = "(data.strict=true stops at unreadable images)"


def raise_if_strict(batch: dict, strict: bool) -> None:
    """In the main process: the first unreadable image of ``batch`` as an error."""
    if strict and batch.get("skipped"):
        raise ImageReadError(f"{batch['skipped'][0][1]} {STRICT_NOTE}")


class ReIDDataset(Dataset):
    """Items: dict(img = ReID input, foggy, clear (or absent), pid, camid, index).

    An unreadable image gives ``{"bad": path, "error": message}`` that ``collate`` drops and
    ``BadImageLog`` counts; with ``strict=True`` it raises ``ImageReadError`` instead (in a
    loader worker the item is passed on and the main process raises, so the error stays
    one line). With ``fog_on_the_fly`` the foggy image is synthesised from the clear one
    (records without a clear image, e.g. real foggy ones, are used as they are): on every
    load, or, with ``fog_seed`` set (validation), the same fog for an image every time.
    With ``augment`` = (kinds, p, beta range, airlight range), an image with a clear partner
    is re-fogged with probability p by a kind drawn from ``kinds`` (data.fog_augment).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: PairedTransform,
        with_clear: bool = True,
        strict: bool = False,
        fog_on_the_fly: bool = False,
        fog_preset: str = "paper",
        fog_seed: int | None = None,
        augment: tuple | None = None,
        cache: bool = False,
    ):
        self.records = list(records)
        self.cache = cache  # decoded pixels kept in memory (data/cache.py)
        self.transform = transform
        self.with_clear = with_clear
        self.strict = strict
        self.fog_on_the_fly = fog_on_the_fly
        self.fog_ranges = FOG_PRESETS[fog_preset]
        self.fog_seed = fog_seed
        self.augment = augment  # (kinds, probability, beta range, airlight range) or None
        self.max_side = max(transform.size)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, rec: ImageRecord, index: int):
        want_clear = self.with_clear or self.fog_on_the_fly or self.augment is not None
        clear = (
            read_image(rec.clear, self.max_side, self.cache) if want_clear and rec.clear else None
        )
        if self.augment is not None and clear is not None:
            kinds, p, beta, airlight = self.augment
            if float(torch.rand(1)) < p:
                depth = builtin_depth(*clear.shape[-2:], clear.dtype)
                return random_kind_fog(clear, depth, kinds, beta, airlight)[0], clear
        if self.fog_on_the_fly and clear is not None:
            gen = None
            if self.fog_seed is not None:
                gen = torch.Generator().manual_seed(self.fog_seed * 1_000_003 + index)
            foggy = random_fog(clear[None], gen, *self.fog_ranges)[0]
        else:
            foggy = read_image(rec.path, self.max_side, self.cache)
        if clear is not None and clear.shape != foggy.shape:
            raise ImageReadError(
                f"{rec.path}: size {tuple(foggy.shape[-2:])} differs from its "
                f"clear partner {rec.clear} {tuple(clear.shape[-2:])}"
            )
        return foggy, clear

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        try:
            foggy, clear = self._load(rec, index)
        except ImageReadError as e:
            if self.strict and get_worker_info() is None:
                raise ImageReadError(f"{e} {STRICT_NOTE}") from None
            return {"bad": e.path or str(rec.path), "error": str(e)}
        reid, foggy, clear = self.transform(foggy, clear)
        item = {"img": reid, "foggy": foggy, "pid": rec.pid, "camid": rec.camid, "index": index}
        if clear is not None:
            item["clear"] = clear
        return item


def collate(items: list[dict]) -> dict:
    """Stack good items; list bad ones under ``skipped`` as (path, error)."""
    good = [it for it in items if "bad" not in it]
    batch: dict = {"skipped": [(it["bad"], it["error"]) for it in items if "bad" in it]}
    if not good:
        return batch
    for key in ("img", "foggy"):
        batch[key] = torch.stack([it[key] for it in good])
    if all("clear" in it for it in good):
        batch["clear"] = torch.stack([it["clear"] for it in good])
    for key in ("pid", "camid", "index"):
        batch[key] = torch.tensor([it[key] for it in good], dtype=torch.long)
    return batch


class BadImageLog:
    """Counts images skipped because they could not be read; one warning per file.
    With ``strict`` the first one is an ``ImageReadError``."""

    def __init__(self, strict: bool = False):
        self.skipped: dict[str, str] = {}
        self.strict = strict

    def update(self, batch: dict) -> None:
        raise_if_strict(batch, self.strict)
        for path, error in batch.get("skipped", []):
            if path not in self.skipped:
                warnings.warn(f"skipped unreadable image: {error}", stacklevel=2)
            self.skipped[path] = error

    def summary(self) -> str | None:
        if not self.skipped:
            return None
        return f"{len(self.skipped)} unreadable image(s) skipped, e.g. {next(iter(self.skipped))}"


def _loader_kwargs(workers: int, device: torch.device | str | None) -> dict:
    cuda = torch.device(device).type == "cuda" if device is not None else False
    return {
        "num_workers": workers,
        "pin_memory": cuda,
        "persistent_workers": workers > 0,
        "collate_fn": collate,
    }


def _cache(data_cfg) -> bool:
    """Whether this loader keeps decoded images (``data.cache_mb``; configures the limit)."""
    configure_cache(data_cfg.cache_mb, data_cfg.workers)
    return data_cfg.cache_mb > 0


def train_loader(
    records,
    data_cfg,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device=None,
    with_clear: bool = True,
    fog_preset: str = "paper",
    batch_size: int = 0,
) -> DataLoader:
    """P x K batches of augmented training images (paired with clear targets when present);
    unlabelled records give random batches of ``batch_size`` (0: P x K) images."""
    tf = PairedTransform(
        tuple(data_cfg.size_train), data_cfg.hflip, data_cfg.pad, data_cfg.random_erasing
    )
    augment = None
    if data_cfg.fog_augment and with_clear:  # the synthetic set (the real one has no clear)
        augment = (
            tuple(data_cfg.fog_augment),
            data_cfg.fog_augment_p,
            tuple(data_cfg.fog_augment_beta),
            FOG_PRESETS[fog_preset][1],
        )
    ds = ReIDDataset(
        records,
        tf,
        with_clear,
        data_cfg.strict,
        data_cfg.fog_on_the_fly,
        fog_preset,
        augment=augment,
        cache=_cache(data_cfg),
    )
    if all(r.pid < 0 for r in records):  # unlabelled: random batches of the same size
        sampler = RandomBatchSampler(
            len(records),
            batch_size or data_cfg.num_ids * data_cfg.num_instances,
            seed,
            rank,
            world_size,
        )
    else:
        sampler = PKSampler(
            [r.pid for r in records],
            data_cfg.num_ids,
            data_cfg.num_instances,
            seed,
            rank,
            world_size,
        )
    gen = torch.Generator().manual_seed(seed * 1000 + rank)
    return DataLoader(
        ds, batch_sampler=sampler, generator=gen, **_loader_kwargs(data_cfg.workers, device)
    )


def eval_loader(
    records,
    data_cfg,
    batch_size: int = 64,
    device=None,
    with_clear: bool = False,
    fog_preset: str | None = None,
) -> DataLoader:
    """Images in record order, resized to ``data.size_test``, no augmentation. With
    ``fog_preset`` the images are fogged from their clear partner, the same way each time
    (validation when training with ``data.fog_on_the_fly``)."""
    ds = ReIDDataset(
        records,
        PairedTransform(tuple(data_cfg.size_test)),
        with_clear,
        data_cfg.strict,
        fog_on_the_fly=fog_preset is not None,
        fog_preset=fog_preset or "paper",
        fog_seed=0 if fog_preset is not None else None,
        cache=_cache(data_cfg),
    )
    return DataLoader(
        ds, batch_size=batch_size, shuffle=False, **_loader_kwargs(data_cfg.workers, device)
    )
