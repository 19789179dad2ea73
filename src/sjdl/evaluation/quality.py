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
    """Accumulates per-image PSNR/SSIM over batches; ``result()`` gives the means. Given the
    foggy inputs too, it also keeps each input's PSNR: ``input_PSNR`` (the number to beat) and
    ``below_input``, how many restorations are further from the clear image than their input
    (a restoration that makes an image worse)."""

    def __init__(self):
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.input_psnr: list[float] = []
        self.below: list[bool] = []  # per image with its input: J_enh further from clear

    def update(
        self, restored: torch.Tensor, clear: torch.Tensor, foggy: torch.Tensor | None = None
    ) -> list[float]:
        values = []
        for r, c in zip(restored, clear, strict=True):
            p = psnr(r, c)
            self.psnr.append(p)
            self.ssim.append(ssim(r, c))
            values.append(p)
        if foggy is not None:
            inputs = [psnr(f, c) for f, c in zip(foggy, clear, strict=True)]
            self.input_psnr += inputs
            pairs = zip(values, inputs, strict=True)
            self.below += [min(r, PSNR_CAP) < min(i, PSNR_CAP) for r, i in pairs]
        return values

    def result(self) -> dict:
        if not self.psnr:
            return {}
        capped = [min(p, PSNR_CAP) for p in self.psnr]
        out = {
            "PSNR": float(np.mean(capped)),
            "SSIM": float(np.mean(self.ssim)),
            "num_images": len(self.psnr),
        }
        if len(self.input_psnr) == len(self.psnr):
            out["input_PSNR"] = float(np.mean([min(p, PSNR_CAP) for p in self.input_psnr]))
            out["below_input"] = sum(self.below)
        return out


def haze_statistics(images: torch.Tensor, patch: int = 15) -> dict:
    """No-reference statistics of images (N, 3, H, W) in [0, 1], means over the images.

    ``dark_channel``: mean of the dark channel (min over RGB and a ``patch`` window; haze
    raises it, He et al.); ``rms_contrast``: standard deviation of the luminance (mean of
    RGB; haze lowers it); ``tv_per_pixel``: mean absolute difference of horizontal and
    vertical neighbours per channel (noise and checkerboard artefacts raise it).
    """
    x = images.detach().float().clamp(0, 1)
    m = x.amin(1, keepdim=True)
    dark = -torch.nn.functional.max_pool2d(-m, patch, stride=1, padding=patch // 2)
    lum = x.mean(1).flatten(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return {
        "dark_channel": float(dark.flatten(1).mean(1).mean()),
        "rms_contrast": float(lum.std(1, unbiased=False).mean()),
        "tv_per_pixel": float(((dx + dy) / 2).mean()),
    }
