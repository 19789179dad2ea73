"""BatchNorm statistics re-estimated on unlabelled images after training (no labels, no
gradient): the cheap answer to a shift of the image statistics, e.g. fog of a kind the model
never saw (LESSONS.md: most of the collapse on unseen fog is BN statistics)."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches, device=None) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose BatchNorm running statistics are the cumulative averages of
    the batch statistics over ``batches`` (tensors (N, 3, H, W) in [0, 1], or loader dicts
    with ``img``); affine parameters and weights are unchanged, FIRM does not run. Returns
    the copy in eval mode and the number of images used. ``model`` itself is not changed."""
    adapted = copy.deepcopy(model)
    norms = [m for m in adapted.modules() if isinstance(m, BATCHNORMS)]
    if not norms:
        raise ValueError("the model has no BatchNorm layer whose statistics could be re-estimated")
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches given
    adapted.train()
    takes_restore = "restore" in inspect.signature(adapted.forward).parameters  # FIRM off
    seen = 0
    for batch in batches:
        images = batch["img"] if isinstance(batch, dict) else batch
        if images is None or len(images) < 2:  # a single image has no batch variance
            continue
        images = images.to(device) if device is not None else images
        if takes_restore:
            adapted(images, restore=False)
        else:
            adapted(images)
        seen += len(images)
    if seen == 0:
        raise ValueError("no batch of at least 2 images to re-estimate BatchNorm statistics on")
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return adapted.eval(), seen
