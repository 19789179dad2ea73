import pytest
import torch
import torch.nn.functional as F

from sjdl.models import build_model, count_parameters
from sjdl.models.dcn import DeformConv2d

RELEASED_FIRM_PARAMS = 1_799_322  # released Restoration module (spec §8, DECISIONS.md)
RELEASED_UNUSED_IN_PARAMS = 200  # its unused Enhance.batch1 = InstanceNorm2d(100, affine=True)


def test_parameter_counts_per_preset():
    paper = build_model(__import__("sjdl.config").config.load_config(), 3000, 403)
    assert count_parameters(paper.backbone()) == 23_508_032
    assert count_parameters(paper.firm) == RELEASED_FIRM_PARAMS - RELEASED_UNUSED_IN_PARAMS
    assert count_parameters(paper.heads) == 2048 * (3000 + 403)
    assert paper.feat_dim == 2048

    from sjdl.config import load_config

    official = build_model(load_config(overrides=["preset=official"]), 3000, 403)
    assert count_parameters(official.reidm.dcn) == 11_882_002
    assert count_parameters(official.reidm.attention) == 819_200
    assert count_parameters(official.firm) == RELEASED_FIRM_PARAMS - RELEASED_UNUSED_IN_PARAMS
    assert count_parameters(official.heads) == 2560 * (3000 + 403)
    assert official.feat_dim == 2560
    # BNNeck bias is frozen, so it is not trainable
    assert not official.reidm.bnneck.bias.requires_grad
    frozen = count_parameters(official) - count_parameters(official, trainable_only=True)
    assert frozen == 2560


@pytest.mark.parametrize("split", ["conv2", "conv3", "conv4", "conv5"])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_firm_full_resolution_for_every_split(small_cfg, split, last_stride):
    cfg = small_cfg(f"model.split={split}", f"model.last_stride={last_stride}")
    model = build_model(cfg, 5, 3).train()
    x = torch.rand(2, 3, 128, 64)
    out = model(x)
    assert out.global_feat.shape == out.bn_feat.shape == (2, 512)
    assert out.logits["syn"].shape == (2, 5) and out.logits["real"].shape == (2, 3)
    j_fake, j_enh = out.restored
    assert j_fake.shape == j_enh.shape == x.shape
    assert j_enh.min() >= 0 and j_enh.max() <= 1  # unit range by default


def test_firm_non_square_resnet50_and_tanh_output(small_cfg):
    cfg = small_cfg("model.backbone=resnet50", "model.firm.output=tanh")
    out = build_model(cfg, 4).train()(torch.rand(2, 3, 256, 128))
    assert out.restored[1].shape == (2, 3, 256, 128)
    assert out.restored[1].min() < 0 < out.restored[1].max() < 1.0001  # raw tanh range


def test_firm_rejects_sides_not_multiple_of_32(small_cfg):
    model = build_model(small_cfg(), 4).train()
    with pytest.raises(ValueError, match="multiples of 32, got 100x64 .*resize to 96x64"):
        model(torch.rand(2, 3, 100, 64))
    # inference never needs FIRM, so any size works there
    assert model.extract_features(torch.rand(2, 3, 100, 60)).shape == (2, 512)


def test_baseline_builds_no_firm_and_unlabelled_real_builds_no_head(small_cfg):
    model = build_model(small_cfg("method=baseline"), 4, 0)
    assert model.firm is None and list(model.heads) == ["syn"]
    assert model.train()(torch.rand(2, 3, 64, 64)).restored is None
    with pytest.raises(RuntimeError, match="no FIRM"):
        model.restore(torch.rand(1, 3, 64, 64))


def test_eval_mode_never_runs_firm(small_cfg, monkeypatch):
    model = build_model(small_cfg(), 4, 2)
    calls = []
    monkeypatch.setattr(model.firm, "forward", lambda *a: calls.append(1) or 1 / 0)
    model.eval()
    out = model(torch.rand(2, 3, 64, 64))
    assert out.restored is None and out.logits == {}
    feats = model.train().extract_features(torch.rand(3, 3, 64, 64))
    assert feats.shape == (3, 512) and model.training  # mode restored afterwards
    assert calls == []
    with pytest.raises(ZeroDivisionError):  # the patch is live: training mode does call FIRM
        model.train()(torch.rand(2, 3, 64, 64))
    assert calls == [1]


