"""The semi-supervised joint defogging loop (paper Fig. 2; spec §3.4).

Each iteration: a synthetic batch (Eq. 5) and, for sjdl / sjdl_wo_sc, every
``train.real_every``-th iteration a real batch (Eq. 11); both forwards run inside one module
call, the losses are summed and one optimiser step is taken. Baseline and JDL see synthetic
data only. The method is configuration: the composer picks the terms.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from ..config import Config, check_cpu_bf16, resolve_device
from ..data import BadImageLog, DatasetError
from ..evaluation.evaluator import evaluate
from ..models.dsbn import bn_domain
from ..storage import folder_lock, write_atomic
from .checkpointing import Checkpointing
from .distributed import DistInfo, all_reduce_mean, barrier, device_for, init_distributed
from .logger import RunLogger
from .rundir import check_new_run, clear_run, remove_stale_temporaries
from .setup import build_run, seed_everything
from .steps import SKIPPED, RealStream, accumulate, bn_restore, bn_snapshot, join_twins


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss."""


class DataWorkerError(RuntimeError):
    """A data-loading worker process died (the out-of-memory killer, ``kill -9``); the run
    was saved where it stood, as on Ctrl-C."""


@contextmanager
def _child_signals_default():
    """While saving after a data worker died: torch's SIGCHLD handler would raise again, in
    the middle of the save, when another worker goes down with it."""
    sig = getattr(signal, "SIGCHLD", None)
    if sig is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(sig, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(sig, old)


@contextmanager
def frozen_bn_statistics(model: nn.Module):
    """BatchNorm layers still normalise with batch statistics but keep their running ones."""
    saved = [
        (m, m.momentum) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    for m, _ in saved:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum


class JointForward(nn.Module):
    """One module call for the synthetic and the real forward (one DDP forward per step).
    With ``real_bn_stats=False`` the real forward leaves BN running statistics as the
    synthetic batches set them (the test images are synthetic)."""

    def __init__(self, model: nn.Module, real_labelled: bool, real_bn_stats: bool = True):
        super().__init__()
        self.model = model
        self.real_heads = ("real",) if real_labelled else ()
        self.real_bn_stats = real_bn_stats

    def forward(self, syn_img, syn_foggy, real_img=None, real_foggy=None, syn_clear=None):
        """(synthetic output, real output or None, clear twins' output or None)."""
        out_syn = self.model(syn_img, firm_input=syn_foggy, heads=("syn",))
        out_clear = None
        if syn_clear is not None:  # loss.lambda_consistency: the clear twins' embeddings
            out_clear = self.model(syn_clear, restore=False, heads=())
        out_real = None
        if real_img is not None:
            keep = nullcontext() if self.real_bn_stats else frozen_bn_statistics(self.model)
            with keep, bn_domain(self.model, "real"):  # own BN with model.dsbn
                out_real = self.model(real_img, firm_input=real_foggy, heads=self.real_heads)
        return out_syn, out_real, out_clear


class Trainer(Checkpointing):
    """Builds a run from a config, trains it, and keeps it resumable."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        resume: bool = False,
        log=print,
        progress=None,
        overwrite: bool = False,
    ):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        if not resume:
            check_new_run(self.run_dir, overwrite)
        self.dist: DistInfo = init_distributed(resolve_device(cfg.train.device))
        self.device = device_for(self.dist, resolve_device(cfg.train.device))
        self.print = log if self.dist.is_main else (lambda *a, **k: None)
        self.progress = progress
        self.logger, self._pending = None, []  # lines logged before the run folder exists
        self.parts = p = build_run(cfg, self.device, self.dist, self._log)
        self.model = p.model
        self.cuda_amp = cfg.train.amp and self.device.type == "cuda"
        self.cpu_amp = cfg.train.cpu_amp and self.device.type == "cpu"
        if self.cpu_amp:
            check_cpu_bf16()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda_amp)
        joint = JointForward(self.model, p.num_real_ids > 0, cfg.train.real_bn_stats)
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
        self.epoch_sums: dict[str, float] = {}  # loss sums of the epoch so far, and counts
        self.epoch_counts: dict[str, int] = {}
        self.real_pos = 0  # real batches drawn this epoch by completed steps (for resuming)
        self.bad_images = BadImageLog(cfg.data.strict)
        self._open_run(resume, overwrite)
        try:
            if resume:
                self._resume()
            if self.dist.is_main:
                write_atomic(self.run_dir / "config.yaml", cfg.to_yaml().encode())
        except BaseException:
            self.logger.close()
            raise

    # -- logging ---------------------------------------------------------------------------
    def _open_run(self, resume: bool, overwrite: bool) -> None:
        """The start worked: only now is the run folder written (a failed start leaves none)."""
        if self.dist.is_main and not resume and overwrite:
            gone = clear_run(self.run_dir)
            if gone:
                self._log(f"--overwrite: removed the earlier run's {', '.join(gone)}")
        self.logger = RunLogger(self.run_dir, self.dist.is_main, self.cfg.train.tensorboard)
        for line in self._pending:
            self.logger.line(line)
        self._pending = []
        if self.dist.is_main:
            for p in remove_stale_temporaries(self.ckpt_dir):
                self._log(f"removed stale temporary {p} (left by an interrupted save)")

    def _log(self, message: str) -> None:
        self.print(message)
        if self.logger is None:
            self._pending.append(message)
        else:
            self.logger.line(message)

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
                    self.best_map = float(metrics["mAP"])
                    self._save("best")
                barrier(self.dist)
        except KeyboardInterrupt:
            self._save("last", interrupted=True)
            self._log(
                f"interrupted: resumable checkpoint written to {self.ckpt_dir}; continue "
                f"with: sjdl train --resume {self.run_dir}"
            )
            raise
        except RuntimeError as e:
            if "DataLoader worker" not in str(e):  # torch's words for a worker that died
                raise
            with _child_signals_default():
                self._save("last", interrupted=True)
                self._release_workers()
            raise DataWorkerError(
                f"{str(e).strip()} (signal 9 is often the out-of-memory killer: lower "
                f"data.workers or data.cache_mb); resumable checkpoint written to "
                f"{self.ckpt_dir}; continue with: sjdl train --resume {self.run_dir}"
            ) from None
        finally:
            self.logger.close()
        return {"epochs": self.epoch, "best_val_mAP": self.best_map}

    def _real_batches(self, epoch: int) -> RealStream:
        """Real batches for one epoch, cycling through the real set as often as needed; a
        mid-epoch resume continues after the ones its completed steps drew."""
        start = self.real_pos if self.step_in_epoch else 0
        return RealStream(self.parts.real_loader, epoch, start)

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
        if self.step_in_epoch == 0:
            self.epoch_sums, self.epoch_counts = {}, {}
        sums, counts = self.epoch_sums, self.epoch_counts
        t0, images = time.perf_counter(), 0
        used = {"synthetic": 0, "real": 0, "real wanted": 0}  # batches with images, this epoch
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
            used["synthetic"] += 1
            used["real wanted"] += use_real
            used["real"] += real is not None and "img" in real
            if self.cfg.data.twins_in_batch:
                batch = join_twins(batch)
            terms = self._step(batch, real)
            self.real_pos = real_iter.drawn if real_iter is not None else 0
            self.step_in_epoch += 1
            self.global_step += 1
            images += len(batch["img"]) + (
                len(real["img"]) if real is not None and "img" in real else 0
            )
            accumulate(sums, counts, terms)  # finite steps only; skipped ones are counted
            rate = images / max(time.perf_counter() - t0, 1e-9)
            if self.progress:
                self.progress.update(task, self.step_in_epoch, terms.get("loss", math.nan), rate)
            if self.global_step % cfg.log_every == 0:
                self.logger.scalars(
                    self.global_step, {**terms, "lr": lr, "images_per_s": rate, "epoch": epoch}
                )
        self._check_images_read(epoch, used, self.step_in_epoch < n_steps)
        means = {k: v / counts[k] for k, v in sums.items()}
        if counts.get(SKIPPED):
            means[SKIPPED] = counts[SKIPPED]  # means above are over the other steps
        rate = images / max(time.perf_counter() - t0, 1e-9)
        self.logger.scalars(
            self.global_step,
            {**means, "lr": lr, "images_per_s": rate, "epoch": epoch},
            kind="epoch",
        )
        self._log(
            f"epoch {epoch}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in means.items() if k != SKIPPED)
            + (f", {means[SKIPPED]} non-finite step(s) skipped" if SKIPPED in means else "")
            + f", lr {lr:.3g}, {rate:.1f} images/s"
        )
        bad = self.bad_images.summary()
        if bad:
            self._log(f"epoch {epoch}: {bad} so far (data.strict=true makes them fatal)")
        if self.progress:
            self.progress.finish(task)

    def _release_workers(self) -> None:
        """Shut the loaders' worker processes down (the dead one included), so that torch stops
        watching them: else any later child process's exit in this process raises again."""
        p = self.parts
        for loader in (p.syn_loader, p.real_loader, *(p.val_loaders or ())):
            it = getattr(loader, "_iterator", None)  # persistent workers' iterator
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()

    def _check_images_read(self, epoch: int, used: dict, short: bool) -> None:
        """An epoch whose batches all came empty (the data vanished: a dropped mount, a moved
        folder) must not count as trained: stop, the run left at its last saved epoch."""
        if short and not used["synthetic"]:
            what = "training"
        elif used["real wanted"] and not used["real"]:
            what = "real training"
        else:
            return
        last = next(reversed(self.bad_images.skipped.values()), "no image in the batches")
        raise DatasetError(
            f"epoch {epoch}: none of the {what} images drawn could be read (last: {last}); "
            f"the run stays at epoch {self.epoch}: make them readable and continue with: "
            f"sjdl train --resume {self.run_dir}"
        )

    def _step(self, batch: dict, real: dict | None) -> dict:
        p, dev = self.parts, self.device
        to = {"device": dev, "non_blocking": True}
        if self.cfg.train.channels_last:
            to["memory_format"] = torch.channels_last
        # FIRM's input differs from the ReID input only with random erasing; the same tensor
        # otherwise tells the model that one CFSM pass serves both
        erased = self.cfg.data.random_erasing > 0

        def pair(b):
            img = b["img"].to(**to)
            return [img, b["foggy"].to(**to) if erased else img]

        args = pair(batch)
        has_real = real is not None and "img" in real
        if has_real:
            args += pair(real)
        bn = bn_snapshot(self.model)  # a skipped step puts these back
        clear = batch["clear"].to(**to) if "clear" in batch else None
        pairs = batch.get("twins")  # data.twins_in_batch: the twins are in the batch already
        twins = clear if p.composer.uses_consistency and pairs is None else None
        with self._autocast():
            out_syn, out_real, out_clear = self.joint(*args, syn_clear=twins)
            sup = p.composer.supervised(out_syn, batch["pid"].to(dev), clear, out_clear, pairs)
            terms = {f"syn/{k}": v for k, v in sup.items()}
            loss = terms["syn/total"]
            if has_real:
                pids = real["pid"].to(dev) if p.num_real_ids > 0 else None
                rterms = p.composer.unsupervised(out_real, args[3].float(), pids)
                terms.update({f"real/{k}": v for k, v in rterms.items()})
                loss = loss + rterms["total"]
        finite = all_reduce_mean(torch.isfinite(loss).float(), self.dist).item() == 1.0
        p.optimizer.zero_grad(set_to_none=True)
        if not finite:
            bn_restore(bn)
            self.bad_steps += 1
            self._log(
                f"step {self.global_step + 1}: non-finite loss, step skipped "
                f"({self.bad_steps} in a row)"
            )
            if self.bad_steps >= self.cfg.train.max_bad_steps:
                raise NonFiniteLossError(
                    f"{self.bad_steps} consecutive steps had a non-finite loss; lower train.lr or "
                    f"turn off train.{'cpu_amp' if self.cpu_amp else 'amp'} "
                    "(train.max_bad_steps sets the limit)"
                )
            return {"loss": math.nan}
        self.bad_steps = 0
        self.scaler.scale(loss).backward()
        self.scaler.step(p.optimizer)
        self.scaler.update()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    def _autocast(self):
        """fp16 on CUDA with ``train.amp``, bfloat16 on CPU with ``train.cpu_amp``, else off."""
        if self.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_amp)
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda_amp)

    @torch.no_grad()
    def _validate(self) -> dict | None:
        if self.parts.val_loaders is None or not self.dist.is_main:
            return None
        ql, gl = self.parts.val_loaders
        result = evaluate(self.model, ql, gl, self.device, self.cfg.test)
        metrics = result.metrics()
        if result.skipped:
            self._log(
                f"validation: {len(result.skipped)} unreadable image(s) skipped: "
                + ", ".join(result.skipped[:5])
                + (" ..." if len(result.skipped) > 5 else "")
            )
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


def train(
    cfg: Config, run_dir, resume: bool = False, log=print, progress=None, overwrite: bool = False
) -> dict:
    """Train ``cfg`` into ``run_dir`` (or continue it); returns a small summary. A folder
    that already holds a run is refused unless ``resume`` or ``overwrite``."""
    if not resume:
        seed_everything(cfg.train.seed)
    main = int(os.environ.get("RANK", "0")) == 0  # torchrun: rank 0 holds the run's lock
    with folder_lock(run_dir, "the run") if main else nullcontext():
        return Trainer(cfg, run_dir, resume, log, progress, overwrite).fit()
