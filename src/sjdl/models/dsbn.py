"""Domain-specific BatchNorm (DSBN): the real-image stream normalises with its own running
statistics and its own affine parameters, the synthetic stream (and inference) with the
layer's own; convolution weights stay shared (``model.dsbn``; README "Generalisation")."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn


class DualBatchNorm(nn.Module):
    """A BatchNorm layer (the synthetic domain, same state-dict keys as before under
    ``syn.``) and a copy of it for the real domain (``real.``); ``domain`` picks one."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.syn = bn
        self.real = copy.deepcopy(bn)
        self.domain = "syn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.real if self.domain == "real" else self.syn)(x)


def convert_dsbn(module: nn.Module) -> int:
    """Replace every BatchNorm layer below ``module`` by a ``DualBatchNorm`` in place (both
    domains start from the layer's current weights and statistics); returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, DualBatchNorm(child))
            count += 1
        elif not isinstance(child, DualBatchNorm):
            count += convert_dsbn(child)
    return count


@contextmanager
def bn_domain(model: nn.Module, domain: str):
    """Within the block, every ``DualBatchNorm`` of ``model`` uses ``domain``."""
    layers = [m for m in model.modules() if isinstance(m, DualBatchNorm)]
    for m in layers:
        m.domain = domain
    try:
        yield
    finally:
        for m in layers:
            m.domain = "syn"
