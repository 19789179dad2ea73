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
    """Counted FLOPs of one forward (not timed): 1/2 resolution does less than half the work of
    full resolution, 1/4 less than 0.3 of it (the first stage stays at 1/4 either way)."""
    foggy, f_c, f1 = _inputs(96, 96)
    flops = {}
    for scale in (1, 2, 4):
        with FlopCounterMode(display=False) as counter:
            _firm(scale)(foggy, f_c, f1)
        flops[scale] = counter.get_total_flops()
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
