"""Adam with coupled weight decay and the warm-up + multi-step schedule of spec §4."""

from __future__ import annotations

import torch


def lr_factor(
    epoch: int,
    warmup_epochs: int = 10,
    warmup_factor: float = 0.01,
    steps=(20, 30, 45, 60, 75, 90, 105),
    gamma: float = 0.6,
) -> float:
    """LR multiplier for 1-based ``epoch``: linear warm-up w(e) = f + (1 - f) e / W for e < W,
    then x gamma for every milestone <= e (epoch 1 -> 1.09e-5 with base 1e-4)."""
    warm = (
        warmup_factor + (1 - warmup_factor) * epoch / warmup_epochs
        if epoch < warmup_epochs
        else 1.0
    )
    return warm * gamma ** sum(1 for m in steps if m <= epoch)


def build_optimizer(model: torch.nn.Module, train_cfg) -> torch.optim.Optimizer:
    """Adam over trainable parameters; weight decay is Adam's L2 term, on biases too.

    FIRM's parameters form a second group with LR ``train.lr * train.firm_lr_mult`` (the
    schedule scales both groups alike)."""
    firm = getattr(model, "firm", None)
    firm_ids = {id(p) for p in firm.parameters()} if firm is not None else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in firm_ids]}]
    if firm_ids:
        firm_params = [p for p in params if id(p) in firm_ids]
        groups.append({"params": firm_params, "lr": train_cfg.lr * train_cfg.firm_lr_mult})
    return torch.optim.Adam(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)


def build_scheduler(optimizer, train_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch schedule: after ``scheduler.step()`` at the end of epoch e, the LR is that
    of epoch e + 1. The LR during epoch 1 is set at construction."""
    t = train_cfg
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i + 1, t.warmup_epochs, t.warmup_factor, t.steps, t.gamma)
    )
