"""Training engine: the joint defogging loop, schedule, checkpoints, logging, DDP."""

from .optim import build_optimizer, build_scheduler, lr_factor
from .trainer import NonFiniteLossError, Trainer, train

__all__ = [
    "NonFiniteLossError",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "train",
]
