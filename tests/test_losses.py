import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sjdl.losses import (
    color_entropy_loss,
    dark_channel,
    dark_channel_loss,
    id_loss,
    restoration_loss,
    self_constraint_loss,
    soft_histogram,
    total_variation_loss,
    triplet_loss,
)

FIXTURE = Path(__file__).parent / "data" / "released_losses.npz"


# ---- hand-computed values -------------------------------------------------------------------
def test_triplet_hand_computed():
    feats = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchors: d_ap / d_an = 1/3, 1/2, 2/2, 2/4  -> with margin 2: 0, 1, 2, 0
    assert triplet_loss(feats, pids, margin=2.0).item() == pytest.approx(0.75, abs=1e-5)


def test_triplet_zero_when_classes_separated_by_more_than_margin():
    feats = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]])
    assert triplet_loss(feats, torch.tensor([0, 0, 1, 1]), margin=0.3).item() == 0.0
    # one identity only: no negatives, loss 0 and not NaN
    assert triplet_loss(feats, torch.zeros(4, dtype=torch.long)).item() == 0.0


def test_id_loss_hand_computed():
    assert id_loss(torch.zeros(3, 7), torch.tensor([0, 3, 6])).item() == pytest.approx(math.log(7))
    logits = torch.tensor([[2.0, 0.0]])
    p = math.exp(2) / (math.exp(2) + 1)
    assert id_loss(logits, torch.tensor([0])).item() == pytest.approx(-math.log(p), rel=1e-6)
    # label smoothing eps: target (1 - eps) on the class + eps/C on every class
    expected = -(0.9 + 0.05) * math.log(p) - 0.05 * math.log(1 - p)
    assert id_loss(logits, torch.tensor([0]), 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_restoration_loss_hand_computed():
    clear = torch.zeros(1, 3, 2, 2)
    a, b = torch.full_like(clear, 0.5), torch.full_like(clear, 1.0)
    assert restoration_loss(a, clear).item() == pytest.approx(0.25)
    assert restoration_loss((a, b), clear).item() == pytest.approx((0.25 + 1.0) / 2)


def test_dark_channel_of_constant_is_the_constant():
    for c in (0.0, 0.3, 1.0):  # c = 1: pure airlight
        img = torch.full((2, 3, 20, 24), c)
        assert torch.allclose(dark_channel(img), torch.full((2, 20, 24), c))
        assert dark_channel_loss(img).item() == pytest.approx(c * 20 * 24, rel=1e-6)


def test_dark_channel_hand_computed():
    img = torch.ones(1, 3, 5, 5)
    img[0, 1, 0, 0] = 0.2  # green corner dark
    dc = dark_channel(img, patch=3)
    # the 3x3 neighbourhoods (clipped at the border) that contain pixel (0, 0)
    expected = torch.ones(5, 5)
    expected[:2, :2] = 0.2
    assert torch.equal(dc[0], expected)
    assert dark_channel_loss(img, patch=3).item() == pytest.approx(21 + 4 * 0.2)
    with pytest.raises(ValueError, match="odd"):
        dark_channel(img, patch=4)


def test_total_variation_hand_computed():
    assert total_variation_loss(torch.full((2, 3, 8, 8), 0.7)).item() == 0.0
    img = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # horizontal |1-0| + |4-2| = 3, vertical |2-0| + |4-1| = 5
    assert total_variation_loss(img).item() == pytest.approx(8.0)
    batch = torch.cat([img, 2 * img])  # mean over images: (8 + 16) / 2
    assert total_variation_loss(batch).item() == pytest.approx(12.0)


def test_self_constraint_known_values():
    img = torch.rand(2, 3, 16, 12)
    for mode in ("spectrum", "phase"):
        assert self_constraint_loss(img, img, mode).item() == pytest.approx(-1.0, abs=1e-5)
        # amplitude scaling changes neither the spectrum direction nor the phase
        assert self_constraint_loss(3 * img, img, mode).item() == pytest.approx(-1.0, abs=1e-5)
        assert self_constraint_loss(-img, img, mode).item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="'spectrum' or 'phase'"):
        self_constraint_loss(img, img, "amplitude")


def test_self_constraint_spectrum_equals_image_cosine_by_parseval():
    a, b = torch.rand(3, 3, 10, 14, dtype=torch.float64), torch.rand(3, 3, 10, 14).double()
    cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
    assert self_constraint_loss(a, b).item() == pytest.approx(-cos.mean().item(), abs=1e-10)


def _kernel_entropy_of_constant(bins=256, sigma=0.5):
    w = [math.exp(-(d**2) / (2 * sigma**2)) for d in (-2, -1, 0, 1, 2)]
    p = [x / sum(w) for x in w]
    return sum(x * math.log(x) for x in p)


def test_color_entropy_hand_computed_and_maximal_for_uniform_histogram():
    const = torch.full((1, 3, 8, 8), 100 / 255)  # luminance exactly on bin 100
    expected = _kernel_entropy_of_constant()
    assert color_entropy_loss(const).item() == pytest.approx(expected, abs=1e-5)
    ramp = torch.arange(256.0).div(255).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    uniform = color_entropy_loss(ramp).item()
    assert uniform == pytest.approx(-math.log(256), abs=1e-3)  # the minimum possible
    others = [const, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16) * 0.5, ramp.flip(-1) * 0.7]
    assert all(uniform < color_entropy_loss(o).item() for o in others)


def test_soft_histogram_rows_sum_to_one():
    h = soft_histogram(torch.rand(4, 1000))
    assert h.shape == (4, 256)
    assert torch.allclose(h.sum(1), torch.ones(4), atol=1e-5)


# ---- parity with the released code (fixture values) -----------------------------------------
@pytest.fixture(scope="module")
def released():
    return dict(np.load(FIXTURE))


