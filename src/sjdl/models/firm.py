"""FIRM: fog-free image reconstruction module (paper §FIRM, spec §2.2).

CFSM features -> [ResBlocks + conv/deconv] stages back to full resolution (with the stem
output f1 joined at 1/4 resolution) -> 7x7 conv -> J_fake; [foggy image, J_fake] -> pyramid
enhancement block (EPDN-style, pools 4/8/16/32) -> J_enh.

Not in the paper (``model.firm.output=affine``, ``model.firm.scale``): FIRM predicts, per pixel,
a gain and an offset applied to the full-resolution foggy image, J = gain * I + offset. The
atmospheric model I = J t + A (1 - t) inverts to exactly that form (gain 1/t, offset
A (1 - 1/t)), and t and A vary slowly across an image, so the coefficients can be predicted at
1/2 or 1/4 resolution and upsampled bilinearly, while image detail comes from I itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _pixels_by_channel(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W, C): a view for a channels-last tensor (a copy otherwise)."""
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(n, h * w, c)


class _InstanceNormLast(torch.autograd.Function):
    """Instance normalisation of a channels-last CPU tensor over its (H*W, C) view: one
    reduction over H*W per (image, channel) each way, no layout copy. Gradient:
    dx = rstd (g - mean(g) - y mean(g y)), means over H*W."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        v = _pixels_by_channel(x)
        # two passes (mean, then the mean square of the centred values: no cancellation);
        # torch.var_mean over this middle dimension takes ~40x as long as two means on CPU
        mean = v.mean(1, keepdim=True)
        # written into a tensor of its own (a view returned here could not be changed in place)
        out = torch.empty_like(x, memory_format=torch.channels_last)
        centred = torch.sub(v, mean, out=_pixels_by_channel(out))
        rstd = (centred * centred).mean(1, keepdim=True).add_(eps).rsqrt_()
        centred.mul_(rstd)
        ctx.save_for_backward(x, mean, rstd)  # the input, not the output: ReLU(inplace) follows
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, mean, rstd = ctx.saved_tensors
        y = (_pixels_by_channel(x) - mean).mul_(rstd)
        gv = _pixels_by_channel(g)
        gy = (gv * y).mean(1, keepdim=True)
        grad = (gv - gv.mean(1, keepdim=True)).sub_(y.mul_(gy)).mul_(rstd)
        n, c, h, w = x.shape
        return grad.view(n, h, w, c).permute(0, 3, 1, 2), None


class InstanceNorm(nn.Module):
    """Instance normalisation (per image and channel, no affine, eps 1e-5): the values of
    ``nn.InstanceNorm2d``. Channels-last CPU tensors go through ``_InstanceNormLast`` (2-2.6x
    less time forward + backward than GroupNorm's kernel at FIRM's sizes, and none of
    InstanceNorm2d's NCHW round trips); anything else through a GroupNorm with one channel
    per group. No parameters or buffers."""

    def __init__(self, ch: int, eps: float = 1e-5):
        super().__init__()
        self.ch, self.eps = ch, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return _InstanceNormLast.apply(x, self.eps)
        return F.group_norm(x, self.ch, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.ch}, eps={self.eps}"


def instance_norm(ch: int) -> InstanceNorm:
    """FIRM's instance normalisation (pix2pixHD's, no affine)."""
    return InstanceNorm(ch)


def _interpolation_matrix(n_out: int, n_in: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation as ``F.interpolate(mode="bilinear",
    align_corners=False)`` samples: source (i + 0.5) n_in / n_out - 0.5, clamped at the edges."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.to(dtype=dtype, device=device)


def upsample_bilinear(x: torch.Tensor, size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` as two matrix products
    (rows, then columns): the same weights, and on CPU a cheaper backward than the kernel's.
    The small matrices are built per call (a cache would keep tensors made under inference
    mode or tracing). On other devices, ``F.interpolate`` itself."""
    if x.device.type != "cpu":
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    mh = _interpolation_matrix(size[0], x.shape[-2], x.dtype, x.device)
    mw = _interpolation_matrix(size[1], x.shape[-1], x.dtype, x.device)
    return mh @ x @ mw.T


