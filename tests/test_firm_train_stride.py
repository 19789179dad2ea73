"""model.firm.train_stride: in training FIRM restores every N-th image of a batch; the losses
take their targets and inputs from the same rows; ReID sees every image."""

import pytest
import torch

from sjdl.config import ConfigError, load_config
from sjdl.losses import LossComposer
from sjdl.losses.restoration import restoration_loss, self_constraint_loss
from sjdl.models import build_model


def _pair(small_cfg, *extra):
    """Two models with the same weights: FIRM on every image, and on every 2nd."""
    torch.manual_seed(0)
    full = build_model(small_cfg("method=sjdl", *extra), 3).train()
    strided = build_model(small_cfg("method=sjdl", "model.firm.train_stride=2", *extra), 3)
    strided.load_state_dict(full.state_dict())
    return full, strided.train()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_strided_restorations_are_the_full_batch_ones_of_those_rows(small_cfg, layout):
    """FIRM normalises per image (instance norm), so restoring rows 0, 2, 4 alone gives what
    restoring the whole batch gives for them; the ReID outputs do not change at all."""
    full, strided = (m.to(memory_format=layout) for m in _pair(small_cfg))
    x = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=layout)
    a, b = full(x), strided(x)
    assert a.restored_rows == slice(None) and b.restored_rows == slice(None, None, 2)
    assert torch.equal(a.global_feat, b.global_feat)
    for ja, jb in zip(a.restored, b.restored, strict=True):
        assert jb.shape == (3, 3, 64, 64)
        assert torch.allclose(ja[::2], jb, atol=1e-5)


def test_losses_take_targets_and_inputs_from_the_restored_rows(small_cfg):
    _, model = _pair(small_cfg)
    cfg = load_config(overrides=["method=sjdl", "loss.lambda_sc=0.5"])
    comp = LossComposer(cfg.loss, "sjdl", cfg.model.firm.output)
    gen = torch.Generator().manual_seed(2)
    foggy, clear = torch.rand(6, 3, 64, 64, generator=gen), torch.rand(6, 3, 64, 64, generator=gen)
    out = model(foggy)
    sup = comp.supervised(out, torch.tensor([0, 0, 1, 1, 2, 2]), clear)
    want = cfg.loss.lambda_restoration * restoration_loss(out.restored, clear[::2])
    assert torch.allclose(sup["restoration"], want)
    unsup = comp.unsupervised(out, foggy)
    want = 0.5 * self_constraint_loss(out.restored[1], foggy[::2], cfg.loss.sc_mode)
    assert torch.allclose(unsup["self_constraint"], want)


def test_restoration_gradient_reaches_cfsm_only_through_the_restored_rows(small_cfg):
    """In eval-mode BatchNorm (no batch coupling) an image FIRM skipped gets no restoration
    gradient; a restored one does."""
    _, model = _pair(small_cfg)
    model.cfsm.eval()
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    model(x).restored[1].square().mean().backward()
    per_image = x.grad.abs().flatten(1).sum(1)
    assert per_image[0] > 0 and per_image[2] > 0
    assert per_image[1] == 0 and per_image[3] == 0


def test_evaluation_restores_every_image(small_cfg):
    _, model = _pair(small_cfg)
    j_fake, j_enh = model.eval().restore(torch.rand(5, 3, 64, 64))
    assert j_fake.shape[0] == j_enh.shape[0] == 5


def test_stride_below_one_is_refused():
    with pytest.raises(ConfigError, match=r"^model.firm.train_stride"):
        load_config(overrides=["model.firm.train_stride=0"])
