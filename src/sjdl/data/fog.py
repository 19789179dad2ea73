"""Fog synthesis with the atmospheric scattering model: I = J t + A (1 - t), t = exp(-beta d).

Depth d is in [0, 1]: read from files given alongside the images, or the built-in
ground-plane approximation (``builtin_depth``) when there are none. beta and the grey
airlight A are drawn per image from a seeded generator.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

FOG_PRESETS = {  # (beta range, airlight range), DECISIONS.md
    "paper": ((0.4, 1.6), (0.5, 1.0)),
    "official": ((1.0, 5.0), (0.4, 1.0)),
}
DEPTH_EXTENSIONS = (".png", ".npy", ".mat")
BUILTIN_NEAR, BUILTIN_FAR = 0.3, 1.0


def add_fog(clear: torch.Tensor, depth: torch.Tensor, beta, airlight) -> torch.Tensor:
    """Foggy image I = J t + A (1 - t), t = exp(-beta d); J (..., 3, H, W) in [0, 1].

    ``depth`` broadcasts against J (e.g. (..., 1, H, W)); ``beta`` and ``airlight`` are
    scalars or per-image tensors of shape (N,). The result is clamped to [0, 1].
    """
    beta = torch.as_tensor(beta, dtype=clear.dtype, device=clear.device)
    airlight = torch.as_tensor(airlight, dtype=clear.dtype, device=clear.device)
    if beta.ndim == 1:
        beta = beta.view(-1, 1, 1, 1)
    if airlight.ndim == 1:
        airlight = airlight.view(-1, 1, 1, 1)
    t = torch.exp(-beta * depth)
    return (clear * t + airlight * (1 - t)).clamp(0, 1)


def builtin_depth(height: int, width: int, dtype=torch.float32) -> torch.Tensor:
    """Ground-plane depth prior (1, H, W): a roadside camera looks down on the road, so a
    pixel's distance grows towards the top of the image. d rises linearly from 0.3 at the
    bottom row to 1.0 at the top row and is constant along each row."""
    rows = torch.linspace(BUILTIN_FAR, BUILTIN_NEAR, height, dtype=dtype)
    return rows.view(1, height, 1).expand(1, height, width).clone()


def read_depth(path: str | Path) -> np.ndarray:
    """A depth map as float32 (H, W) in [0, 1] from .png (8/16-bit), .npy or .mat.

    PNG values are divided by the bit depth's maximum (255 or 65535). Arrays from .npy/.mat
    (the first 2-D numeric variable of a .mat) are used as they are when already in [0, 1],
    otherwise min-max normalised per image. Unreadable files, negative depths and constant
    maps outside [0, 1] are errors that name the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DEPTH_EXTENSIONS:
        raise ValueError(f"{path}: unsupported depth format (use {', '.join(DEPTH_EXTENSIONS)})")
    try:
        arr = _load_depth(path, suffix)
    except Exception as e:  # any decoder failure (truncated, pickled, not an image/array)
        raise ValueError(f"{path}: cannot read depth map ({e})") from None
    if suffix == ".png":
        return arr
    arr = arr.squeeze()
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D depth map, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: depth map contains NaN or inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0:
        raise ValueError(f"{path}: depth map has negative values (min {lo:g}); depth is a distance")
    if hi > 1:
        if hi == lo:
            raise ValueError(f"{path}: constant depth {lo:g} outside [0, 1] cannot be normalised")
        arr = (arr - lo) / (hi - lo)
    return arr


def _load_depth(path: Path, suffix: str) -> np.ndarray:
    if suffix == ".png":
        from .io import open_image

        with open_image(path, formats=("PNG",)) as im:
            arr = np.asarray(im)
        if arr.ndim == 3:
            arr = arr[..., 0]
        scale = 65535.0 if arr.dtype == np.uint16 or arr.max() > 255 else 255.0
        return (arr.astype(np.float32) / scale).clip(0, 1)
    if suffix == ".npy":
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    from scipy.io import loadmat

    arrays = [
        v
        for k, v in loadmat(path).items()
        if not k.startswith("__")
        and isinstance(v, np.ndarray)
        and v.ndim == 2
        and np.issubdtype(v.dtype, np.number)
    ]
    if not arrays:
        raise ValueError("no 2-D numeric variable found")
    return np.asarray(arrays[0], dtype=np.float32)


def find_depth(depth_dir: Path, image_name: str) -> Path | None:
    """The depth file for an image: ``<stem>.png|.npy|.mat`` or ``<stem>/predict_depth_gray.png``
    (the released preprocessing layout)."""
    stem = Path(image_name).stem
    for ext in DEPTH_EXTENSIONS:
        if (depth_dir / f"{stem}{ext}").is_file():
            return depth_dir / f"{stem}{ext}"
    nested = depth_dir / stem / "predict_depth_gray.png"
    return nested if nested.is_file() else None


@dataclass(frozen=True)
class FogParams:
    beta: float
    airlight: float
    kind: str = "uniform"  # data/fog_kinds.py
    params: dict = field(default_factory=dict)  # the kind's own parameters


def fog_ranges(preset: str = "paper", beta=None, airlight=None):
    """(beta range, airlight range) from a preset, each overridable by an explicit (lo, hi)."""
    if preset not in FOG_PRESETS:
        raise ValueError(f"fog preset must be one of {', '.join(FOG_PRESETS)}, got {preset!r}")
    b, a = FOG_PRESETS[preset]
    b, a = tuple(beta or b), tuple(airlight or a)
    if not (0 <= b[0] <= b[1]) or not (0 <= a[0] <= a[1] <= 1):
        raise ValueError(f"bad fog ranges: beta {b} (need 0 <= lo <= hi), airlight {a} (in [0, 1])")
    return b, a


def sample_fog_params(
    seed: int, key: str, beta_range, airlight_range, kind: str = "uniform"
) -> FogParams:
    """beta ~ U(beta_range), A ~ U(airlight_range), then the kind's own parameters, from a
    generator seeded by (seed, key): the same file gets the same fog whatever the order."""
    from .fog_kinds import sample_kind_params

    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    beta, airlight = float(rng.uniform(*beta_range)), float(rng.uniform(*airlight_range))
    return FogParams(beta, airlight, kind, sample_kind_params(kind, lambda: float(rng.uniform())))


def random_fog(
    clear: torch.Tensor,
    generator: torch.Generator | None = None,
    beta_range=FOG_PRESETS["paper"][0],
    airlight_range=FOG_PRESETS["paper"][1],
):
    """On-the-fly fog for a batch (N, 3, H, W) with the built-in depth and random beta, A."""
    n, _, h, w = clear.shape
    u = torch.rand(2, n, generator=generator)
    beta = beta_range[0] + u[0] * (beta_range[1] - beta_range[0])
    airlight = airlight_range[0] + u[1] * (airlight_range[1] - airlight_range[0])
    depth = builtin_depth(h, w, clear.dtype).to(clear.device)
    return add_fog(clear, depth, beta.to(clear), airlight.to(clear))
