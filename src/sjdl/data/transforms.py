"""Paired transforms: the same geometric parameters on a foggy image and its clear target.

Images are float tensors (3, H, W) in [0, 1]. Mean/std normalisation is not done here: the
model owns it, so restoration losses always see [0, 1] images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ERASE_FILL = (0.485, 0.456, 0.406)  # ImageNet mean: 0 after the model's normalisation


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (3, H, W) to ``size`` = (height, width)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    out = F.interpolate(
        img[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False
    )[0]
    return out.clamp_(0, 1)


def random_erase(
    img: torch.Tensor, gen: torch.Generator | None = None, area=(0.02, 0.4), ratio=(0.3, 3.3)
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): one rectangle filled with the ImageNet mean."""
    _, h, w = img.shape
    for _ in range(10):
        u = torch.rand(4, generator=gen).tolist()
        target = (area[0] + u[0] * (area[1] - area[0])) * h * w
        aspect = math.exp(math.log(ratio[0]) + u[1] * (math.log(ratio[1]) - math.log(ratio[0])))
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(u[2] * (h - eh + 1)), int(u[3] * (w - ew + 1))
            img = img.clone()
            img[:, top : top + eh, left : left + ew] = torch.tensor(ERASE_FILL).view(3, 1, 1)
            return img
    return img


@dataclass
class PairedTransform:
    """Resize, then (training) horizontal flip with probability ``hflip`` and a random crop
    back to ``size`` after zero padding by ``pad`` -- identical for foggy and clear. Random
    erasing (probability ``erasing``) touches only the ReID input."""

    size: tuple[int, int]
    hflip: float = 0.0
    pad: int = 0
    erasing: float = 0.0

    def __call__(
        self,
        foggy: torch.Tensor,
        clear: torch.Tensor | None = None,
        gen: torch.Generator | None = None,
    ):
        """Return (reid_input, foggy, clear); clear stays None when not given."""
        imgs = [resize(foggy, self.size)] + (
            [resize(clear, self.size)] if clear is not None else []
        )
        u = torch.rand(4, generator=gen).tolist()
        if u[0] < self.hflip:
            imgs = [im.flip(-1) for im in imgs]
        if self.pad > 0:
            h, w = self.size
            top = int(u[1] * (2 * self.pad + 1))
            left = int(u[2] * (2 * self.pad + 1))
            imgs = [F.pad(im, [self.pad] * 4)[:, top : top + h, left : left + w] for im in imgs]
        foggy_out = imgs[0]
        clear_out = imgs[1] if clear is not None else None
        reid = random_erase(foggy_out, gen) if u[3] < self.erasing else foggy_out
        return reid, foggy_out, clear_out
