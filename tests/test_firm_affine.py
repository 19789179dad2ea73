"""model.firm.output=affine and model.firm.scale: FIRM predicts a per-pixel gain and offset
(at full, 1/2 or 1/4 resolution) applied to the full-resolution foggy image."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sjdl.config import ConfigError, load_config
from sjdl.models import build_model
from sjdl.models.firm import FIRM


def _firm(scale: int, output: str = "affine") -> FIRM:
    torch.manual_seed(0)
    return FIRM(in_ch=24, stride=4, stem_ch=16, output=output, width=16, scale=scale).eval()


def _inputs(h: int = 64, w: int = 96):
    torch.manual_seed(1)
    return (
        torch.rand(2, 3, h, w),
        torch.randn(2, 24, h // 4, w // 4),
        torch.randn(2, 16, h // 4, w // 4),
    )


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_affine_firm_starts_as_the_identity_at_full_resolution(scale):
    foggy, f_c, f1 = _inputs()
    j_fake, j_enh = _firm(scale)(foggy, f_c, f1)
    assert j_fake.shape == j_enh.shape == foggy.shape
    assert torch.allclose(j_fake, foggy, atol=1e-6) and torch.allclose(j_enh, foggy, atol=1e-6)


@pytest.mark.parametrize("scale", [1, 4])
def test_affine_output_inverts_the_atmospheric_model_exactly(scale):
    """I = J t + A (1 - t) with t = 0.5, A = 0.8: gain 1/t = 2 and offset A (1 - 1/t) = -0.8,
    constant coefficients (exact after upsampling), give J back, fine detail included."""
    torch.manual_seed(2)
    clear = 0.2 + 0.6 * torch.rand(1, 3, 64, 64)  # J, with pixel-level detail
    t, a = 0.5, 0.8
    foggy = clear * t + a * (1 - t)
    firm = _firm(scale)
    with torch.no_grad():
        conv = firm.enhance.refine3
        conv.weight.zero_()
        # tanh outputs: log-gain channels atanh(log(2) / 2), offset channels atanh(-0.8)
        conv.bias.copy_(torch.tensor([math.atanh(math.log(2) / 2)] * 3 + [math.atanh(-0.8)] * 3))
    _, f_c, f1 = _inputs(64, 64)
    j_enh = firm(foggy, f_c[:1], f1[:1])[1]
    assert torch.allclose(j_enh, clear, atol=1e-5)


def test_pyramid_pools_cover_the_same_image_regions_at_lower_resolution():
    assert _firm(1).enhance.scales == (32, 16, 8, 4)
    assert _firm(2).enhance.scales == (16, 8, 4, 2)
    assert _firm(4).enhance.scales == (8, 4, 2, 1)


def test_lower_resolution_cuts_firm_work():
    """Counted convolution FLOPs of one forward (not timed): 1/2 resolution does less than half
    the work of full resolution, 1/4 less than 0.3 of it (the first stage stays at 1/4 either
    way). The upsampling's small matrix products are left out: cheap, and counted as dense."""
    foggy, f_c, f1 = _inputs(96, 96)
    flops = {}
    for scale in (1, 2, 4):
        with FlopCounterMode(display=False) as counter:
            _firm(scale)(foggy, f_c, f1)
        counts = counter.get_flop_counts()["Global"]
        flops[scale] = sum(n for op, n in counts.items() if "conv" in str(op))
    assert flops[2] < 0.5 * flops[1] and flops[4] < 0.3 * flops[1]


def test_affine_low_resolution_firm_trains_in_the_model(small_cfg):
    cfg = small_cfg("model.firm.output=affine", "model.firm.scale=2")
    model = build_model(cfg, 3).train()
    foggy = torch.rand(2, 3, 64, 64)
    j_fake, j_enh = model(foggy).restored
    assert j_enh.shape == foggy.shape and torch.allclose(j_enh, foggy, atol=1e-6)
    (j_enh - 0.5).square().mean().backward()
    assert model.firm.enhance.refine3.weight.grad.abs().sum() > 0


def test_scale_needs_the_affine_output_and_a_power_of_two():
    with pytest.raises(ConfigError, match=r"model.firm.scale=2 needs model.firm.output=affine"):
        load_config(overrides=["model.firm.scale=2"])
    with pytest.raises(ConfigError, match=r"model.firm.scale: got 3"):
        load_config(overrides=["model.firm.output=affine", "model.firm.scale=3"])
    with pytest.raises(ValueError, match="scale 2"):
        FIRM(24, 4, 16, output="residual", scale=2)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_is_instance_norm_2d_in_values_and_gradients(layout):
    """FIRM's instance norm gives InstanceNorm2d's values and input gradients (float64, both
    memory layouts, followed by an in-place ReLU as in FIRM), and keeps a channels-last input
    channels-last (on CPU through its own autograd function)."""
    from sjdl.models.firm import instance_norm

    torch.manual_seed(3)
    x = (3 * torch.randn(4, 12, 10, 14, dtype=torch.float64) + 1).contiguous(memory_format=layout)
    weight = torch.randn(4, 12, 10, 14, dtype=torch.float64)
    outs = []
    for norm in (torch.nn.InstanceNorm2d(12), instance_norm(12)):
        xi = x.clone().requires_grad_()
        y = torch.relu_(norm(xi))
        (y * weight).sum().backward()
        outs.append((y, xi.grad))
    (y_ref, g_ref), (y, g) = outs
    assert torch.allclose(y, y_ref, atol=1e-12) and torch.allclose(g, g_ref, atol=1e-12)
    assert y.is_contiguous(memory_format=layout) and g.is_contiguous(memory_format=layout)
    own = layout == torch.channels_last
    assert (
        "InstanceNormLast" in type(instance_norm(12)(x.requires_grad_()).grad_fn).__name__
    ) == own
    assert not list(instance_norm(12).state_dict())  # no parameters or buffers, as before


