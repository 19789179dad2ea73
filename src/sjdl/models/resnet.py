"""ResNet-18/34/50 and ResNet-50-IBN-a with torchvision-compatible state-dict keys.

Written here so the project needs no torchvision. Stride sits on the 3x3 convolution of a
bottleneck (torchvision's "v1.5"). ``last_stride`` sets the stride of ``layer4``. There is no
``fc``: ImageNet classifier weights in a pretrained file are reported as unexpected and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


class IBN(nn.Module):
    """IBN-a norm: InstanceNorm on the first half of the channels, BatchNorm on the rest."""

    def __init__(self, planes: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, ibn=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = IBN(planes) if ibn else nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, ibn=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = IBN(planes) if ibn else nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], False),
    "resnet34": (BasicBlock, [3, 4, 6, 3], False),
    "resnet50": (Bottleneck, [3, 4, 6, 3], False),
    "resnet50_ibn_a": (Bottleneck, [3, 4, 6, 3], True),
}


class ResNet(nn.Module):
    """Stem (conv1, bn1, relu, maxpool) and layer1..layer4; no pooling, no classifier."""

    def __init__(self, arch: str = "resnet50", last_stride: int = 1):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown backbone '{arch}', expected one of {', '.join(ARCHS)}")
        block, layers, ibn = ARCHS[arch]
        self.arch = arch
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        # IBN-a uses instance norm in layer1-3, plain BN in layer4.
        self.layer1 = self._make_layer(block, 64, layers[0], 1, ibn)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, ibn)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, ibn)
        self.layer4 = self._make_layer(block, 512, layers[3], last_stride, False)
        self.out_channels = [
            64,
            64 * block.expansion,
            128 * block.expansion,
            256 * block.expansion,
            512 * block.expansion,
        ]
        self._init_weights()

    def _make_layer(self, block, planes, blocks, stride, ibn):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, ibn)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, ibn=ibn) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    skip_stage = 0  # f1 for FIRM = stem output (stride 4)

    def stem_modules(self) -> dict[str, nn.Module]:
        """The stem's modules by their torchvision names, in forward order."""
        return {"conv1": self.conv1, "bn1": self.bn1, "relu": self.relu, "maxpool": self.maxpool}


@dataclass
class LoadReport:
    """Outcome of loading a pretrained file: which keys matched, which did not."""

    path: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    def summary(self) -> str:
        return (
            f"{self.path}: loaded {len(self.loaded)} tensors, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local .pth/.pt (weights only, nothing unpickled) or .safetensors state dict.

    Unreadable, truncated or pickled files raise ``CheckpointError`` naming the file."""
    import pickle
    import warnings

    from .io import CheckpointError, first_line

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path} (nothing is downloaded)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:  # truncated or not safetensors at all
            raise CheckpointError(
                f"{path}: not a readable .safetensors file ({first_line(e)})"
            ) from None
    else:
        try:
            with warnings.catch_warnings():  # e.g. "pickle protocol 4": the error says more
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{path}: cannot read as a weights-only torch file: refused, it holds "
                "pickled Python objects, not only tensors "
                f"({first_line(e)}); save model.state_dict() or a .safetensors file instead"
            ) from None
        except Exception as e:  # truncated files, other formats
            raise CheckpointError(
                f"{path}: cannot read as a weights-only torch file ({first_line(e)})"
            ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(model: nn.Module, path: str | Path, key_map=None) -> LoadReport:
    """Copy matching tensors from a local file into ``model``; report the rest, never download.

    ``key_map`` (optional) rewrites the file's state dict first (e.g. an older key layout)."""
    state = read_state_dict(path)
    if key_map is not None:
        state = key_map(state)
    own = model.state_dict()
    from .checks import check_tensors

    check_tensors(state, path, own)
    loaded, mismatched = [], []
    for key, value in state.items():
        if key in own:
            if own[key].shape == value.shape:
                own[key].copy_(value)
                loaded.append(key)
            else:
                mismatched.append(
                    f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
                )
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    if not loaded:  # training on from scratch after a typo'd path would be silently wrong
        from .io import CheckpointError

        example = next(iter(state), "(empty)")
        raise CheckpointError(
            f"{path}: no tensor of it fits this backbone ({len(state)} in the file, e.g. "
            f"'{example}'; the model expects e.g. '{next(iter(own))}'): is it weights for "
            "another network?"
        )
    return LoadReport(str(path), loaded, missing, unexpected, mismatched)
