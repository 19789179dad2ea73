"""Bundled ImageNet weights (``model.pretrained=imagenet``), verified by SHA-256 on loading."""

from __future__ import annotations

from pathlib import Path

from ..storage import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
BUNDLED = {
    # backbone -> (file in sjdl/weights, SHA-256); origin and licence in weights/NOTICE.md
    "mobilenet_v2": (
        "mobilenet_v2_imagenet.safetensors",
        "abb8b58e035e8f1d933dfbbe57472b7c8215973cf1862427282bf5a4df5e677d",
    ),
}
_verified: set[Path] = set()


def resolve_pretrained(value: str, backbone: str) -> Path:
    """``imagenet`` -> the bundled, checksum-verified file for ``backbone``; else a local path."""
    if value != "imagenet":
        return Path(value)
    if backbone not in BUNDLED:
        raise FileNotFoundError(
            f"model.pretrained=imagenet: no bundled ImageNet weights for {backbone} (bundled: "
            f"{', '.join(BUNDLED)}); pass a local torchvision-format file instead"
        )
    name, digest = BUNDLED[backbone]
    path = WEIGHTS_DIR / name
    if path not in _verified:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: bundled weights missing (reinstall sjdl)")
        if sha256_file(path) != digest:
            raise ValueError(f"{path}: SHA-256 mismatch, the bundled weights are damaged")
        _verified.add(path)
    return path
