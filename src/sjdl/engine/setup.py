"""Everything a run needs, built from the config: data, loaders, model, optimiser, schedule."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from ..data import eval_loader, read_dataset, train_loader
from ..data.records import DatasetError, split_validation, with_clear_twins
from ..losses import LossComposer
from ..models import build_model
from .distributed import DistInfo
from .memory import reuse_freed_memory
from .optim import build_optimizer, build_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries may use the global RNG)
    torch.manual_seed(seed)


@dataclass
class RunParts:
    data: object
    model: torch.nn.Module
    composer: LossComposer
    optimizer: torch.optim.Optimizer
    scheduler: object
    syn_loader: object
    real_loader: object | None
    val_loaders: tuple | None
    num_syn_ids: int
    num_real_ids: int


def check_batch_fits(data_cfg, data, uses_real: bool) -> None:
    """P identities x K images per batch must fit the training (and real) data."""
    p, k = data_cfg.num_ids, data_cfg.num_instances
    if uses_real and not data.real_train:
        raise DatasetError(
            f"this method trains on real foggy images too, but {data.name} has none: use "
            "method=jdl or method=baseline, or an FVRID layout with a real set"
        )
    sets = [("training", data.train)]
    if uses_real and data.real_labelled:
        sets.append(("real training", data.real_train))
    for name, records in sets:
        per_id = Counter(r.pid for r in records)
        n, most = len(per_id), max(per_id.values(), default=0)
        if p > n:
            raise DatasetError(
                f"data.num_ids={p} is larger than the {n} {name} identities: "
                f"set data.num_ids to at most {n}"
            )
        if k > most:
            raise DatasetError(
                f"data.num_instances={k} is larger than the {most} images of the largest "
                f"{name} identity: set data.num_instances to at most {most}"
            )
    real_batch = data_cfg.real_batch_size or p * k
    if uses_real and not data.real_labelled and len(data.real_train) < real_batch:
        what = (
            f"data.real_batch_size = {real_batch}"
            if data_cfg.real_batch_size
            else f"data.num_ids x data.num_instances = {p * k}"
        )
        raise DatasetError(
            f"a real batch needs {what} images, the unlabelled real set has {len(data.real_train)}"
        )


def build_run(cfg, device: torch.device, dist: DistInfo, log=print) -> RunParts:
    composer = LossComposer(cfg.loss, cfg.method, cfg.model.firm.output)
    data = read_dataset(cfg.data, with_real=composer.uses_real)
    data.train, val_q, val_g = split_validation(data.train, cfg.train.val_ids)
    if cfg.data.clear_twins and not cfg.data.twins_in_batch:  # after the validation split:
        data.train = with_clear_twins(data.train)  # validation stays foggy
    if cfg.train.select_on_test:
        log(
            "train.select_on_test=true: the best checkpoint is chosen on the TEST query/gallery "
            "(as the released code does); reported test numbers are then optimistic"
        )
        val_q, val_g = data.query, data.gallery
    if dist.is_main:
        log(data.summary())
        if val_q:
            log(
                f"validation: {len(val_q)} queries / {len(val_g)} gallery images from "
                f"{cfg.train.val_ids if not cfg.train.select_on_test else 'test'} held-out ids"
            )
    num_syn, num_real = data.num_train_ids, data.num_real_ids
    check_batch_fits(cfg.data, data, composer.uses_real)
    seed_everything(cfg.train.seed)  # same initial weights on every rank
    model = build_model(cfg, num_syn, num_real)
    report = getattr(model, "pretrained_report", None)
    if report is not None and dist.is_main:
        log(report.summary())
    if cfg.train.reuse_freed_memory and device.type == "cpu":
        reuse_freed_memory()
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train)
    needs_clear = (
        cfg.method != "baseline"
        or cfg.data.fog_on_the_fly
        or bool(cfg.data.fog_augment)
        or cfg.loss.lambda_consistency > 0
        or cfg.data.twins_in_batch
    )
    seed = cfg.train.seed
    fog = "official" if cfg.preset == "official" else "paper"  # beta/A ranges of the preset
    syn = train_loader(
        data.train, cfg.data, seed, dist.rank, dist.world_size, device, needs_clear, fog
    )
    real = None
    if composer.uses_real:
        real = train_loader(
            data.real_train,
            cfg.data,
            seed + 1,
            dist.rank,
            dist.world_size,
            device,
            with_clear=False,
            batch_size=cfg.data.real_batch_size,
        )
    val = None
    if val_q:
        bs = cfg.test.batch_size
        # images that are their own clear target (VeRi/folder data with on-the-fly fog) are
        # fogged for validation too, the same fog every time: else clear meets clear
        own_clear = any(r.clear == r.path for r in val_q + val_g)
        val_fog = fog if cfg.data.fog_on_the_fly and own_clear else None
        val = (
            eval_loader(val_q, cfg.data, bs, device, with_clear=True, fog_preset=val_fog),
            eval_loader(val_g, cfg.data, bs, device, with_clear=True, fog_preset=val_fog),
        )
    return RunParts(data, model, composer, optimizer, scheduler, syn, real, val, num_syn, num_real)
