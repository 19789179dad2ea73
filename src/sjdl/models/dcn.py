"""Deformable convolution (DCNv1) in plain PyTorch, the DCN block and channel attention.

These form the released code's extra neck (spec §1.2), used by ``preset: official``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DeformConv2d(nn.Module):
    """3x3 deformable convolution (Dai et al. 2017): bilinear samples at learned offsets.

    Offsets come from a 3x3 conv (``p_conv``) with zero-initialised weights, so a fresh
    layer samples the regular grid shifted by the bias only. Sampling uses ``grid_sample`` on
    a zero-padded input; with all offsets 0 the layer equals ``F.conv2d(x, w, padding=1)``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = False):
        super().__init__()
        self.k = kernel_size
        self.p_conv = nn.Conv2d(in_ch, 2 * kernel_size * kernel_size, 3, padding=1, bias=True)
        nn.init.zeros_(self.p_conv.weight)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        kk = self.k * self.k
        if offset is None:
            offset = self.p_conv(x)
        offset = offset.view(n, kk, 2, h, w)  # (dy, dx) per kernel tap
        r = (self.k - 1) // 2
        taps = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        ty, tx = torch.meshgrid(taps, taps, indexing="ij")
        gy, gx = torch.meshgrid(
            torch.arange(h, device=x.device, dtype=x.dtype),
            torch.arange(w, device=x.device, dtype=x.dtype),
            indexing="ij",
        )
        py = gy + ty.reshape(kk, 1, 1) + offset[:, :, 0]  # (n, kk, h, w)
        px = gx + tx.reshape(kk, 1, 1) + offset[:, :, 1]
        # normalise to [-1, 1] with align_corners=True: pixel i -> -1 + 2 i / (size - 1)
        grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1).view(
            n, kk * h, w, 2
        )
        sampled = F.grid_sample(
            x, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        ).view(n, c, kk, h, w)
        out = torch.einsum("nckhw,ock->nohw", sampled, self.weight.flatten(2))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out


class DCNBlock(nn.Module):
    """conv3x3(in->mid, bias) -> BN -> ReLU -> DeformConv(mid->mid) -> BN -> ReLU (spec §1.2)."""

    def __init__(self, in_ch: int = 2048, mid: int = 512):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, mid, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dcn = DeformConv2d(mid, mid)
        self.bn2 = nn.BatchNorm2d(mid)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv(x)))
        return F.relu(self.bn2(self.dcn(x)))


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avgpool) + MLP(maxpool)) scales each channel."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // ratio, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // ratio, channels, 1, bias=False),
        )

    def forward(self, x):
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)