def test_channels_last_instance_norm_passes_gradcheck():
    """The hand-written backward against finite differences, including a gradient that
    arrives in the other memory layout."""
    from sjdl.models.firm import instance_norm

    torch.manual_seed(5)
    norm = instance_norm(5)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert torch.autograd.gradcheck(norm, (x,))
    assert torch.autograd.gradcheck(lambda t: norm(t).contiguous() * 2, (x,))


def test_channels_last_instance_norm_is_accurate_in_float32_far_from_zero():
    """Activations with a large mean and a small spread (mean 300, std 0.5): the variance of
    the centred values, not E[x^2] - mean^2, whose float32 cancellation would be off by far
    more than the tolerance here."""
    from sjdl.models.firm import instance_norm

    torch.manual_seed(6)
    x64 = 300 + 0.5 * torch.randn(2, 8, 24, 24, dtype=torch.float64)
    want = torch.nn.InstanceNorm2d(8)(x64)
    x = x64.float().contiguous(memory_format=torch.channels_last)
    assert torch.allclose(instance_norm(8)(x).double(), want, atol=2e-3)


@pytest.mark.parametrize("scale", [2, 4])
def test_affine_upsampled_coefficients_match_upsampling_all_six_channels(scale):
    """Gain and offset upsampled separately equal the 6-channel upsampling they replace:
    J = clamp(exp(2 up(t)[:3]) I + up(t)[3:], 0, 1), values and gradients (float64)."""
    torch.manual_seed(4)
    firm = _firm(scale).double()
    foggy = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    t = (0.3 * torch.randn(2, 6, 64 // scale, 96 // scale, dtype=torch.float64)).requires_grad_()
    j = firm._to_range(t, foggy)
    (j * foggy).sum().backward()
    t2 = t.detach().clone().requires_grad_()
    up = torch.nn.functional.interpolate(t2, size=(64, 96), mode="bilinear", align_corners=False)
    ref = (torch.exp(2 * up[:, :3]) * foggy + up[:, 3:]).clamp(0, 1)
    (ref * foggy).sum().backward()
    assert torch.allclose(j, ref, atol=1e-12) and torch.allclose(t.grad, t2.grad, atol=1e-12)


@pytest.mark.parametrize(
    "size_in,size_out", [((6, 8), (24, 32)), ((12, 9), (24, 36)), ((5, 7), (13, 20))]
)
def test_upsample_bilinear_matches_interpolate(size_in, size_out):
    """FIRM's matrix-product upsampling gives F.interpolate's bilinear values and gradients
    (float64, integer and fractional ratios), and it can run and train under inference mode
    and autograd in turn (nothing is cached across calls)."""
    from sjdl.models.firm import upsample_bilinear

    torch.manual_seed(5)
    x = torch.randn(2, 3, *size_in, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, *size_out, dtype=torch.float64)
    y = upsample_bilinear(x, size_out)
    (y * w).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.interpolate(x2, size=size_out, mode="bilinear", align_corners=False)
    (ref * w).sum().backward()
    assert torch.allclose(y, ref, atol=1e-12) and torch.allclose(x.grad, x2.grad, atol=1e-12)
    with torch.inference_mode():
        upsample_bilinear(x.detach(), size_out)
    upsample_bilinear(x, size_out).sum().backward()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_enhancement_input_is_the_pooled_pair_of_foggy_image_and_j_fake(layout):
    """At 1/4 resolution the pyramid block sees avg_pool(cat(I, J_fake)): FIRM pools each
    before joining them (no full-size 6-channel copy), which must give the same values."""
    firm = _firm(4).double().to(memory_format=layout)
    torch.manual_seed(5)
    with torch.no_grad():  # non-zero output convolutions: J_fake differs from I
        for conv in (firm.dehaze[1], firm.enhance.refine3):
            conv.weight.normal_(0, 0.05)
    foggy, f_c, f1 = (t.double().contiguous(memory_format=layout) for t in _inputs())
    j_fake, j_enh = firm(foggy, f_c, f1)
    assert not torch.allclose(j_fake, foggy, atol=1e-3)
    pair = torch.nn.functional.avg_pool2d(torch.cat([foggy, j_fake], dim=1), 4)
    want = firm._to_range(firm.enhance(pair), foggy)
    assert torch.allclose(j_enh, want, atol=1e-12)