def test_dark_channel_parity_with_released(released):
    img = torch.from_numpy(released["img"]).double()
    h, w = img.shape[-2:]
    assert dark_channel_loss(img).item() == pytest.approx(
        released["dark_channel"] + h * w, abs=1e-3
    )


def test_total_variation_parity_with_released(released):
    img = torch.from_numpy(released["img"]).double()
    borders = img[..., :, 0].abs().flatten(1).sum(1) + img[..., 0, :].abs().flatten(1).sum(1)
    expected = released["total_variation"] - borders.mean().item()
    assert total_variation_loss(img).item() == pytest.approx(expected, rel=1e-5)


def test_self_constraint_phase_parity_with_released(released):
    j = torch.from_numpy(released["sc_restored"])
    i = torch.from_numpy(released["sc_foggy"])
    value = self_constraint_loss(j, i, "phase", amp_floor=0).item()  # released: no floor
    assert value == pytest.approx(released["self_constraint_phase"], rel=1e-4)
    floored = self_constraint_loss(j, i, "phase").item()
    assert floored == pytest.approx(value, abs=1e-4)  # ours: tiny amplitudes floored


def _max_phase_grad(amplitude, **kw):
    gen = torch.Generator().manual_seed(0)
    foggy = torch.rand(2, 3, 32, 32, generator=gen)
    texture = torch.randn(2, 3, 32, 32, generator=gen)
    j = (0.5 + amplitude * texture).requires_grad_()
    self_constraint_loss(j, foggy, "phase", **kw).backward()
    return j.grad.abs().max().item()


def test_phase_self_constraint_gradient_stays_bounded_as_texture_vanishes():
    assert _max_phase_grad(1e-5, amp_floor=0) > 100  # released: grows as 1 / amplitude
    reference = _max_phase_grad(1e-2)
    for amplitude in (1e-3, 1e-5, 1e-8, 0.0):
        assert _max_phase_grad(amplitude) < min(1.0, 5 * reference), amplitude


def test_phase_self_constraint_unchanged_at_normal_amplitudes():
    gen = torch.Generator().manual_seed(1)
    foggy = torch.rand(2, 3, 32, 32, generator=gen)
    texture = torch.randn(2, 3, 32, 32, generator=gen)
    for amplitude in (0.3, 0.1, 0.03):
        j = 0.7 * foggy + amplitude * texture
        a = self_constraint_loss(j, foggy, "phase").item()
        b = self_constraint_loss(j, foggy, "phase", amp_floor=0).item()
        assert a == pytest.approx(b, abs=1e-4), amplitude


# ---- gradients and precision ----------------------------------------------------------------
def _image_losses(dtype=torch.float32):
    gen = torch.Generator().manual_seed(3)
    foggy = torch.rand(2, 3, 24, 20, generator=gen, dtype=torch.float64).to(dtype)
    clear = torch.rand(2, 3, 24, 20, generator=gen, dtype=torch.float64).to(dtype)
    return {
        "restoration": lambda j: restoration_loss(j, clear),
        "color_entropy": color_entropy_loss,
        "dark_channel": lambda j: dark_channel_loss(j, 5),
        "total_variation": total_variation_loss,
        "self_constraint_spectrum": lambda j: self_constraint_loss(j, foggy, "spectrum"),
        "self_constraint_phase": lambda j: self_constraint_loss(j, foggy, "phase"),
    }


@pytest.mark.parametrize("name", list(_image_losses()))
def test_image_losses_have_finite_nonzero_gradients(name):
    fn = _image_losses()[name]
    j = torch.rand(2, 3, 24, 20, requires_grad=True)
    fn(j).backward()
    assert torch.isfinite(j.grad).all() and j.grad.abs().sum() > 0
    # degenerate input: every pixel equal (also all zeros) must not give NaN/inf
    for value in (0.0, 0.5):
        flat = torch.full((2, 3, 24, 20), value, requires_grad=True)
        out = fn(flat)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(flat.grad).all()


def test_reid_losses_have_finite_nonzero_gradients():
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    feats = torch.randn(6, 8, requires_grad=True)
    triplet_loss(feats, pids, margin=10.0).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    logits = torch.randn(6, 3, requires_grad=True)
    id_loss(logits, pids).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    same = torch.ones(6, 8, requires_grad=True)  # all-equal features: zero distances
    out = triplet_loss(same, pids)
    out.backward()
    assert out.item() == pytest.approx(0.3, abs=1e-5) and torch.isfinite(same.grad).all()


@pytest.mark.parametrize("name", list(_image_losses()))
def test_float32_matches_float64(name):
    j = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    v64 = _image_losses(torch.float64)[name](j)
    v32 = _image_losses(torch.float32)[name](j.float())
    assert v64.dtype == torch.float64 and v32.dtype == torch.float32
    v64, v32 = v64.item(), v32.item()
    assert v32 == pytest.approx(v64, rel=1e-4, abs=1e-6)


def test_half_precision_inputs_are_computed_in_float32():
    j = torch.rand(2, 3, 16, 16)
    assert color_entropy_loss(j.half()).dtype == torch.float32
    assert total_variation_loss(j.half()).item() == pytest.approx(
        total_variation_loss(j.half().float()).item()
    )


@pytest.mark.parametrize("patch", [1, 3, 35])
def test_dark_channel_equals_the_square_window_minimum(patch):
    """The row-then-column minimum gives exactly the p x p window minimum (borders too)."""
    img = torch.rand(2, 3, 21, 40)
    m = img.amin(1, keepdim=True)
    square = -F.max_pool2d(-m, patch, stride=1, padding=patch // 2).squeeze(1)
    assert torch.equal(dark_channel(img, patch), square)
