"""Defogging images of any size: FIRM (pad to a multiple of 32, crop back; large images in
overlapping tiles blended linearly) and the classic dark channel prior of He et al. (CVPR 2009)
with guided-filter refinement, both linear in the number of pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TILE, OVERLAP = 1024, 128  # FIRM tile side and overlap (pixels, multiples of 32)


def pad_to_multiple(img: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, tuple]:
    """Reflect-pad (N, 3, H, W) on the bottom/right to multiples of ``multiple``."""
    h, w = img.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(img, (0, pw, 0, ph), mode=mode), (h, w)


def _firm_whole(model, img: torch.Tensor) -> torch.Tensor:
    padded, (h, w) = pad_to_multiple(img)
    return model.restore(padded)[1][..., :h, :w].float()


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _ramp(start: int, n: int, length: int, overlap: int, device) -> torch.Tensor:
    """Blending weight along one side of the tile [start, start + n) of an axis of ``length``:
    rises over ``overlap`` pixels at ends shared with a neighbour tile, 1 at image borders."""
    i = torch.arange(n, device=device, dtype=torch.float32)
    up = i + 0.5 if start > 0 else torch.full_like(i, float(overlap))
    down = n - i - 0.5 if start + n < length else torch.full_like(i, float(overlap))
    return torch.minimum(up, down).clamp(max=overlap) / overlap


@torch.no_grad()
def defog_firm(model, img: torch.Tensor, tile: int = TILE, overlap: int = OVERLAP) -> torch.Tensor:
    """J_enh for (N, 3, H, W) foggy images in [0, 1] of any size, clamped to [0, 1].

    Images up to ``tile`` x ``tile`` run whole (padded, then cropped). Larger ones run in
    ``tile``-sized tiles overlapping by ``overlap`` pixels and blended with linear ramps, so
    memory stays bounded and there are no seams; FIRM's instance normalisation then sees a
    tile rather than the whole image. Like evaluation, the output is taken as an image in
    [0, 1] for both FIRM output modes (the ``tanh`` mode is regressed directly onto [0, 1]
    targets, as released)."""
    if tile % 32 or overlap % 32 or not 0 < overlap < tile:
        raise ValueError(f"tile {tile} and overlap {overlap}: multiples of 32, 0 < overlap < tile")
    h, w = img.shape[-2:]
    if h <= tile and w <= tile:
        return _firm_whole(model, img).clamp(0, 1)
    out = torch.zeros(img.shape, dtype=torch.float32, device=img.device)
    weight = torch.zeros((1, 1, h, w), dtype=torch.float32, device=img.device)
    for y in _starts(h, tile, overlap):
        for x in _starts(w, tile, overlap):
            part = img[..., y : y + tile, x : x + tile]
            th, tw = part.shape[-2:]
            wgt = _ramp(y, th, h, overlap, img.device)[:, None] * _ramp(
                x, tw, w, overlap, img.device
            )
            out[..., y : y + th, x : x + tw] += _firm_whole(model, part) * wgt
            weight[..., y : y + th, x : x + tw] += wgt
    return (out / weight).clamp(0, 1)


def min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Minimum over a ``size`` x ``size`` window of (N, C, H, W), as two 1-D passes of
    ``size`` element-wise minimums; border windows only see pixels inside the image."""
    p = size // 2
    for dim, pads in ((-1, (p, p, 0, 0)), (-2, (0, 0, p, p))):
        n = x.shape[dim]
        padded = F.pad(x, pads, value=float("inf"))
        x = padded.narrow(dim, 0, n).clone()
        for i in range(1, size):
            torch.minimum(x, padded.narrow(dim, i, n), out=x)
    return x


def dark_channel_fast(img: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """Dark channel (N, H, W): min over RGB and over the patch (same values as
    ``losses.restoration.dark_channel``, in O(patch) per pixel)."""
    if patch % 2 != 1:
        raise ValueError(f"dark channel patch must be odd, got {patch}")
    return min_filter(img.amin(1, keepdim=True), patch).squeeze(1)


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1) x (2r+1) window of (N, C, H, W) with reflected borders, from
    cumulative sums (float64): constant time per pixel whatever the radius."""
    k = 2 * r + 1
    for dim in (-1, -2):
        n = x.shape[dim]
        mode = "reflect" if r < n else "replicate"
        pads = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        c = F.pad(x, pads, mode=mode).double().cumsum(dim)
        out = c.narrow(dim, k - 1, n).clone()  # window [i, i + k) = c[i + k - 1] - c[i - 1]
        out.narrow(dim, 1, n - 1).sub_(c.narrow(dim, 0, n - 1))
        x = out.div_(k).float()
    return x


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter (grey guide) with box means of radius ``r``: O(1) per pixel."""
    mean_i, mean_p = box_mean(guide, r), box_mean(src, r)
    var_i = box_mean(guide * guide, r) - mean_i * mean_i
    cov_ip = box_mean(guide * src, r) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * guide + box_mean(b, r)


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
    (radius ~ image size / 20); J = (I - A) / max(t, t_min) + A. Time and memory are linear
    in the number of pixels (separable min filter, box means from cumulative sums).
    """
    img = img.float().clamp(0, 1)
    n, _, h, w = img.shape
    dc = dark_channel_fast(img, patch).flatten(1)  # (N, HW)
    k = max(1, int(top * h * w))
    idx = dc.topk(k, dim=1).indices
    airlight = torch.gather(img.flatten(2), 2, idx[:, None, :].expand(n, 3, k)).mean(2)
    a = airlight.clamp(min=1e-3).view(n, 3, 1, 1)
    t = 1 - omega * dark_channel_fast(img / a, patch).unsqueeze(1)
    r = radius or max(4, min(h, w) // 20)
    grey = img.mean(1, keepdim=True)
    t = guided_filter(grey, t, r, eps).clamp(t_min, 1)
    return ((img - a) / t + a).clamp(0, 1)
