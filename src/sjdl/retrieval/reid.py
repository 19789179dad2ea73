"""``sjdl.ReID``: a trained checkpoint as a few-line Python object (embeddings, defogging).

Images are given as file paths, PIL images, encoded image bytes or float tensors (3, H, W)
in [0, 1] (a batch (N, 3, H, W) counts as N images). Embedding preprocessing is evaluation's:
decode (JPEG files may be decoded at reduced size, never below the test size), resize to the
test size (bilinear, antialiased); the model normalises. Defogging is ``sjdl defog``'s FIRM
pass at full resolution (tiled above 1024 x 1024).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..data.io import ImageReadError, _to_array, read_image
from ..data.transforms import resize
from .defog import defog_firm
from .index import fingerprint


def _is_single(images) -> bool:
    if isinstance(images, torch.Tensor):
        return images.dim() == 3
    return isinstance(images, str | Path | bytes) or hasattr(images, "convert")


def as_list(images) -> list:
    """One image or a sequence of them (a 4-D tensor: its N images) as a list."""
    if _is_single(images):
        return [images]
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(
                f"expected image tensors (3, H, W) or (N, 3, H, W), got shape {tuple(images.shape)}"
            )
        return list(images)
    if isinstance(images, np.ndarray):
        raise ValueError("numpy arrays are ambiguous: pass torch.from_numpy(a).permute(2, 0, 1)")
    if not isinstance(images, Iterable):
        raise ValueError(f"expected images (paths, PIL images or tensors), got {type(images)}")
    return list(images)


def _check_tensor(t: torch.Tensor, where: str) -> torch.Tensor:
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"{where}: expected a (3, H, W) RGB tensor, got shape {tuple(t.shape)}")
    t = t.detach().float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{where}: the tensor holds NaN or inf values; images must be finite")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{where}: values must lie in [0, 1] (got {lo:g} .. {hi:g}); divide 8-bit images by 255"
        )
    return t


def load_image(item, where: str, max_side: int | None = None) -> torch.Tensor:
    """(3, H, W) float in [0, 1] from a path, PIL image, encoded bytes or tensor."""
    if isinstance(item, torch.Tensor):
        return _check_tensor(item.cpu(), where)
    if isinstance(item, str | Path):
        return read_image(item, max_side)
    if isinstance(item, bytes | bytearray):
        try:
            return read_image(io.BytesIO(item), max_side)
        except ImageReadError as e:
            reason = str(e).split(": ", 1)[-1]
            raise ImageReadError(f"{where}: {reason}") from None
    if hasattr(item, "convert"):  # a PIL image
        arr = _to_array(item, where)
        t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()
        return t if arr.dtype == np.float32 else t / 255
    raise ValueError(f"{where}: expected a path, PIL image or tensor, got {type(item).__name__}")


class ReID:
    """A trained sjdl model for search: ``embed`` images, ``defog`` them (with FIRM).

    >>> reid = sjdl.ReID.from_checkpoint("runs/demo/sjdl")
    >>> reid.embed(["a.jpg", "b.jpg"]).shape   # (2, D) float32
    """

    def __init__(self, model, cfg, device: torch.device, checkpoint: Path):
        self.model, self.cfg, self.device, self.checkpoint = model, cfg, device, checkpoint
        self._fingerprint: str | None = None
        self._bn: dict | None = None  # re-estimated BatchNorm statistics (bn_stats.encode)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> ReID:
        """Load a weights file or a run folder (``best`` before ``last``); ``device``:
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
        from ..config import resolve_device
        from ..models.io import load_model, resolve_checkpoint

        ckpt = resolve_checkpoint(path)
        dev = resolve_device(device)
        model, cfg, _ = load_model(ckpt, dev)
        return cls(model, cfg, dev, ckpt)

    def __repr__(self) -> str:
        firm = "with FIRM" if self.has_firm else "no FIRM"
        bn = f", BN re-estimated on {self._bn['images']} images" if self._bn else ""
        return f"ReID({str(self.checkpoint)!r}, {self.dim}-d, {firm}{bn}, device={self.device})"

    @property
    def bn_statistics(self) -> dict | None:
        """None when the BatchNorm statistics are the checkpoint's; else where they were
        re-estimated: ``{"source", "images", "sha256"}``."""
        return (
            None if self._bn is None else {k: v for k, v in self._bn.items() if k != "npz_base64"}
        )

    def adapt_bn(self, images, batch_size: int | None = None, source: str = "images") -> ReID:
        """A copy whose BatchNorm statistics are re-estimated on ``images`` (any kind ``embed``
        takes; no labels, no gradient, FIRM does not run): the copy embeds as a model that
        has seen these cameras' image statistics. This model is not changed."""
        items = as_list(images)
        bs = max(2, batch_size or self.cfg.test.batch_size)
        side = max(self.size)
        batches = (
            torch.stack(
                [
                    resize(load_image(x, _name(x, s + i), side), self.size)
                    for i, x in enumerate(items[s : s + bs])
                ]
            )
            for s in range(0, len(items), bs)
        )
        return self._adapted(batches, source)

    def _adapted(self, batches, source: str) -> ReID:
        from ..evaluation.adapt import reestimate_bn
        from .bn_stats import encode

        model, seen = reestimate_bn(self.model, batches, self.device)
        copy = ReID(model, self.cfg, self.device, self.checkpoint)
        copy._fingerprint, copy._bn = self._fingerprint, encode(model, source, seen)
        return copy

    def with_bn_statistics(self, record: dict, where: str) -> ReID:
        """A copy using the BatchNorm statistics of ``record`` (as an index stores them)."""
        from .bn_stats import apply

        copy = ReID(apply(self.model, record, where), self.cfg, self.device, self.checkpoint)
        copy._fingerprint, copy._bn = self._fingerprint, dict(record)
        return copy

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.model.feat_dim)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) images are resized to before embedding."""
        return tuple(self.cfg.data.size_test)

    @property
    def has_firm(self) -> bool:
        """Whether the model has the restoration branch (``defog`` works)."""
        return getattr(self.model, "firm", None) is not None

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the checkpoint file (what an index records)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.checkpoint)
        return self._fingerprint

    @torch.no_grad()
    def embed(self, images, batch_size: int | None = None) -> np.ndarray:
        """(N, D) float32 embeddings of one image or a list of them, in order (L2-normalised
        when the checkpoint's ``test.normalize`` is set, as in evaluation); an unreadable
        image is an error naming it."""
        items = as_list(images)
        bs = max(1, batch_size or self.cfg.test.batch_size)
        side = max(self.size)
        self.model.eval()
        out = []
        for start in range(0, len(items), bs):
            batch = [
                resize(load_image(x, _name(x, start + i), side), self.size)
                for i, x in enumerate(items[start : start + bs])
            ]
            feats = self.model.extract_features(torch.stack(batch).to(self.device)).float()
            if self.cfg.test.normalize:
                feats = torch.nn.functional.normalize(feats, dim=1)
            out.append(feats.cpu())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    @torch.no_grad()
    def defog(self, images):
        """FIRM's restoration of one image or a list of them, at full size, in [0, 1].

        Returns the same kind as given: PIL images for paths, bytes and PIL images; tensors
        for tensors (a (N, 3, H, W) batch gives a batch); a list for a list."""
        if not self.has_firm:
            raise ValueError(
                f"{self.checkpoint}: the model has no FIRM (method=baseline), so it cannot "
                "defog; use a model trained with FIRM, or sjdl defog --method dcp"
            )
        items = as_list(images)
        self.model.eval()
        out = []
        for i, x in enumerate(items):
            img = load_image(x, _name(x, i))[None].to(self.device)
            restored = defog_firm(self.model, img)[0].cpu()
            out.append(restored if isinstance(x, torch.Tensor) else _to_pil(restored))
        if isinstance(images, torch.Tensor):
            return out[0] if images.dim() == 3 else torch.stack(out)
        return out[0] if _is_single(images) else out


def _name(item, i: int) -> str:
    return str(item) if isinstance(item, str | Path) else f"image {i}"


def _to_pil(img: torch.Tensor):
    from PIL import Image

    from ..data.io import to_uint8

    return Image.fromarray(to_uint8(img))
