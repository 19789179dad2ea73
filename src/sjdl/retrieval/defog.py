"""Defogging images of any size: FIRM (pad to a multiple of 32, crop back) and the classic
dark channel prior of He et al. (CVPR 2009) with guided-filter refinement (kornia)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses.restoration import dark_channel


def pad_to_multiple(img: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, tuple]:
    """Reflect-pad (N, 3, H, W) on the bottom/right to multiples of ``multiple``."""
    h, w = img.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(img, (0, pw, 0, ph), mode=mode), (h, w)


@torch.no_grad()
def defog_firm(model, img: torch.Tensor) -> torch.Tensor:
    """J_enh for (N, 3, H, W) foggy images in [0, 1] of any size (padded, then cropped).

    Like evaluation, the output is taken as an image in [0, 1] for both FIRM output modes (the
    ``tanh`` mode is regressed directly onto [0, 1] targets, as released), then clamped."""
    padded, (h, w) = pad_to_multiple(img)
    _, j_enh = model.restore(padded)
    return j_enh[..., :h, :w].float().clamp(0, 1)


@torch.no_grad()
def defog_dcp(
    img: torch.Tensor,
    patch: int = 15,
    omega: float = 0.95,
    t_min: float = 0.1,
    top: float = 0.001,
    radius: int | None = None,
    eps: float = 1e-3,
) -> torch.Tensor:
    """Dark channel prior dehazing (He, Sun, Tang 2009) of (N, 3, H, W) in [0, 1].

    Airlight A = mean colour of the brightest ``top`` fraction of the dark channel;
    t = 1 - omega * DC(I / A), refined by a guided filter on the grey image
    (radius ~ image size / 20); J = (I - A) / max(t, t_min) + A.
    """
    from kornia.filters import guided_blur

    img = img.float().clamp(0, 1)
    n, _, h, w = img.shape
    dc = dark_channel(img, patch).flatten(1)  # (N, HW)
    k = max(1, int(top * h * w))
    idx = dc.topk(k, dim=1).indices
    airlight = torch.gather(img.flatten(2), 2, idx[:, None, :].expand(n, 3, k)).mean(2)
    a = airlight.clamp(min=1e-3).view(n, 3, 1, 1)
    t = 1 - omega * dark_channel(img / a, patch).unsqueeze(1)
    r = radius or max(4, min(h, w) // 20)
    grey = img.mean(1, keepdim=True)
    t = guided_blur(grey, t, 2 * r + 1, eps).clamp(t_min, 1)
    return ((img - a) / t + a).clamp(0, 1)
