"""Restoration quality: PSNR and SSIM per image on [0, 1], averaged over images (scikit-image).

SSIM uses the Wang et al. (2004) settings: Gaussian window sigma 1.5, population covariance,
computed per channel and averaged. PSNR of identical images is infinite; ``PSNR_CAP`` dB
is used when averaging so one perfect image does not make the mean infinite.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP = 100.0


def _hwc(img: torch.Tensor) -> np.ndarray:
    return img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64)


def psnr(restored: torch.Tensor, clear: torch.Tensor) -> float:
    """PSNR in dB of one image (3, H, W), both clamped to [0, 1]; inf when identical."""
    a, b = _hwc(restored), _hwc(clear)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(b, a, data_range=1.0))


def ssim(restored: torch.Tensor, clear: torch.Tensor) -> float:
    """SSIM of one image (3, H, W) on [0, 1]; 1 when identical."""
    a, b = _hwc(restored), _hwc(clear)
    win = min(11, *[s if s % 2 else s - 1 for s in a.shape[:2]])
    return float(
        structural_similarity(
            b,
            a,
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            win_size=max(win, 3),
        )
    )


class QualityMeter:
    """Accumulates per-image PSNR/SSIM over batches; ``result()`` gives the means."""

    def __init__(self):
        self.psnr: list[float] = []
        self.ssim: list[float] = []

    def update(self, restored: torch.Tensor, clear: torch.Tensor) -> list[float]:
        values = []
        for r, c in zip(restored, clear, strict=True):
            p = psnr(r, c)
            self.psnr.append(p)
            self.ssim.append(ssim(r, c))
            values.append(p)
        return values

    def result(self) -> dict:
        if not self.psnr:
            return {}
        capped = [min(p, PSNR_CAP) for p in self.psnr]
        return {
            "PSNR": float(np.mean(capped)),
            "SSIM": float(np.mean(self.ssim)),
            "num_images": len(self.psnr),
        }
