"""Kinds of fog beyond the homogeneous scattering model, for augmentation and for testing on
fog that no training used (README "Fog kinds").

Every kind starts from I = J t + A (1 - t), t = exp(-beta d) (``fog.add_fog``) and changes one
thing real fog has and the homogeneous model lacks:

- ``uniform``: the homogeneous model itself (grey airlight, one beta per image).
- ``patchy``: non-homogeneous density (fog banks, drifting patches): beta varies over the
  image by a smooth random field, beta(x) = beta (1 + s n(x)), n in [-1, 1], s in [0.5, 0.9].
- ``scatter``: multiple forward scattering: the light that reaches the camera through fog
  is blurred, the more the thicker the fog; the transmitted scene is t J + (1 - t) G*J with
  a Gaussian G of sigma = 1-3 % of the image's shorter side.
- ``tinted``: wavelength-dependent extinction (haze of small particles scatters blue more,
  beta_c = beta (lambda_c / 550 nm)^-q, q in [0.5, 1.5]) and a coloured airlight (warm
  street lights or a blue sky, up to 20 % per channel).

A kind's own parameters are drawn after beta and A from the same uniform source, so the
``uniform`` kind gives exactly the images of the homogeneous model for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import torch
import torch.nn.functional as F

from ..config import FogKind
from .fog import add_fog

FOG_KINDS = get_args(FogKind)
# kinds no default training uses: the study tests generalisation on them
UNSEEN_KINDS = ("patchy", "scatter")
WAVELENGTHS = (610.0, 550.0, 465.0)  # nm, the R, G, B channels


def check_kinds(kinds, what: str = "fog kind") -> list[str]:
    bad = [k for k in kinds if k not in FOG_KINDS]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r} (known: {', '.join(FOG_KINDS)})")
    return list(kinds)


def sample_kind_params(kind: str, uniform: Callable[[], float]) -> dict[str, float]:
    """The kind's own parameters from ``uniform()`` draws in [0, 1)."""
    check_kinds([kind])
    if kind == "patchy":
        return {
            "strength": 0.5 + 0.4 * uniform(),
            "cells": float(3 + int(3 * uniform())),  # 3-5 field cells across the image
            "field_seed": float(int(uniform() * 2**31)),
        }
    if kind == "scatter":
        return {"sigma": 0.01 + 0.02 * uniform()}
    if kind == "tinted":
        return {"q": 0.5 + uniform(), "tint": -0.15 + 0.35 * uniform()}
    return {}


def format_params(params: dict[str, float]) -> str:
    """``key=value;...`` for a manifest cell (empty for the uniform kind)."""
    return ";".join(f"{k}={v:.6g}" for k, v in params.items())


def smooth_field(h: int, w: int, cells: int, seed: int) -> torch.Tensor:
    """A smooth random field (1, 1, H, W) in [-1, 1] with zero mean: a cells x cells grid of
    normal values, upsampled bicubically."""
    gen = torch.Generator().manual_seed(int(seed))
    grid = torch.randn(1, 1, cells + 1, cells + 1, generator=gen, dtype=torch.float64)
    field = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)
    field = field - field.mean()
    return (field / field.abs().max().clamp_min(1e-12)).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), edge-replicated, radius 3 sigma."""
    radius = max(1, int(3 * sigma + 0.5))
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (r / max(sigma, 1e-6)) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def render_fog(
    clear: torch.Tensor, depth: torch.Tensor, beta: float, airlight: float, kind: str, params
) -> torch.Tensor:
    """One foggy image (3, H, W) of ``kind`` from its clear image and depth (1, H, W)."""
    check_kinds([kind])
    if kind == "uniform":
        return add_fog(clear, depth, beta, airlight)
    h, w = clear.shape[-2:]
    if kind == "patchy":
        n = smooth_field(h, w, int(params["cells"]), int(params["field_seed"]))[0]
        beta_map = beta * (1 + params["strength"] * n).clamp_min(0.0)
        t = torch.exp(-beta_map * depth)
        return (clear * t + airlight * (1 - t)).clamp(0, 1)
    if kind == "scatter":
        t = torch.exp(-beta * depth)
        sigma = params["sigma"] * min(h, w)
        blurred = gaussian_blur(clear[None], sigma)[0]
        scene = clear * t + blurred * (1 - t)
        return (scene * t + airlight * (1 - t)).clamp(0, 1)
    # tinted: per-channel extinction and a coloured airlight
    lam = torch.tensor(WAVELENGTHS, dtype=clear.dtype) / WAVELENGTHS[1]
    beta_c = (beta * lam ** (-params["q"])).view(3, 1, 1)
    tau = params["tint"]
    tint = (1.0, 1 - tau / 2, 1 - tau) if tau >= 0 else (1 + tau, 1 + tau / 2, 1.0)
    a_c = (airlight * torch.tensor(tint, dtype=clear.dtype)).clamp(0, 1).view(3, 1, 1)
    t = torch.exp(-beta_c * depth)
    return (clear * t + a_c * (1 - t)).clamp(0, 1)


def random_kind_fog(
    clear: torch.Tensor,
    depth: torch.Tensor,
    kinds,
    beta_range,
    airlight_range,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, str]:
    """On-the-fly fog of a kind drawn from ``kinds`` (training augmentation); returns the
    foggy image and its kind."""

    def uniform() -> float:
        return float(torch.rand(1, generator=generator))

    kind = kinds[min(int(uniform() * len(kinds)), len(kinds) - 1)]
    beta = beta_range[0] + uniform() * (beta_range[1] - beta_range[0])
    airlight = airlight_range[0] + uniform() * (airlight_range[1] - airlight_range[0])
    return render_fog(clear, depth, beta, airlight, kind, sample_kind_params(kind, uniform)), kind
