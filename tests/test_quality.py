import math

import pytest
import torch

from sjdl.evaluation import QualityMeter, psnr, ssim


def test_identical_images():
    img = torch.rand(3, 24, 20)
    assert psnr(img, img) == math.inf and ssim(img, img) == pytest.approx(1.0)


def test_known_psnr_value():
    clear = torch.full((3, 16, 16), 0.5)
    restored = clear + 0.1  # MSE = 0.01 -> 20 dB
    assert psnr(restored, clear) == pytest.approx(20.0, abs=1e-4)
    # values are clamped to [0, 1] first: 1.5 counts as 1.0 against 0.5 -> MSE 0.25 -> 6.02 dB
    assert psnr(clear + 1.0, clear) == pytest.approx(-10 * math.log10(0.25), abs=1e-4)


def test_ssim_drops_with_noise_and_meter_averages_per_image():
    gen = torch.Generator().manual_seed(0)
    clear = torch.rand(2, 3, 32, 32, generator=gen)
    noisy = (clear + 0.2 * torch.randn(2, 3, 32, 32, generator=gen)).clamp(0, 1)
    assert ssim(noisy[0], clear[0]) < 0.9
    meter = QualityMeter()
    meter.update(torch.stack([clear[0], noisy[1]]), clear)
    res = meter.result()
    assert res["num_images"] == 2
    assert res["PSNR"] == pytest.approx((100.0 + psnr(noisy[1], clear[1])) / 2)  # inf capped
    assert res["SSIM"] == pytest.approx((1.0 + ssim(noisy[1], clear[1])) / 2)
    assert QualityMeter().result() == {}


def test_meter_counts_restorations_below_their_input():
    clear = torch.full((3, 3, 16, 16), 0.5)
    foggy = clear + 0.1  # 20 dB each
    restored = torch.stack([clear[0], clear[1] + 0.05, clear[2] + 0.2])  # inf, 26.0, 13.98 dB
    meter = QualityMeter()
    meter.update(restored[:2], clear[:2], foggy[:2])
    meter.update(restored[2:], clear[2:], foggy[2:])
    res = meter.result()
    assert res["input_PSNR"] == pytest.approx(20.0, abs=1e-4)
    assert res["below_input"] == 1  # only the third is further from clear than its input
    # without the inputs the meter cannot tell, and says nothing
    plain = QualityMeter()
    plain.update(restored, clear)
    assert "below_input" not in plain.result() and "input_PSNR" not in plain.result()
