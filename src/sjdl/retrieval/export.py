"""ONNX export of the inference network (CFSM + ReIDM -> embedding) and of the restoration
network (CFSM + FIRM -> J_enh), with a dynamic batch axis."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config_ranges import MAX_SIDE, MIN_SIDE
from ..storage import atomic_path


def size_problem(size, restoration: bool) -> str | None:
    """Why ``size`` (height, width) cannot be exported, or None: sides in
    [MIN_SIDE, MAX_SIDE] (the config's image-size range), multiples of 32 for FIRM."""
    h, w = size
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        return f"got {h} {w}, expected sides from {MIN_SIDE} to {MAX_SIDE} pixels"
    if restoration and (h % 32 or w % 32):
        return f"got {h} {w}, expected multiples of 32 (FIRM, the restoration network)"
    return None


class EmbeddingNet(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> retrieval embeddings (N, D); FIRM is not part of it."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.post_bn = model.retrieval_feature == "post_bn"

    def forward(self, images):
        out = self.model(images)
        return out.bn_feat if self.post_bn else out.global_feat


class RestorationNet(nn.Module):
    """Foggy images (N, 3, H, W) in [0, 1], sides multiples of 32 -> J_enh (N, 3, H, W),
    clamped to [0, 1] as ``sjdl defog`` writes it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        m = self.model
        f_c, f1 = m.cfsm((images - m.pixel_mean) / m.pixel_std)
        return m.firm(images, f_c, f1)[1].clamp(0, 1)


@contextlib.contextmanager
def _exporter_quiet():
    """Silence the exporter's own notices that are not about this model: "torchvision is not
    installed. Skipping torchvision::nms" (this package needs no torchvision) and a
    FutureWarning from inside torch; real errors still raise."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            yield
    finally:
        log.setLevel(level)


def export_onnx(
    model, path: str | Path, size=(384, 384), restoration: bool = False, opset: int = 18
) -> Path:
    """Write ``path`` (.onnx). The batch axis is dynamic; height and width are fixed to
    ``size`` (the model's input size). The model is put in eval mode first. The file is
    written atomically (``storage.atomic_path``)."""
    path = Path(path)
    problem = size_problem(size, restoration)
    if problem:
        raise ValueError(f"size: {problem}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give a file name, e.g. {path / 'model.onnx'}")
    model = model.eval().cpu()
    if restoration and model.firm is None:
        raise ValueError("this model has no FIRM (method=baseline): nothing to export")
    net = (RestorationNet(model) if restoration else EmbeddingNet(model)).eval()
    example = torch.rand(2, 3, *size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(path) as tmp, _exporter_quiet():
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["restored" if restoration else "embeddings"],
            dynamic_shapes={"images": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path
