"""Losses of the paper (Eqs. 2-11) as plain functions, and the per-method composer."""

from .composer import LossComposer
from .reid import euclidean_distance, id_loss, triplet_loss
from .restoration import (
    color_entropy_loss,
    dark_channel,
    dark_channel_loss,
    restoration_loss,
    self_constraint_loss,
    soft_histogram,
    total_variation_loss,
)

__all__ = [
    "LossComposer",
    "color_entropy_loss",
    "dark_channel",
    "dark_channel_loss",
    "euclidean_distance",
    "id_loss",
    "restoration_loss",
    "self_constraint_loss",
    "soft_histogram",
    "total_variation_loss",
    "triplet_loss",
]