class ResBlock(nn.Module):
    """pix2pixHD residual block: (reflect-pad, conv3x3, IN, ReLU, reflect-pad, conv3x3, IN) + x."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            instance_norm(ch),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            instance_norm(ch),
        )

    def forward(self, x):
        return x + self.body(x)


def _stage(ch_in: int, ch_out: int, res_blocks: int, upsample: bool) -> nn.Sequential:
    """``res_blocks`` ResBlocks, then a 3x3 conv (or a x2 transposed conv), IN and ReLU."""
    change = (
        nn.ConvTranspose2d(ch_in, ch_out, 3, 2, 1, output_padding=1)
        if upsample
        else nn.Conv2d(ch_in, ch_out, 3, 1, 1)
    )
    blocks = [ResBlock(ch_in) for _ in range(res_blocks)]
    return nn.Sequential(*blocks, change, instance_norm(ch_out), nn.ReLU(True))


class PyramidEnhance(nn.Module):
    """Pyramid enhancement: two 3x3 convs, avg-pools 32/16/8/4 -> 1x1 conv -> nearest upsample."""

    scales = (32, 16, 8, 4)

    def __init__(self, in_ch: int = 6, width: int = 20, out_ch: int = 3, scale: int = 1):
        super().__init__()
        # at 1/scale resolution the pools shrink with the image: the same regions of the image
        self.scales = tuple(max(1, s // scale) for s in PyramidEnhance.scales)
        self.refine1 = nn.Conv2d(in_ch, width, 3, 1, 1)
        self.refine2 = nn.Conv2d(width, width, 3, 1, 1)
        self.reduce = nn.ModuleList(nn.Conv2d(width, 1, 1) for _ in self.scales)
        self.refine3 = nn.Conv2d(width + len(self.scales), out_ch, 3, 1, 1)

    def forward(self, x):
        d = F.leaky_relu(self.refine1(x), 0.2)
        d = F.leaky_relu(self.refine2(d), 0.2)
        size = d.shape[-2:]
        pyr = [
            F.interpolate(F.leaky_relu(conv(F.avg_pool2d(d, s)), 0.2), size=size, mode="nearest")
            for s, conv in zip(self.scales, self.reduce, strict=True)
        ]
        return torch.tanh(self.refine3(torch.cat([*pyr, d], dim=1)))


class FIRM(nn.Module):
    """Restores J_fake and J_enh at input resolution from CFSM features F_C (stride ``stride``)."""

    def __init__(
        self,
        in_ch: int,
        stride: int,
        stem_ch: int = 64,
        res_blocks: int = 1,
        output: str = "unit",
        width: int = 64,
        scale: int = 1,
    ):
        super().__init__()
        if stride < 4 or 2 ** int(math.log2(stride)) != stride:
            raise ValueError(f"FIRM needs a power-of-two feature stride >= 4, got {stride}")
        if scale not in (1, 2, 4) or (scale > 1 and output != "affine"):
            raise ValueError(f"FIRM scale {scale}: expected 1, or 2 or 4 with output 'affine'")
        self.output = output
        self.stride = stride
        self.scale = scale  # J's coefficients are predicted at 1/scale resolution (affine)
        w = width  # 64 as released; smaller widths are a speed option for CPU runs
        self.head = _stage(in_ch, w, res_blocks, upsample=False)
        # extra x2 stages for deeper CFSM splits (Table 5), until the features are at 1/4
        extra = int(math.log2(stride // 4))
        self.extra = nn.Sequential(*(_stage(w, w, res_blocks, True) for _ in range(extra)))
        self.up1 = _stage(w + stem_ch, w, res_blocks, upsample=scale < 4)  # 1/4 -> 1/2
        self.up2 = _stage(w, w // 2, res_blocks, upsample=scale < 2)  # 1/2 -> 1/1
        out_ch = 6 if output == "affine" else 3  # affine: log-gain and offset per channel
        self.dehaze = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w // 2, out_ch, 7))
        self.enhance = PyramidEnhance(6, 20, out_ch, scale)
        self._init_weights()
        if output in ("residual", "affine"):  # start as the identity: J = I + 0 (gain 1)
            for conv in (self.dehaze[1], self.enhance.refine3):
                nn.init.zeros_(conv.weight)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                nn.init.zeros_(m.bias)

    def _to_range(self, t: torch.Tensor, foggy: torch.Tensor) -> torch.Tensor:
        """unit: (t + 1) / 2; tanh: t (as released); residual: clamp(I + t, 0, 1); affine:
        clamp(exp(2 t_g) I + t_b, 0, 1), t_g and t_b upsampled to I's size (gains 0.14-7.4)."""
        if self.output == "affine":
            gain, offset = t[:, :3], t[:, 3:]  # split before upsampling: no full-size slices
            if self.scale > 1:
                size = foggy.shape[-2:]
                gain, offset = (upsample_bilinear(c, size) for c in (gain, offset))
            return (torch.exp(2 * gain) * foggy + offset).clamp(0, 1)
        if self.output == "residual":
            return (foggy + t).clamp(0, 1)
        return (t + 1) / 2 if self.output == "unit" else t

    def forward(self, foggy: torch.Tensor, f_c: torch.Tensor, f1: torch.Tensor):
        """Return (J_fake, J_enh); ``foggy`` in [0,1], sides multiples of 32 (checked by caller)."""
        y = self.extra(self.head(f_c))
        y = self.up2(self.up1(torch.cat([y, f1], dim=1)))
        j_fake = self._to_range(torch.tanh(self.dehaze(y)), foggy)
        pair = [foggy, j_fake]
        if self.scale > 1:  # the enhancement block works at FIRM's output resolution too
            # each pooled before joining: the same values, no full-size 6-channel copy
            pair = [F.avg_pool2d(t, self.scale) for t in pair]
        j_enh = self._to_range(self.enhance(torch.cat(pair, dim=1)), foggy)
        return j_fake, j_enh
