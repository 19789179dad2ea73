"""MobileNetV2 with torchvision's (current, nested) state-dict keys, split into ReID stages.

Written here so the project needs no torchvision. ``features.0`` .. ``features.18`` as in
torchvision (expansion blocks: ``conv.0`` expand ConvBNReLU6, ``conv.1`` depthwise
ConvBNReLU6, ``conv.2`` projection conv, ``conv.3`` BN). Stages, analogous to ResNet's:

| stage | blocks | stride | channels | ResNet analogue |
|---|---|---|---|---|
| stem | features.0-1 | 2 | 16 | conv1 .. maxpool |
| layer1 | features.2-3 | 4 | 24 | layer1 (Conv_2: the first stride-4 stage) |
| layer2 | features.4-6 | 8 | 32 | layer2 (Conv_3) |
| layer3 | features.7-13 | 16 | 96 | layer3 (Conv_4) |
| layer4 | features.14-18 | 32 (16 with last stride 1) | 1280 | layer4 (Conv_5) |

FIRM's skip connection f1 is the stride-4 ``layer1`` output (ResNet's is its stride-4 stem).
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
SETTINGS += [(6, 160, 3, 2), (6, 320, 1, 1)]
STAGE_BLOCKS = [(0, 2), (2, 4), (4, 7), (7, 14), (14, 19)]  # features[a:b] per stage


def conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    """Conv (no bias) + BN + ReLU6 as one Sequential, keys 0 and 1 like torchvision's."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection (+ input)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn_relu6(cin, hidden, 1)]
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


def build_features(last_stride: int = 2) -> list[nn.Module]:
    """The 19 modules of torchvision's ``features``; ``last_stride`` sets features.14's."""
    blocks: list[nn.Module] = [conv_bn_relu6(3, 32, 3, 2)]
    cin = 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            if len(blocks) == STAGE_BLOCKS[4][0]:
                stride = last_stride
            blocks.append(InvertedResidual(cin, c, stride, t))
            cin = c
    blocks.append(conv_bn_relu6(cin, 1280, 1))
    return blocks


class MobileNetV2(nn.Module):
    """Stages ``stem``, ``layer1`` .. ``layer4`` (see the module docstring); no classifier."""

    skip_stage = 1  # f1 for FIRM = layer1 output (stride 4)

    def __init__(self, last_stride: int = 2):
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        feats = build_features(last_stride)
        self.stem, self.layer1, self.layer2, self.layer3, self.layer4 = (
            nn.Sequential(*feats[a:b]) for a, b in STAGE_BLOCKS
        )
        self.out_channels = [16, 24, 32, 96, 1280]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem_modules(self) -> dict[str, nn.Module]:
        return {"stem": self.stem}


def torchvision_view(stem: nn.Module, layers: list[nn.Module]) -> nn.Module:
    """A module whose keys are torchvision's ``features.N.*`` over the given (shared) stages."""
    view = nn.Module()
    view.features = nn.Sequential(*[b for stage in (stem, *layers) for b in stage])
    return view


def _flat_to_nested(key: str) -> str:
    """Older torchvision MobileNetV2 keys (``features.N.conv.K``) to the nested layout."""
    parts = key.split(".")
    if len(parts) < 5 or parts[0] != "features" or parts[2] != "conv":
        return key
    block, k = int(parts[1]), int(parts[3])
    table = {0: "0.0", 1: "0.1", 3: "1", 4: "2"} if block == 1 else {}
    if block > 1:
        table = {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"}
    if k not in table:
        return key
    return ".".join([*parts[:3], table[k], *parts[4:]])


def canonical_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept both MobileNetV2 key layouts; return the nested (current torchvision) one."""
    flat = any(k.startswith("features.2.conv.7.") for k in state)
    return {_flat_to_nested(k): v for k, v in state.items()} if flat else state
