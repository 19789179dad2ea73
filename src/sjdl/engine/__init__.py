"""Training engine: the joint defogging loop, schedule, checkpoints, logging, DDP."""

from .optim import build_optimizer, build_scheduler, lr_factor
from .trainer import DataWorkerError, NonFiniteLossError, Trainer, train

__all__ = [
    "DataWorkerError",
    "NonFiniteLossError",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "train",
]