def test_retrieval_feature_choice(small_cfg):
    x = torch.rand(2, 3, 64, 64)
    post = build_model(small_cfg(), 4)
    torch.manual_seed(0)
    pre = build_model(small_cfg("test.feature=pre_bn"), 4)
    pre.load_state_dict(post.state_dict())
    post.eval()
    out = post(x)
    assert torch.allclose(post.extract_features(x), out.bn_feat)
    assert torch.allclose(pre.extract_features(x), out.global_feat)


def test_model_normalises_reid_input_but_firm_sees_raw_image(small_cfg, monkeypatch):
    model = build_model(small_cfg(), 4).train()
    seen = {}
    orig_cfsm = model.cfsm.forward

    def spy(x):
        seen["cfsm"] = x
        return orig_cfsm(x)

    monkeypatch.setattr(model.cfsm, "forward", spy)
    x = torch.full((2, 3, 64, 64), 0.485)
    model(x)
    assert torch.allclose(seen["cfsm"][:, 0], torch.zeros(2, 64, 64), atol=1e-6)  # (0.485-mean)/std


def test_restoration_gradient_reaches_cfsm_but_not_reidm(small_cfg):
    model = build_model(small_cfg(), 4).train()
    out = model(torch.rand(2, 3, 64, 64))
    out.restored[1].mean().backward()
    assert model.cfsm.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.reidm.layer4[0].conv1.weight.grad is None


def test_pretrained_loading_through_model(small_cfg, tmp_path):
    donor = build_model(small_cfg(), 4)
    for p in donor.backbone().parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "r18.pth"
    torch.save(donor.backbone().state_dict(), path)
    model = build_model(small_cfg(f"model.pretrained={path}"), 4)
    assert model.pretrained_report.missing == [] and model.pretrained_report.unexpected == []
    assert torch.equal(model.reidm.layer4[1].conv2.weight, donor.reidm.layer4[1].conv2.weight)
    assert torch.equal(model.cfsm.conv1.weight, donor.cfsm.conv1.weight)


def test_deformable_conv_with_zero_offsets_is_a_plain_conv():
    dcn = DeformConv2d(8, 5)
    x = torch.randn(2, 8, 7, 9)
    zero = torch.zeros(2, 18, 7, 9)
    assert torch.allclose(dcn(x, zero), F.conv2d(x, dcn.weight, padding=1), atol=1e-5)
    # fresh p_conv has zero weights: offsets equal its bias everywhere
    torch.nn.init.zeros_(dcn.p_conv.bias)
    assert torch.allclose(dcn(x), F.conv2d(x, dcn.weight, padding=1), atol=1e-5)


def test_deformable_conv_integer_offset_shifts_sampling():
    dcn = DeformConv2d(1, 1)
    x = torch.randn(1, 1, 6, 6)
    off = torch.zeros(1, 18, 6, 6)
    off[:, 1::2] = 1.0  # every tap moves one pixel right
    shifted = F.pad(x[..., 1:], (0, 1))  # x(i, j+1), zero beyond the border
    # column 0 differs only because the reference pads shifted column -1 (= x column 0) with 0
    ref = F.conv2d(shifted, dcn.weight, padding=1)
    assert torch.allclose(dcn(x, off)[..., 1:], ref[..., 1:], atol=1e-5)
    off[:, 1::2] = 0.5  # half a pixel: bilinear blend of the two
    blend = F.conv2d((x + shifted) / 2, dcn.weight, padding=1)
    assert torch.allclose(dcn(x, off)[..., 1:-1], blend[..., 1:-1], atol=1e-5)


def _resblock(c):  # two 3x3 convs with bias
    return 2 * (9 * c * c + c)


