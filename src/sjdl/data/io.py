"""Image decoding and encoding with Pillow (RGB, uint8 <-> float [0, 1]).

``open_image`` is the one gate every image reader of sjdl goes through (datasets, ``fog``,
``defog``, ``index``, ``search``, the search page's uploads, thumbnails, pictures): regular
files only (a FIFO or device named ``*.jpg`` is refused at once instead of blocking), only
``ALLOWED_FORMATS`` (other Pillow formats, EPS included, are refused by name, never parsed),
and at most ``MAX_PIXELS`` pixels (a tiny file claiming 50000 x 50000 is "too large",
before anything is decoded); Pillow's own decompression-bomb limit is set to the same number.

16-bit greyscale PNGs (Pillow modes ``I;16*``/``I``) are scaled by 1/65535 (Pillow's own RGB
conversion would clip them to white); 16-bit colour PNGs are decoded by Pillow to 8 bits.
Writes go to a temporary file in the same folder that replaces the target in one rename.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..storage import save_pil
from .cache import CACHE

ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
ALLOWED_TEXT = "JPEG, PNG, BMP or WebP"
MAX_PIXELS = 100_000_000  # 10000 x 10000; a float copy is 1.2 GB
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow errors above 2x this; open_image at 1x
_NONBLOCK = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class ImageReadError(OSError):
    """An image file is missing, unreadable or truncated; the message names it (``path``)."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class ImageTooLargeError(ImageReadError):
    """An image has more than ``MAX_PIXELS`` pixels (a decompression bomb, or a huge scan)."""


class ImageFormatError(ImageReadError):
    """A file of a format sjdl does not read (EPS, TIFF, PSD, ...); the message names it."""


def _sniff(prefix: bytes) -> str | None:
    """The Pillow format whose signature ``prefix`` matches (allowed formats first); no
    decoder or header parser is run."""
    Image.init()
    ordered = [*ALLOWED_FORMATS, *(f for f in Image.OPEN if f not in ALLOWED_FORMATS)]
    for fmt in ordered:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        try:
            if accept is not None and accept(prefix):
                return fmt
        except Exception:  # a plugin's signature test on a short prefix
            continue
    return None


def _header_size(f, fmt: str | None, name: str) -> tuple[int, int] | None:
    """(width, height) from the header alone (Pillow's size guard is skipped: nothing is
    decoded), for the message about a too large image."""
    try:
        f.seek(0)
        im = Image.OPEN[fmt][0](f, name)
        return im.size
    except Exception:
        return None


def too_large(name, w: int, h: int, limit: int = MAX_PIXELS) -> ImageTooLargeError:
    return ImageTooLargeError(f"{name}: too large ({w} x {h} pixels, limit {limit})", name)


def _open_file(path) -> object:
    """A binary file object of a regular file, opened without blocking on FIFOs."""
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read image ({e.strerror or e})", path) from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:  # pragma: no cover
        os.close(fd)
        raise ImageReadError(f"{path}: cannot read image ({e.strerror or e})", path) from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise ImageReadError(f"{path}: not a regular file ({kind}), not read", path)
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def open_image(source, name=None, formats=ALLOWED_FORMATS, max_pixels: int = MAX_PIXELS):
    """A lazily decoded Pillow image from a path or a binary file object, after the checks
    in the module docstring; errors are ``ImageReadError`` naming ``name`` (or the path)."""
    name = str(source if name is None else name)
    f = source if hasattr(source, "read") else _open_file(source)
    try:
        prefix = f.read(16)
        f.seek(0)
        fmt = _sniff(prefix)
        if fmt is not None and fmt not in formats:
            allowed = ALLOWED_TEXT if formats == ALLOWED_FORMATS else ", ".join(formats)
            raise ImageFormatError(f"{name}: {fmt} format; only {allowed} images are read", name)
        try:
            with warnings.catch_warnings():  # 1x..2x: Pillow warns, the check below refuses
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(f, formats=list(formats))
        except Image.DecompressionBombError:
            w, h = _header_size(f, fmt, name) or (0, 0)
            if not w * h:
                msg = f"{name}: too large (limit {max_pixels} pixels)"
                raise ImageTooLargeError(msg, name) from None
            raise too_large(name, w, h, max_pixels) from None
        except (OSError, SyntaxError, ValueError, RuntimeError) as e:
            raise ImageReadError(f"{name}: cannot read image ({e})", name) from None
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise too_large(name, w, h, max_pixels)
            yield im
    finally:
        if f is not source:
            f.close()


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


def read_image(path: str | Path, max_side: int | None = None, cached: bool = False) -> torch.Tensor:
    """Decode to a float tensor (3, H, W) in [0, 1]. With ``max_side``, JPEG decoding may use
    DCT scaling (Pillow ``draft``) to a size no smaller than that, which is much faster.
    ``cached``: keep the decoded pixels in memory for the next read (data/cache.py)."""
    key = CACHE.key(path, max_side) if cached and CACHE.limit else None
    arr = CACHE.get(key)
    if arr is None:
        arr = _decode(path, max_side)
        CACHE.put(key, arr)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return t.float() if arr.dtype == np.float32 else t.float().div_(255)


def _decode(path: str | Path, max_side: int | None) -> np.ndarray:
    try:
        with open_image(path) as im:
            if max_side and im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))
            return _to_array(im, path)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot read image ({e})", path) from None


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded."""
    return img.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def save_image(img: torch.Tensor, path: str | Path, quality: int = 95) -> None:
    """Write (3, H, W) in [0, 1] atomically; JPEG quality ``quality``, format from the suffix."""
    path = Path(path)
    jpeg = Image.registered_extensions().get(path.suffix.lower()) == "JPEG"
    save_pil(Image.fromarray(to_uint8(img)), path, **({"quality": quality} if jpeg else {}))
