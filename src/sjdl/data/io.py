"""Image decoding and encoding with Pillow (RGB, uint8 <-> float [0, 1]).

16-bit greyscale PNGs (Pillow modes ``I;16*``/``I``) are scaled by 1/65535 (Pillow's own RGB
conversion would clip them to white); 16-bit colour PNGs are decoded by Pillow to 8 bits.
Writes go to a temporary file in the same folder that replaces the target in one rename.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..storage import save_pil


class ImageReadError(OSError):
    """An image file is missing, unreadable or truncated; the message names it (``path``)."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _to_array(im: Image.Image, path) -> np.ndarray:
    """(H, W, 3) uint8 or float32 in [0, 1] for any Pillow mode."""
    if im.mode in _WIDE_GREY:
        grey = np.asarray(im).astype(np.float32)
        if grey.min() < 0 or grey.max() > 65535:
            raise ImageReadError(f"{path}: integer image values outside 0..65535", path)
        return np.repeat((grey / 65535.0)[..., None], 3, axis=2)
    if im.mode == "F":
        raise ImageReadError(f"{path}: floating-point images are not supported", path)
    return np.asarray(im.convert("RGB"))


def read_image(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """Decode to a float tensor (3, H, W) in [0, 1]. With ``max_side``, JPEG decoding may use
    DCT scaling (Pillow ``draft``) to a size no smaller than that, which is much faster."""
    try:
        with Image.open(path) as im:
            if max_side and im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))
            arr = _to_array(im, path)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, RuntimeError) as e:
        raise ImageReadError(f"{path}: cannot read image ({e})", path) from None
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return t.float() if arr.dtype == np.float32 else t.float().div_(255)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded."""
    return img.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def save_image(img: torch.Tensor, path: str | Path, quality: int = 95) -> None:
    """Write (3, H, W) in [0, 1] atomically; JPEG quality ``quality``, format from the suffix."""
    path = Path(path)
    jpeg = Image.registered_extensions().get(path.suffix.lower()) == "JPEG"
    save_pil(Image.fromarray(to_uint8(img)), path, **({"quality": quality} if jpeg else {}))
