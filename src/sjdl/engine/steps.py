"""Small pieces of the training loop kept out of ``trainer.py``: the BatchNorm statistics a
skipped step must not move, epoch sums over finite steps only, and the real-batch stream
that a mid-epoch resume continues where it stopped."""

from __future__ import annotations

import math

import torch
from torch import nn

SKIPPED = "skipped_steps"  # key in the epoch counts: steps skipped for a non-finite loss


def bn_snapshot(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) for every BatchNorm running mean/var and batch counter of ``model``."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buf = getattr(m, name, None)
                if buf is not None:
                    out.append((buf, buf.detach().clone()))
    return out


@torch.no_grad()
def bn_restore(snapshot: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put the BatchNorm buffers back as ``bn_snapshot`` found them (a skipped step's forward
    must leave no trace: NaN batch statistics would otherwise poison every later step)."""
    for buf, saved in snapshot:
        buf.copy_(saved)


def accumulate(sums: dict[str, float], counts: dict[str, int], terms: dict[str, float]) -> None:
    """Add one step's terms to the epoch sums; a step whose loss is not finite (skipped) adds
    nothing but is counted under ``SKIPPED``, so the epoch means stay finite."""
    if not math.isfinite(terms.get("loss", 0.0)):
        counts[SKIPPED] = counts.get(SKIPPED, 0) + 1
        return
    for k, v in terms.items():  # real/* terms exist only on steps with a real batch
        sums[k] = sums.get(k, 0.0) + v
        counts[k] = counts.get(k, 0) + 1


def join_twins(batch: dict) -> dict:
    """data.twins_in_batch: the clear twins join the batch as ReID images of their ids, after
    the foggy images in the same order (rows i and i + n are a pair, ``twins`` = n); a twin is
    its own restoration target and FIRM's input, as a clear-twin record is."""
    if "clear" not in batch:
        raise ValueError("data.twins_in_batch=true needs training images with clear partners")
    n, clear = len(batch["img"]), batch["clear"]
    out = {}
    for key, value in batch.items():
        if key in ("img", "foggy"):
            out[key] = torch.cat([value, clear])
        elif isinstance(value, torch.Tensor) and len(value) == n:
            out[key] = torch.cat([value, value])
        elif isinstance(value, list) and len(value) == n:
            out[key] = value + value
        else:
            out[key] = value
    out["twins"] = n
    return out


class RealStream:
    """Real batches for one epoch, cycling through the real set as often as needed (pass k
    uses sampler epoch ``epoch * 1000 + k``). ``drawn`` counts the batches taken this epoch;
    ``start`` resumes after that many, skipped by the sampler without loading images."""

    def __init__(self, loader, epoch: int, start: int = 0):
        self.loader, self.epoch, self.drawn = loader, epoch, start
        self._it = self._batches(start)

    def _batches(self, skip: int):
        sampler = self.loader.batch_sampler
        k = 0
        while True:
            sampler.set_epoch(self.epoch * 1000 + k, skip=0)
            n = len(sampler)
            if n == 0:
                raise ValueError("the real training images give no batch (too few images)")
            if skip >= n:
                skip -= n
                k += 1
                continue
            sampler.set_epoch(self.epoch * 1000 + k, skip=skip)
            skip = 0
            yield from self.loader
            k += 1

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._it)
        self.drawn += 1
        return batch
