import pytest
import torch

from sjdl.config import load_config
from sjdl.losses import (
    LossComposer,
    color_entropy_loss,
    dark_channel_loss,
    id_loss,
    restoration_loss,
    self_constraint_loss,
    total_variation_loss,
    triplet_loss,
)
from sjdl.models import build_model

PIDS = torch.tensor([0, 0, 1, 1])


def _run(method, *overrides):
    cfg = load_config(overrides=[f"method={method}", "model.backbone=resnet18", *overrides])
    model = build_model(cfg, 2, 2).train()
    foggy, clear = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    return (
        cfg,
        LossComposer(cfg.loss, cfg.method, cfg.model.firm.output),
        model(foggy),
        foggy,
        clear,
    )


@pytest.mark.parametrize(
    ("method", "syn_terms", "real_terms"),
    [
        ("baseline", {"triplet", "id"}, None),
        ("jdl", {"triplet", "id", "restoration"}, None),
        (
            "sjdl_wo_sc",
            {"triplet", "id", "restoration"},
            {"triplet", "id", "color_entropy", "dark_channel", "total_variation"},
        ),
        (
            "sjdl",
            {"triplet", "id", "restoration"},
            {
                "triplet",
                "id",
                "color_entropy",
                "dark_channel",
                "total_variation",
                "self_constraint",
            },
        ),
    ],
)
def test_terms_per_method(method, syn_terms, real_terms):
    _, comp, out, foggy, clear = _run(method)
    syn = comp.supervised(out, PIDS, clear)
    assert set(syn) - {"total"} == syn_terms
    if real_terms is None:
        assert not comp.uses_real
        with pytest.raises(ValueError, match="synthetic data only"):
            comp.unsupervised(out, foggy, PIDS)
    else:
        real = comp.unsupervised(out, foggy, PIDS)
        assert set(real) - {"total"} == real_terms
        unlabelled = comp.unsupervised(out, foggy, None)
        assert "triplet" not in unlabelled and "id" not in unlabelled


def test_weights_applied_once_and_total_is_sum():
    cfg, comp, out, foggy, clear = _run(
        "sjdl", "preset=printed", "loss.lambda_restoration=2.5", "loss.dc_patch=5"
    )
    syn = comp.supervised(out, PIDS, clear)
    assert syn["triplet"].item() == pytest.approx(triplet_loss(out.global_feat, PIDS).item())
    assert syn["id"].item() == pytest.approx(id_loss(out.logits["syn"], PIDS).item())
    assert syn["restoration"].item() == pytest.approx(
        2.5 * restoration_loss(out.restored, clear).item(), rel=1e-6
    )
    assert syn["total"].item() == pytest.approx(
        sum(v.item() for k, v in syn.items() if k != "total")
    )
    real = comp.unsupervised(out, foggy, PIDS)
    j = out.restored[1]
    assert real["id"].item() == pytest.approx(id_loss(out.logits["real"], PIDS).item())
    assert real["color_entropy"].item() == pytest.approx(color_entropy_loss(j).item())
    assert real["dark_channel"].item() == pytest.approx(1e-5 * dark_channel_loss(j, 5).item())
    assert real["total_variation"].item() == pytest.approx(1e-5 * total_variation_loss(j).item())
    assert real["self_constraint"].item() == pytest.approx(
        300 * self_constraint_loss(j, foggy).item(), rel=1e-5
    )


def test_triplet_feature_switch_uses_post_bn():
    _, comp, out, _, clear = _run("baseline", "loss.triplet_feature=post_bn")
    assert comp.supervised(out, PIDS, clear)["triplet"].item() == pytest.approx(
        triplet_loss(out.bn_feat, PIDS).item()
    )


def test_official_tanh_output_is_remapped_for_image_priors():
    _, comp, out, foggy, _ = _run(
        "sjdl", "preset=printed", "model.firm.output=tanh", "loss.sc_mode=phase"
    )
    real = comp.unsupervised(out, foggy, None)
    j = out.restored[1]
    assert real["total_variation"].item() == pytest.approx(
        1e-5 * total_variation_loss((j + 1) / 2).item()
    )
    assert real["self_constraint"].item() == pytest.approx(
        300 * self_constraint_loss(j, foggy, "phase").item(), rel=1e-5
    )


def test_total_backpropagates_into_every_trained_part():
    cfg = load_config(overrides=["model.backbone=resnet18"])
    model = build_model(cfg, 2, 2).train()
    comp = LossComposer(cfg.loss, cfg.method)
    syn, real = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    loss = comp.supervised(model(syn), PIDS, torch.rand(4, 3, 64, 64))["total"]
    loss = loss + comp.unsupervised(model(real), real, PIDS)["total"]
    loss.backward()
    assert torch.isfinite(loss)
    for part in (
        model.cfsm.conv1,
        model.reidm.layer4,
        model.firm.enhance,
        model.heads["syn"],
        model.heads["real"],
    ):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_official_preset_has_no_colour_entropy_or_self_constraint_gradient(preset):
    cfg = load_config(overrides=[f"preset={preset}", "model.neck=bnneck", "method=sjdl"])
    composer = LossComposer(cfg.loss, "sjdl", cfg.model.firm.output)
    j_enh = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = type("Out", (), {"restored": (j_enh, j_enh), "logits": {}})()
    terms = composer.unsupervised(out, torch.rand(2, 3, 32, 32))
    for name in ("color_entropy", "self_constraint"):
        assert torch.isfinite(terms[name]) and float(terms[name].detach()) != 0  # computed, logged
        if preset == "official":
            assert not terms[name].requires_grad
        else:
            (grad,) = torch.autograd.grad(terms[name], j_enh, retain_graph=True)
            assert grad.abs().sum() > 0
    (grad,) = torch.autograd.grad(terms["dark_channel"], j_enh)
    assert grad.abs().sum() > 0  # L_DC keeps its gradient in both presets
