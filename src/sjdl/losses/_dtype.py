"""Loss arithmetic runs in float32 at least: half/bfloat16 inputs are upcast, float64 kept."""

import torch


def full_precision(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
