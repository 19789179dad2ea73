"""Defogging losses on images in [0, 1], NCHW (paper Eqs. 4, 6-10; DECISIONS.md).

Every function returns a scalar and is differentiable with respect to the restored image.
All except ``restoration_loss`` take a per-image value and average it over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._dtype import full_precision as _full

_EPS = 1e-8
# Phase self-constraint: per-frequency amplitudes of the restored image below this texture
# amplitude (per pixel, in [0, 1] units; a quarter of one 8-bit grey level) count as this
# amplitude. Without a floor the gradient grows as 1 / amplitude when texture vanishes.
PHASE_AMP_FLOOR = 1e-3


def restoration_loss(restored: torch.Tensor | Sequence[torch.Tensor], clear: torch.Tensor):
    """Supervised defogging loss L_DFs, Eq. 4, as mean squared error over all elements.

    ``restored`` may be one image batch or several (J_fake, J_enh): the MSEs are averaged
    (deep supervision, as released), over the whole batch.
    """
    outs = [restored] if isinstance(restored, torch.Tensor) else list(restored)
    return sum(F.mse_loss(_full(o), _full(clear)) for o in outs) / len(outs)


def soft_histogram(values: torch.Tensor, bins: int = 256, sigma: float = 0.5) -> torch.Tensor:
    """Differentiable histogram (N, bins) of ``values`` (N, P) in [0, 1], each row sums to 1.

    Each value v spreads a unit mass over the bins k = 0..bins-1 with Gaussian weights
    exp(-(v*(bins-1) - k)^2 / (2 sigma^2)) (sigma in bins), normalised per value; only the
    six nearest bins are evaluated (the rest weigh < 4e-6 of the mass).
    """
    x = _full(values).clamp(0, 1) * (bins - 1)
    base = x.detach().floor()
    offsets = torch.arange(-2, 4, device=x.device, dtype=x.dtype)
    idx = base.unsqueeze(-1) + offsets  # (N, P, 6)
    valid = (idx >= 0) & (idx <= bins - 1)
    w = torch.exp(-((x.unsqueeze(-1) - idx) ** 2) / (2 * sigma**2)) * valid
    w = w / w.sum(-1, keepdim=True)
    hist = torch.zeros(x.shape[0], bins, device=x.device, dtype=x.dtype)
    hist = hist.scatter_add(1, idx.clamp(0, bins - 1).long().flatten(1), w.flatten(1))
    return hist / values.shape[1]


def color_entropy_loss(img: torch.Tensor, bins: int = 256, sigma: float = 0.5) -> torch.Tensor:
    """Colour entropy loss L_CE, Eq. 6, signed so that minimising it raises entropy.

    Per image: luminance = mean of R, G, B; H = soft 256-bin histogram of it (see
    ``soft_histogram``); loss = sum_k H_k log H_k (negative entropy, in [-log 256, 0]).
    Mean over the batch.
    """
    lum = _full(img).mean(1).flatten(1)
    h = soft_histogram(lum, bins, sigma)
    return (h * torch.log(h + _EPS)).sum(1).mean()


def dark_channel(img: torch.Tensor, patch: int = 35) -> torch.Tensor:
    """Dark channel, Eq. 7: min over RGB and over the patch around each pixel, (N, H, W).

    Border patches only see pixels inside the image (the pooling pads with +inf). The square
    minimum is taken as a row minimum then a column minimum (the same values, 2p instead of
    p^2 comparisons per pixel).
    """
    if patch % 2 != 1:
        raise ValueError(f"dark channel patch must be odd, got {patch}")
    m = -_full(img).amin(1, keepdim=True)
    r = patch // 2
    m = F.max_pool2d(m, (1, patch), stride=1, padding=(0, r))
    return -F.max_pool2d(m, (patch, 1), stride=1, padding=(r, 0)).squeeze(1)


def dark_channel_loss(img: torch.Tensor, patch: int = 35) -> torch.Tensor:
    """Dark channel loss L_DC, Eq. 8: per image sum over pixels of |DC(J)|, mean over batch."""
    return dark_channel(img, patch).abs().flatten(1).sum(1).mean()


def total_variation_loss(img: torch.Tensor) -> torch.Tensor:
    """Total variation loss L_TV, Eq. 9: per image sum over channels and interior pixel pairs of
    |J(x+1,y) - J(x,y)| + |J(x,y+1) - J(x,y)|, mean over the batch (no padding)."""
    img = _full(img)
    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().flatten(1).sum(1)
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().flatten(1).sum(1)
    return (dx + dy).mean()


def self_constraint_loss(
    restored: torch.Tensor,
    foggy: torch.Tensor,
    mode: str = "spectrum",
    amp_floor: float = PHASE_AMP_FLOOR,
):
    """Self-constraint loss L_SC, Eq. 10: minus the cosine similarity of Fourier spectra.

    ``spectrum`` (paper): per image, Re<F(J), F(I)> / (|F(J)| |F(I)|) over the whole
    C x H x W spectrum (2-D FFT per channel); by Parseval this equals the cosine of the
    images themselves. ``phase`` (released code): per frequency and channel, the cosine of
    the phase difference, averaged; |F(J)| is floored at ``amp_floor`` * sqrt(H W) (the
    magnitude white texture of that amplitude has), so the gradient stays bounded when the
    restored image loses its texture (0 gives the released, unbounded version). Both: minus
    the mean over the batch; identical images -> -1.
    """
    fj = torch.fft.fft2(_full(restored))
    fi = torch.fft.fft2(_full(foggy))
    inner = (fj * fi.conj()).real
    pj = fj.real**2 + fj.imag**2  # squared magnitudes; sqrt taken after a clamp (finite grads)
    pi = fi.real**2 + fi.imag**2
    if mode == "spectrum":
        den = (pj.flatten(1).sum(1) * pi.flatten(1).sum(1)).clamp(min=_EPS**2).sqrt()
        return -(inner.flatten(1).sum(1) / den).mean()
    if mode == "phase":
        h, w = fj.shape[-2:]
        floor = max(amp_floor**2 * h * w, _EPS**2)
        cos = inner / (pj.clamp(min=floor).sqrt() * pi.clamp(min=_EPS**2).sqrt())
        return -cos.flatten(1).mean(1).mean()
    raise ValueError(f"self-constraint mode must be 'spectrum' or 'phase', got {mode!r}")
