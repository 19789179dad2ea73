"""The SJDL network: CFSM (shared front), ReIDM (rest + neck), two ID heads, FIRM (paper Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .dcn import ChannelAttention, DCNBlock
from .firm import FIRM
from .mobilenet import MobileNetV2, canonical_keys
from .mobilenet import torchvision_view as mobilenet_view
from .resnet import LoadReport, ResNet, load_pretrained
from .weights import resolve_pretrained

SPLIT_DEPTH = {"conv2": 1, "conv3": 2, "conv4": 3, "conv5": 4}  # layers in CFSM
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SJDLOutput:
    """One forward pass. ``restored`` = (J_fake, J_enh), or None when FIRM did not run."""

    global_feat: torch.Tensor  # GAP output, before the BNNeck (N, D)
    bn_feat: torch.Tensor  # after the BNNeck (N, D)
    logits: dict[str, torch.Tensor] = field(default_factory=dict)  # one entry per ID head
    restored: tuple[torch.Tensor, torch.Tensor] | None = None
    # the batch rows ``restored`` belongs to (model.firm.train_stride): every row by default
    restored_rows: slice = field(default_factory=lambda: slice(None))


def _rows(t: torch.Tensor, rows: slice) -> torch.Tensor:
    """``t[rows]`` as a dense tensor in ``t``'s memory format (a strided view would leave the
    convolutions to pick a layout)."""
    cl = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return t[rows].contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


class CFSM(nn.Module):
    """Collective feature sharing module: stem + layer1 (Conv_2) or deeper (Table 5)."""

    def __init__(self, backbone: ResNet | MobileNetV2, depth: int):
        super().__init__()
        stem = backbone.stem_modules()
        self.stem_names = list(stem)
        for name, module in stem.items():
            setattr(self, name, module)
        self.layer_names = [f"layer{i}" for i in range(1, depth + 1)]
        for name in self.layer_names:
            setattr(self, name, getattr(backbone, name))
        self.out_channels = backbone.out_channels[depth]
        self.skip_stage = backbone.skip_stage
        self.skip_channels = backbone.out_channels[self.skip_stage]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (F_C, f1): the shared features and the stride-4 skip features for FIRM."""
        for name in self.stem_names:
            x = getattr(self, name)(x)
        f1 = x
        for stage, name in enumerate(self.layer_names, 1):
            x = getattr(self, name)(x)
            if stage == self.skip_stage:
                f1 = x
        return x, f1


