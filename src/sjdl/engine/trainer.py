"""The semi-supervised joint defogging loop (paper Fig. 2; spec §3.4).

Each iteration: a synthetic batch (Eq. 5) and, for sjdl / sjdl_wo_sc, every
``train.real_every``-th iteration a real batch (Eq. 11); both forwards run inside one module
call, the losses are summed and one optimiser step is taken. Baseline and JDL see synthetic
data only. The method is configuration: the composer picks the terms.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from ..config import Config, resolve_device
from ..data import BadImageLog
from ..evaluation.evaluator import evaluate
from ..models.io import save_weights
from .distributed import DistInfo, all_reduce_mean, barrier, device_for, init_distributed
from .logger import RunLogger
from .setup import build_run, seed_everything
from .state import load_state, rng_state, save_state, set_rng_state


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss."""


class JointForward(nn.Module):
    """One module call for the synthetic and the real forward (one DDP forward per step)."""

    def __init__(self, model: nn.Module, real_labelled: bool):
        super().__init__()
        self.model = model
        self.real_heads = ("real",) if real_labelled else ()

    def forward(self, syn_img, syn_foggy, real_img=None, real_foggy=None):
        out_syn = self.model(syn_img, firm_input=syn_foggy, heads=("syn",))
        out_real = None
        if real_img is not None:
            out_real = self.model(real_img, firm_input=real_foggy, heads=self.real_heads)
        return out_syn, out_real


