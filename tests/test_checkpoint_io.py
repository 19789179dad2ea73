import pytest
import torch

from sjdl.models import build_model
from sjdl.models.io import CheckpointError, load_model, read_checkpoint, save_weights


def test_weights_round_trip_rebuilds_the_same_model(small_cfg, tmp_path):
    cfg = small_cfg("model.split=conv3", "test.feature=pre_bn")
    model = build_model(cfg, 7, 3)
    path = save_weights(model, tmp_path / "run" / "best.safetensors", cfg, 7, 3)
    loaded, loaded_cfg, meta = load_model(tmp_path / "run")  # a run folder works too
    assert loaded_cfg == cfg and meta["num_syn_ids"] == "7"
    assert not loaded.training and list(loaded.heads) == ["syn", "real"]
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.extract_features(x), model.extract_features(x))
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file


def test_corrupted_and_foreign_files_are_clear_errors(tmp_path, small_cfg):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="bad.safetensors: not a readable .safetensors"):
        read_checkpoint(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an sjdl checkpoint"):
        read_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="no best.safetensors or last.safetensors"):
        read_checkpoint(tmp_path)


def test_checkpoint_that_does_not_fit_is_refused(small_cfg, tmp_path):
    cfg = small_cfg()
    model = build_model(cfg, 4)
    del model.reidm.bnneck  # e.g. a renamed BNNeck: must not load silently without it
    model.reidm.bnneck = torch.nn.Identity()
    save_weights(model, tmp_path / "w.safetensors", cfg, 4, 0)
    with pytest.raises(CheckpointError, match=r"missing \['reidm.bnneck.weight'"):
        load_model(tmp_path / "w.safetensors")


def test_metadata_is_read_without_the_tensors(small_cfg, tmp_path):
    from sjdl.models.io import read_metadata

    cfg = small_cfg()
    save_weights(build_model(cfg, 4), tmp_path / "w.safetensors", cfg, 4, 2)
    meta = read_metadata(tmp_path / "w.safetensors")
    assert meta["num_syn_ids"] == "4" and meta["num_real_ids"] == "2"
    assert "backbone: resnet18" in meta["config"]
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_metadata(tmp_path / "nope.safetensors")
