"""Model weights as .safetensors with the resolved config in the header (no pickle ever)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "sjdl-weights-1"
CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted or does not fit the model; the message names it."""


def save_weights(
    model: torch.nn.Module,
    path: str | Path,
    cfg,
    num_syn_ids: int,
    num_real_ids: int,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write ``model``'s state dict and its config atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .. import __version__

    meta = {
        "format": FORMAT,
        "config": cfg.to_yaml(),
        "num_syn_ids": str(num_syn_ids),
        "num_real_ids": str(num_real_ids),
        "sjdl_version": __version__,
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A weights file, or a run folder (``best`` preferred over ``last``, also in checkpoints/)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for folder in (path, path / "checkpoints"):
            for name in CHECKPOINT_NAMES:
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(f"{path}: no {' or '.join(CHECKPOINT_NAMES)} in it or checkpoints/")
    raise CheckpointError(f"{path}: checkpoint not found")


def _open(path: Path, tensors: bool):
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path}: not a readable .safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an sjdl checkpoint (header format "
            f"{meta.get('format')!r}, expected {FORMAT!r})"
        )
    return state, meta


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header (config, id counts, version) of a weights file, without loading tensors."""
    return _open(resolve_checkpoint(path), tensors=False)[1]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a weights file; errors name the file."""
    return _open(resolve_checkpoint(path), tensors=True)


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model a checkpoint was trained as and load it strictly.

    Returns (model in eval mode, its config, metadata). Missing or unexpected keys are an
    error listing them (a silently half-loaded model costs whole points of mAP).
    """
    from ..config import load_config
    from . import build_model

    state, meta = read_checkpoint(path)
    cfg = load_config(overrides=["model.pretrained="], text=meta["config"])
    model = build_model(cfg, int(meta["num_syn_ids"]), int(meta["num_real_ids"]))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{resolve_checkpoint(path)}: does not fit the model it describes: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(device).eval(), cfg, meta