class ReIDM(nn.Module):
    """Re-identification module: the remaining ResNet layers, GAP and BNNeck (frozen bias)."""

    def __init__(self, backbone: ResNet | MobileNetV2, depth: int, neck: str = "bnneck"):
        super().__init__()
        self.layer_names = [f"layer{i}" for i in range(depth + 1, 5)]
        for name in self.layer_names:
            setattr(self, name, getattr(backbone, name))
        channels = backbone.out_channels[4]
        self.dcn = self.attention = None
        if neck == "dcn_attention":  # released code's extra neck (spec §1.2)
            self.dcn = DCNBlock(channels, 512)
            channels += 512
            self.attention = ChannelAttention(channels, 16)
        self.feat_dim = channels
        self.bnneck = nn.BatchNorm1d(channels)
        self.bnneck.bias.requires_grad_(False)

    def forward(self, f_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = f_c
        for name in self.layer_names:
            y = getattr(self, name)(y)
        if self.dcn is not None:
            y = self.attention(torch.cat([y, self.dcn(y)], dim=1))
        global_feat = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return global_feat, self.bnneck(global_feat)


class _BackboneView(nn.Module):
    """Shares the ResNet layers of a model under torchvision's key names (no copies)."""

    def __init__(self, cfsm: CFSM, reidm: ReIDM):
        super().__init__()
        self.conv1, self.bn1 = cfsm.conv1, cfsm.bn1
        for owner in (cfsm, reidm):
            for name in owner.layer_names:
                setattr(self, name, getattr(owner, name))


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` unchanged forward; its gradient times ``factor`` backward (0: ``x.detach()``)."""
    return x.detach() if factor == 0 else _ScaleGrad.apply(x, factor)


class SJDL(nn.Module):
    """Joint defogging + ReID network. Train: features, logits, restored images. Eval: features."""

    def __init__(
        self,
        backbone: str = "resnet50",
        last_stride: int = 1,
        split: str = "conv2",
        neck: str = "bnneck",
        num_syn_ids: int = 1,
        num_real_ids: int = 0,
        with_firm: bool = True,
        firm_res_blocks: int = 1,
        firm_output: str = "unit",
        firm_width: int = 64,
        firm_cfsm_grad: float = 1.0,
        firm_scale: int = 1,
        firm_train_stride: int = 1,
        normalize: str = "imagenet",
        retrieval_feature: str = "post_bn",
    ):
        super().__init__()
        if split not in SPLIT_DEPTH:
            raise ValueError(f"unknown split '{split}', expected one of {', '.join(SPLIT_DEPTH)}")
        self.backbone_name = backbone
        net = (
            MobileNetV2(last_stride)
            if backbone == "mobilenet_v2"
            else ResNet(backbone, last_stride)
        )
        depth = SPLIT_DEPTH[split]
        self.cfsm = CFSM(net, depth)
        self.reidm = ReIDM(net, depth, neck)
        self.feat_dim = self.reidm.feat_dim
        self.retrieval_feature = retrieval_feature
        self.heads = nn.ModuleDict()
        for name, n in (("syn", num_syn_ids), ("real", num_real_ids)):
            if n > 0:
                head = nn.Linear(self.feat_dim, n, bias=False)
                nn.init.normal_(head.weight, std=0.001)
                self.heads[name] = head
        self.firm = None
        self.firm_cfsm_grad = float(firm_cfsm_grad)
        self.firm_train_stride = int(firm_train_stride)
        if with_firm:
            stride = 4 * 2 ** (depth - 1) if depth < 4 else 16 * last_stride
            self.firm = FIRM(
                self.cfsm.out_channels,
                stride,
                self.cfsm.skip_channels,
                firm_res_blocks,
                firm_output,
                firm_width,
                firm_scale,
            )
        mean, std = (
            (IMAGENET_MEAN, IMAGENET_STD) if normalize == "imagenet" else ((0,) * 3, (1,) * 3)
        )
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # -- backbone weights -------------------------------------------------------------------
    def backbone(self) -> nn.Module:
        """The backbone layers under torchvision key names (shared, not copied)."""
        if self.backbone_name == "mobilenet_v2":
            layers = [getattr(m, n) for m in (self.cfsm, self.reidm) for n in m.layer_names]
            return mobilenet_view(self.cfsm.stem, layers)
        return _BackboneView(self.cfsm, self.reidm)

    def load_pretrained(self, path: str) -> LoadReport:
        """Load ImageNet weights (torchvision/IBN-Net file, or ``imagenet`` = bundled MobileNetV2)
        into CFSM and ReIDM; both MobileNetV2 key layouts are accepted."""
        key_map = canonical_keys if self.backbone_name == "mobilenet_v2" else None
        return load_pretrained(
            self.backbone(), resolve_pretrained(path, self.backbone_name), key_map
        )

    # -- forward ----------------------------------------------------------------------------
    def _check_firm_size(self, images: torch.Tensor) -> None:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(
                f"FIRM needs image sides that are multiples of 32, got {h}x{w} "
                f"(e.g. resize to {max(32, round(h / 32) * 32)}x{max(32, round(w / 32) * 32)})"
            )

    def forward(
        self,
        images: torch.Tensor,
        restore: bool = True,
        firm_input: torch.Tensor | None = None,
        heads: tuple[str, ...] | None = None,
    ) -> SJDLOutput:
        """images: (N, 3, H, W) in [0, 1]. In eval mode only CFSM + ReIDM run.

        ``firm_input`` is the foggy image FIRM enhances when it differs from the ReID input
        (e.g. random erasing applied to the ReID input only; CFSM then runs on it too, so
        FIRM never sees erased features); default ``images``.
        ``heads`` limits which ID heads run (default all), so none sits idle under DDP.
        """
        f_c, f1 = self.cfsm((images - self.pixel_mean) / self.pixel_std)
        global_feat, bn_feat = self.reidm(f_c)
        if not self.training:
            return SJDLOutput(global_feat, bn_feat)
        logits = {
            name: head(bn_feat)
            for name, head in self.heads.items()
            if heads is None or name in heads
        }
        restored, rows = None, slice(None)
        if restore and self.firm is not None:
            self._check_firm_size(images)
            if firm_input is None or firm_input is images:
                firm_input, fc_r, f1_r = images, f_c, f1
            else:  # FIRM works from the unerased image's own CFSM features
                fc_r, f1_r = self.cfsm((firm_input - self.pixel_mean) / self.pixel_std)
            if self.firm_train_stride > 1:  # model.firm.train_stride: every N-th image only
                rows = slice(None, None, self.firm_train_stride)
                firm_input, fc_r, f1_r = (_rows(t, rows) for t in (firm_input, fc_r, f1_r))
            if self.firm_cfsm_grad != 1.0:
                fc_r, f1_r = (scale_grad(t, self.firm_cfsm_grad) for t in (fc_r, f1_r))
            restored = self.firm(firm_input, fc_r, f1_r)
        return SJDLOutput(global_feat, bn_feat, logits, restored, rows)

    @torch.no_grad()
    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) retrieval embeddings (pre- or post-BNNeck per config); FIRM is not run."""
        was_training = self.training
        self.eval()
        try:
            out = self(images)
        finally:
            self.train(was_training)
        return out.bn_feat if self.retrieval_feature == "post_bn" else out.global_feat

    @torch.no_grad()
    def restore(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(J_fake, J_enh) for foggy images in [0,1]; runs CFSM + FIRM only."""
        if self.firm is None:
            raise RuntimeError("this model has no FIRM (method=baseline); it cannot restore images")
        self._check_firm_size(images)
        f_c, f1 = self.cfsm((images - self.pixel_mean) / self.pixel_std)
        return self.firm(images, f_c, f1)


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (0 for None)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
