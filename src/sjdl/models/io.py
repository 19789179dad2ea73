"""Model weights as .safetensors with the resolved config in the header (no pickle ever)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from ..storage import write_atomic

FORMAT = "sjdl-weights-1"
CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted or does not fit the model; the message names it."""


def first_line(error: BaseException) -> str:
    """The informative line of a library error message (torch's are many lines long)."""
    lines = [x.strip() for x in str(error).splitlines() if x.strip()]
    for i, x in enumerate(lines):  # torch.load(weights_only=True): what it refused
        if "WeightsUnpickler error:" in x:
            rest = x.split("WeightsUnpickler error:", 1)[1].strip()
            rest = rest or (lines[i + 1] if i + 1 < len(lines) else "")
            return rest.split(". ")[0].strip() or "refused by the weights-only unpickler"
    return lines[0] if lines else type(error).__name__


def save_weights(
    model: torch.nn.Module,
    path: str | Path,
    cfg,
    num_syn_ids: int,
    num_real_ids: int,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write ``model``'s state dict and its config atomically (``storage.write_atomic``)."""
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
    return write_atomic(path, safetensors_bytes(state, metadata=meta))


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
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({first_line(e)})"
        ) from None
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


def checkpoint_config(path: str | Path, meta: dict[str, str] | None = None):
    """The resolved config stored in a checkpoint's header (``model.pretrained`` cleared:
    the weights are in the file); a missing or broken header config names the file."""
    from ..config import ConfigError, load_config

    path = resolve_checkpoint(path)
    meta = read_metadata(path) if meta is None else meta
    if "config" not in meta:
        raise CheckpointError(f"{path}: its header holds no config")
    try:
        return load_config(overrides=["model.pretrained="], text=meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: the config in its header is broken ({e})") from None


MAX_IDS = 100_000  # identities of a classifier head (VehicleID has 26 267)


def id_counts(path: str | Path, meta: dict[str, str]) -> tuple[int, int]:
    """(num_syn_ids, num_real_ids) from a header, or an error naming the file; absurd counts
    are refused before a classifier of that size is allocated."""
    try:
        syn, real = int(meta["num_syn_ids"]), int(meta["num_real_ids"])
    except (KeyError, ValueError, TypeError):
        raise CheckpointError(
            f"{path}: header needs integer num_syn_ids and num_real_ids, got "
            f"{meta.get('num_syn_ids')!r} and {meta.get('num_real_ids')!r}"
        ) from None
    for key, n, lo in (("num_syn_ids", syn, 1), ("num_real_ids", real, 0)):
        if not lo <= n <= MAX_IDS:
            raise CheckpointError(
                f"{path}: header {key}={n} is outside {lo}..{MAX_IDS}; the file is damaged"
            )
    return syn, real


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path) -> None:
    """Load ``state`` strictly; missing/unexpected keys, wrong shapes, integer tensors for
    floating ones (or the reverse) and NaN/inf values are errors naming the file."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit the model it describes: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{path}: {len(wrong)} tensor(s) do not have the shape the header describes, "
            f"e.g. {wrong[0]} (file vs model; do num_syn_ids/num_real_ids match the weights?)"
        )
    from .checks import check_tensors

    check_tensors(state, path, own)
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model a checkpoint was trained as and load it strictly.

    Returns (model in eval mode, its config, metadata). Missing or unexpected keys are an
    error listing them (a silently half-loaded model costs whole points of mAP).
    """
    from . import build_model

    path = resolve_checkpoint(path)
    state, meta = read_checkpoint(path)
    cfg = checkpoint_config(path, meta)
    model = build_model(cfg, *id_counts(path, meta))
    load_into(model, state, path)
    return model.to(device).eval(), cfg, meta