class Trainer:
    """Builds a run from a config, trains it, and keeps it resumable."""

    def __init__(
        self, cfg: Config, run_dir: str | Path, resume: bool = False, log=print, progress=None
    ):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.dist: DistInfo = init_distributed(resolve_device(cfg.train.device))
        self.device = device_for(self.dist, resolve_device(cfg.train.device))
        self.print = log if self.dist.is_main else (lambda *a, **k: None)
        self.progress = progress
        self.logger = RunLogger(self.run_dir, self.dist.is_main, cfg.train.tensorboard)
        self.parts = p = build_run(cfg, self.device, self.dist, self._log)
        self.model = p.model
        self.cuda_amp = cfg.train.amp and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda_amp)
        joint = JointForward(self.model, p.num_real_ids > 0)
        if self.dist.enabled:
            if cfg.train.sync_bn and self.device.type != "cuda":
                self._log("train.sync_bn ignored: SyncBatchNorm needs CUDA devices")
            elif cfg.train.sync_bn:
                joint = nn.SyncBatchNorm.convert_sync_batchnorm(joint)
                self.model = joint.model
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = p.composer.uses_real and (cfg.train.real_every > 1 or p.num_real_ids == 0)
            joint = nn.parallel.DistributedDataParallel(
                joint, device_ids=ids, find_unused_parameters=unused
            )
        self.joint = joint
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_map, self.bad_steps = -1.0, 0
        self.bad_images = BadImageLog()
        if self.dist.is_main:
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
        if resume:
            self._resume()

    # -- logging ---------------------------------------------------------------------------
    def _log(self, message: str) -> None:
        self.print(message)
        self.logger.line(message)

    # -- checkpoints -----------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _save(self, name: str, interrupted: bool = False) -> None:
        if not self.dist.is_main:
            return
        p = self.parts
        save_weights(
            self.model,
            self.ckpt_dir / f"{name}.safetensors",
            self.cfg,
            p.num_syn_ids,
            p.num_real_ids,
            {"epoch": str(self.epoch)},
        )
        if name == "best":
            return
        save_state(
            self.ckpt_dir / "last_state.pt",
            {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch if interrupted else 0,
                "global_step": self.global_step,
                "best_map": self.best_map,
                "optimizer": p.optimizer.state_dict(),
                "scheduler": p.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_state(),
                "syn_loader_gen": p.syn_loader.generator.get_state(),
                "real_loader_gen": p.real_loader.generator.get_state() if p.real_loader else None,
            },
        )

    def _resume(self) -> None:
        from ..models.io import read_checkpoint

        state_dict, _ = read_checkpoint(self.ckpt_dir / "last.safetensors")
        self.model.load_state_dict(state_dict, strict=True)
        st = load_state(self.ckpt_dir / "last_state.pt")
        self.parts.optimizer.load_state_dict(st["optimizer"])
        self.parts.scheduler.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        set_rng_state(st["rng"])
        self.parts.syn_loader.generator.set_state(st["syn_loader_gen"])
        if self.parts.real_loader is not None and st.get("real_loader_gen") is not None:
            self.parts.real_loader.generator.set_state(st["real_loader_gen"])
        self.epoch, self.step_in_epoch = st["epoch"], st["step_in_epoch"]
        self.global_step, self.best_map = st["global_step"], st["best_map"]
        where = (
            f" step {self.step_in_epoch} of epoch {self.epoch + 1}" if self.step_in_epoch else ""
        )
        self._log(f"resumed from {self.ckpt_dir} after epoch {self.epoch}{where}")

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg = self.cfg.train
        try:
            while self.epoch < cfg.epochs:
                self._train_epoch(self.epoch + 1)
                self.epoch += 1
                self.step_in_epoch = 0
                self.parts.scheduler.step()
                metrics = self._validate() if self.epoch % cfg.eval_every == 0 else None
                self._save("last")
                if metrics is not None and metrics["mAP"] > self.best_map:
                    self.best_map = metrics["mAP"]
                    self._save("best")
                barrier(self.dist)
        except KeyboardInterrupt:
            self._save("last", interrupted=True)
            self._log(
                f"interrupted: resumable checkpoint written to {self.ckpt_dir}; continue "
                f"with: sjdl train --resume {self.run_dir}"
            )
            raise
        finally:
            self.logger.close()
        return {"epochs": self.epoch, "best_val_mAP": self.best_map}

    def _real_batches(self, epoch: int):
        """Real batches for one epoch, cycling through the real set as often as needed."""
        loader = self.parts.real_loader
        k = 0
        while True:
            loader.batch_sampler.set_epoch(epoch * 1000 + k)
            yield from loader
            k += 1

    def _train_epoch(self, epoch: int) -> None:
        p, cfg = self.parts, self.cfg.train
        self.joint.train()
        sampler = p.syn_loader.batch_sampler
        sampler.set_epoch(epoch, skip=self.step_in_epoch)
        n_steps = len(sampler) + self.step_in_epoch
        if cfg.max_steps_per_epoch:
            n_steps = min(n_steps, cfg.max_steps_per_epoch)
        real_iter = self._real_batches(epoch) if p.real_loader is not None else None
        lr = p.optimizer.param_groups[0]["lr"]
        task = (
            self.progress.start(f"epoch {epoch}/{cfg.epochs}", n_steps) if self.progress else None
        )
        t0, images, sums = time.perf_counter(), 0, {}
        for batch in p.syn_loader:
            if self.step_in_epoch >= n_steps:
                break
            self.bad_images.update(batch)
            use_real = real_iter is not None and self.global_step % cfg.real_every == 0
            real = next(real_iter) if use_real else None
            if real is not None:
                self.bad_images.update(real)
            if "img" not in batch:
                continue
            terms = self._step(batch, real)
            self.step_in_epoch += 1
            self.global_step += 1
            images += len(batch["img"]) + (
                len(real["img"]) if real is not None and "img" in real else 0
            )
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            rate = images / max(time.perf_counter() - t0, 1e-9)
            if self.progress:
                self.progress.update(task, self.step_in_epoch, terms.get("loss", math.nan), rate)
            if self.global_step % cfg.log_every == 0:
                self.logger.scalars(
                    self.global_step, {**terms, "lr": lr, "images_per_s": rate, "epoch": epoch}
                )
        n = max(self.step_in_epoch, 1)
        means = {k: v / n for k, v in sums.items()}
        rate = images / max(time.perf_counter() - t0, 1e-9)
        self.logger.scalars(
            self.global_step,
            {**means, "lr": lr, "images_per_s": rate, "epoch": epoch},
            kind="epoch",
        )
        self._log(
            f"epoch {epoch}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in means.items())
            + f", lr {lr:.3g}, {rate:.1f} images/s"
        )
        bad = self.bad_images.summary()
        if bad:
            self._log(f"epoch {epoch}: {bad} so far (data.strict=true makes them fatal)")
        if self.progress:
            self.progress.finish(task)

    def _step(self, batch: dict, real: dict | None) -> dict:
        p, dev = self.parts, self.device
        to = {"device": dev, "non_blocking": True}
        if self.cfg.train.channels_last:
            to["memory_format"] = torch.channels_last
        args = [batch["img"].to(**to), batch["foggy"].to(**to)]
        has_real = real is not None and "img" in real
        if has_real:
            args += [real["img"].to(**to), real["foggy"].to(**to)]
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda_amp):
            out_syn, out_real = self.joint(*args)
            clear = batch["clear"].to(dev) if "clear" in batch else None
            terms = {
                f"syn/{k}": v
                for k, v in p.composer.supervised(out_syn, batch["pid"].to(dev), clear).items()
            }
            loss = terms["syn/total"]
            if has_real:
                pids = real["pid"].to(dev) if p.num_real_ids > 0 else None
                rterms = p.composer.unsupervised(out_real, args[3].float(), pids)
                terms.update({f"real/{k}": v for k, v in rterms.items()})
                loss = loss + rterms["total"]
        finite = all_reduce_mean(torch.isfinite(loss).float(), self.dist).item() == 1.0
        p.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self.bad_steps += 1
            self._log(
                f"step {self.global_step + 1}: non-finite loss, step skipped "
                f"({self.bad_steps} in a row)"
            )
            if self.bad_steps >= self.cfg.train.max_bad_steps:
                raise NonFiniteLossError(
                    f"{self.bad_steps} consecutive steps had a non-finite loss; lower train.lr or "
                    "turn off train.amp (train.max_bad_steps sets the limit)"
                )
            return {"loss": math.nan}
        self.bad_steps = 0
        self.scaler.scale(loss).backward()
        self.scaler.step(p.optimizer)
        self.scaler.update()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    @torch.no_grad()
    def _validate(self) -> dict | None:
        if self.parts.val_loaders is None or not self.dist.is_main:
            return None
        ql, gl = self.parts.val_loaders
        result = evaluate(self.model, ql, gl, self.device, self.cfg.test)
        metrics = result.metrics()
        self.logger.scalars(
            self.global_step, {k: v for k, v in metrics.items() if isinstance(v, float)}, kind="val"
        )
        if result.samples:
            s = result.samples[:4]
            grid = torch.stack(
                [t for x in s for t in (x.foggy, x.restored, x.clear) if t is not None]
            )
            self.logger.images(self.global_step, "val/foggy_restored_clear", grid)
        self._log(
            f"validation after epoch {self.epoch}: mAP {100 * metrics['mAP']:.2f}, "
            f"R1 {100 * metrics['R1']:.2f}"
            + (f", PSNR {metrics['restored_PSNR']:.2f}" if "restored_PSNR" in metrics else "")
        )
        self.model.train()
        return metrics


def train(cfg: Config, run_dir, resume: bool = False, log=print, progress=None) -> dict:
    """Train ``cfg`` into ``run_dir`` (or continue it); returns a small summary."""
    if not resume:
        seed_everything(cfg.train.seed)
    return Trainer(cfg, run_dir, resume, log, progress).fit()
