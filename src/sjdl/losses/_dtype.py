"""Loss arithmetic runs in float32 at least: half/bfloat16 inputs are upcast, float64 kept.

Under autocast an upcast alone is not enough (autocast runs matmuls in fp16/bf16 again):
wrap such arithmetic in ``no_autocast``.
"""

import torch


def full_precision(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def no_autocast(x: torch.Tensor):
    """A context that turns autocast off for ``x``'s device type."""
    return torch.autocast(x.device.type, enabled=False)