@pytest.mark.parametrize(
    ("split", "channels", "extra_stages"),
    [("conv2", 256, 0), ("conv3", 512, 1), ("conv4", 1024, 2), ("conv5", 2048, 2)],
)
def test_firm_parameter_count_per_split(split, channels, extra_stages):
    from sjdl.config import load_config

    model = build_model(load_config(overrides=[f"model.split={split}"]), 10)
    conv2_head = _resblock(256) + 9 * 256 * 64 + 64
    head = _resblock(channels) + 9 * channels * 64 + 64
    extra = extra_stages * (_resblock(64) + 9 * 64 * 64 + 64)  # ResBlock + deconv 64->64
    expected = RELEASED_FIRM_PARAMS - RELEASED_UNUSED_IN_PARAMS - conv2_head + head + extra
    assert count_parameters(model.firm) == expected
    # CFSM + ReIDM always hold exactly the backbone (+ the BNNeck), whatever the split
    assert count_parameters(model.cfsm) + count_parameters(model.reidm) == 23_508_032 + 2 * 2048


@pytest.mark.parametrize("method", ["baseline", "jdl", "sjdl_wo_sc", "sjdl"])
def test_parameter_count_per_method(small_cfg, method):
    model = build_model(small_cfg(f"method={method}"), 10, 5)
    firm = 0 if method == "baseline" else count_parameters(build_model(small_cfg(), 1).firm)
    assert count_parameters(model) == 11_176_512 + 2 * 512 + 512 * 15 + firm


def test_residual_firm_starts_as_the_identity_and_stays_in_range(small_cfg):
    model = build_model(small_cfg("model.firm.output=residual"), 3).train()
    foggy = torch.rand(2, 3, 64, 64)
    j_fake, j_enh = model(foggy).restored
    assert torch.equal(j_fake, foggy) and torch.equal(j_enh, foggy)
    loss = (j_enh - torch.zeros_like(foggy)).square().mean()
    loss.backward()
    assert model.firm.enhance.refine3.weight.grad.abs().sum() > 0  # it can learn away from I
    with torch.no_grad():
        model.firm.enhance.refine3.bias.fill_(5.0)
    j_enh = model(foggy).restored[1]
    assert float(j_enh.min()) >= 0 and float(j_enh.max()) <= 1


def test_cfsm_grad_scales_only_the_restoration_gradient_into_cfsm():
    """model.firm.cfsm_grad: FIRM's own gradients are unchanged; CFSM's gradient from a
    restoration loss is scaled by the factor (0: none at all); the forward is unchanged."""
    from sjdl.config import load_config
    from sjdl.config_ranges import ConfigError

    x = torch.rand(2, 3, 64, 64)
    grads, outs = {}, {}
    for factor in (1.0, 0.5, 0.0):
        torch.manual_seed(0)
        cfg = load_config(overrides=["model.backbone=resnet18", f"model.firm.cfsm_grad={factor}"])
        model = build_model(cfg, 4).train()
        out = model(x)
        out.restored[1].sub(0.5).abs().mean().backward()  # a restoration loss only
        outs[factor] = out.restored[1].detach()
        grads[factor] = {
            part: torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
            if any(p.grad is not None for p in module.parameters())
            else torch.zeros(0)
            for part, module in (("cfsm", model.cfsm), ("firm", model.firm))
        }
    assert torch.equal(outs[1.0], outs[0.5]) and torch.equal(outs[1.0], outs[0.0])
    assert torch.allclose(grads[0.5]["firm"], grads[1.0]["firm"])
    assert torch.allclose(grads[0.0]["firm"], grads[1.0]["firm"])
    assert grads[1.0]["cfsm"].abs().max() > 0
    assert torch.allclose(grads[0.5]["cfsm"], 0.5 * grads[1.0]["cfsm"], atol=1e-7)
    assert grads[0.0]["cfsm"].numel() == 0 or grads[0.0]["cfsm"].abs().max() == 0
    with pytest.raises(ConfigError, match="model.firm.cfsm_grad"):
        load_config(overrides=["model.firm.cfsm_grad=-1"])
