"""Hostile inputs to evaluation and the training path's numerics (issue 10)."""

import hashlib
import json

import pytest
import torch

from sjdl.config import load_config
from sjdl.models import build_model
from sjdl.models.io import FORMAT, save_weights

from .conftest import cli, one_line_error

SMALL = ["model.backbone=resnet18", "data.size_test=[64,32]", "data.workers=0"]


def _ckpt(fvrid, tmp_path, *extra, num_ids=3, header_ids=None):
    cfg = load_config(overrides=[f"data.root={fvrid}", *SMALL, *extra])
    path = tmp_path / "w.safetensors"
    return save_weights(build_model(cfg, num_ids), path, cfg, header_ids or num_ids, 0)


# -- 7 / R3: the checkpoint's model and input size win --------------------------------------
def test_eval_with_other_config_uses_the_checkpoint_model_and_size(fvrid, tmp_path):
    ckpt = _ckpt(fvrid, tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(
        f"data:\n  root: {fvrid}\n  size_test: [96, 96]\n  workers: 0\nmodel:\n  split: conv3\n"
    )
    out = tmp_path / "ev"
    result = cli("eval", "--checkpoint", ckpt, "-c", other, "-o", out)
    assert result.exit_code == 0, result.output
    assert "size_test" in result.output  # says that the config's value was replaced
    info = json.loads((out / "metrics.json").read_text())
    assert info["size_test"] == [64, 32] and info["checkpoint"] == str(ckpt)
    assert info["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert info["feature"] == "post_bn" and info["metric"] == "euclidean"
    for bad in ("data.size_test=[96,96]", "model.backbone=resnet50", "method=baseline"):
        result = cli("eval", "--checkpoint", ckpt, "-c", other, "-o", tmp_path / "ev2", bad)
        one_line_error(result, bad.split("=")[0], "checkpoint")


def test_test_feature_override_changes_the_feature_used(fvrid, tmp_path):
    from sjdl.data import eval_loader, read_dataset
    from sjdl.evaluation.evaluator import evaluate

    cfg = load_config(overrides=[f"data.root={fvrid}", *SMALL, "test.feature=pre_bn"])
    model = build_model(load_config(overrides=SMALL), 3).eval()  # built with post_bn
    model.reidm.bnneck.running_mean.fill_(0.5)  # post_bn and pre_bn features now differ
    data = read_dataset(cfg.data, with_real=False)
    ql = eval_loader(data.query, cfg.data, 8)
    gl = eval_loader(data.gallery, cfg.data, 8)
    result = evaluate(model, ql, gl, "cpu", cfg.test, restore=False)
    x = torch.stack([ql.dataset[i]["img"] for i in range(len(ql.dataset))])
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(result.query.feats, out.global_feat, atol=1e-5)
    assert model.retrieval_feature == "post_bn"  # the model is left as it was


# -- 9: unreadable query/gallery images are reported -------------------------------------
def test_unreadable_query_images_are_reported_and_strict_refuses(fvrid, tmp_path):
    victim = sorted((fvrid / "FVRID_syn" / "query_foggy").iterdir())[0]
    victim.write_bytes(b"broken")
    out = tmp_path / "ev"
    result = cli("eval", f"data.root={fvrid}", *SMALL, "-o", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 unreadable" in text and victim.name in text
    assert "1 queries ranked" in text
    info = json.loads((out / "metrics.json").read_text())
    assert info["unreadable_images"] == [str(victim)]
    result = cli("eval", f"data.root={fvrid}", *SMALL, "-o", out, "--overwrite", "data.strict=true")
    one_line_error(result, victim.name, "cannot read image")


def test_unreadable_validation_images_are_logged(fvrid, tmp_path):
    from sjdl.engine import train as train_run

    from .conftest import tiny_train_config

    victim = fvrid / "FVRID_syn" / "train_foggy" / "00009_c002_000001_0.jpg"  # val gallery
    victim.write_bytes(b"broken")
    cfg = tiny_train_config(fvrid, "train.epochs=1", "train.val_ids=1", "train.warmup_epochs=1")
    train_run(cfg, tmp_path / "run", log=lambda *a: None)
    log = (tmp_path / "run" / "train.log").read_text()
    line = next(x for x in log.splitlines() if "validation" in x and "unreadable" in x)
    assert victim.name in line


# -- 16 / 17: broken checkpoints, -o onto a file ---------------------------------------------
def test_checkpoint_with_wrong_id_count_is_a_one_line_error(fvrid, tmp_path):
    ckpt = _ckpt(fvrid, tmp_path, num_ids=3, header_ids=5)
    one_line_error(cli("eval", "--checkpoint", ckpt, "-o", tmp_path / "ev"), ckpt.name)


def test_checkpoint_with_broken_yaml_header_is_a_one_line_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "broken.safetensors"
    meta = {"format": FORMAT, "config": "model: [unclosed\n  - : :", "num_syn_ids": "3"}
    save_file({"w": torch.zeros(1)}, str(path), metadata={**meta, "num_real_ids": "0"})
    one_line_error(cli("eval", "--checkpoint", path), path.name, "config")


def test_eval_output_onto_an_existing_file_is_refused(fvrid, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    one_line_error(cli("eval", f"data.root={fvrid}", *SMALL, "-o", target), target.name)
    assert target.read_text() == "keep me"


# -- R10: test.flip / test.rerank from the config -----------------------------------------
def test_config_flip_and_rerank_are_used_and_flags_override(fvrid, tmp_path):
    out = tmp_path / "ev"
    base = ["eval", f"data.root={fvrid}", *SMALL, "-o", out, "test.flip=true", "test.rerank=true"]
    assert cli(*base).exit_code == 0
    info = json.loads((out / "metrics.json").read_text())
    assert info["flip"] is True and info["rerank"] is True
    assert cli(*base, "--no-flip", "--overwrite").exit_code == 0
    info = json.loads((out / "metrics.json").read_text())
    assert info["flip"] is False and info["rerank"] is True


# -- R6: triplet distances in fp32 under autocast -------------------------------------------
def test_triplet_loss_is_fp32_under_autocast():
    from sjdl.losses.reid import triplet_loss

    torch.manual_seed(0)
    feats = torch.randn(16, 256) * 3
    pids = torch.arange(8).repeat_interleave(2)
    ref = triplet_loss(feats, pids, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = triplet_loss(feats, pids, 0.3)
    assert amp.dtype == torch.float32
    assert amp.item() == pytest.approx(ref.item(), abs=1e-5)


# -- R8: FIRM restores from the unerased image's own CFSM features ---------------------------
def test_firm_uses_cfsm_features_of_the_unerased_image(small_cfg):
    model = build_model(small_cfg(), 3).train()
    foggy = torch.rand(4, 3, 64, 64)
    erased = foggy.clone()
    erased[:, :, 8:40, 8:40] = 0.5
    out = model(erased, firm_input=foggy)
    f_c, f1 = model.cfsm((foggy - model.pixel_mean) / model.pixel_std)
    _, j_enh = model.firm(foggy, f_c, f1)
    assert torch.allclose(out.restored[1], j_enh, atol=1e-6)
    same = model(foggy, firm_input=foggy)  # no erasing: identical to the plain forward
    assert torch.allclose(same.restored[1], model(foggy).restored[1], atol=1e-6)
