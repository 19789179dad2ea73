"""Image decoding and encoding with Pillow (RGB, uint8 <-> float [0, 1])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


class ImageReadError(OSError):
    """An image file is missing, unreadable or truncated; the message names it."""


def read_image(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """Decode to a float tensor (3, H, W) in [0, 1]. With ``max_side``, JPEG decoding may use
    DCT scaling (Pillow ``draft``) to a size no smaller than that, which is much faster."""
    try:
        with Image.open(path) as im:
            if max_side and im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))
            arr = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: cannot read image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded."""
    return img.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def save_image(img: torch.Tensor, path: str | Path, quality: int = 95) -> None:
    """Write (3, H, W) in [0, 1]; JPEG quality ``quality``, format from the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(to_uint8(img))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=quality)
    else:
        im.save(path)
