"""Issue 17 items 10, 11, 17, 18, 19: resume keeps its recipe, damaged state and absurd
headers or sizes are one-line errors naming the file, key or flag."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sjdl.config import load_config
from sjdl.engine.state import state_problem

from .conftest import cli, one_line_error
from .test_deploy import _checkpoint
from .test_robustness_train import TINY

RUN_ARGS = [*TINY, "train.epochs=1", "train.max_steps_per_epoch=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny one-epoch run (copied by tests that change it)."""
    from .conftest import make_fvrid

    root = tmp_path_factory.mktemp("run")
    data = make_fvrid(root / "data")
    out = root / "run"
    r = cli("train", "-o", out, f"data.root={data}", *RUN_ARGS)
    assert r.exit_code == 0, r.output
    return out


def _copy(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / "run")


def test_resume_refuses_changed_keys_and_other_folders(run, tmp_path):
    config = (run / "config.yaml").read_text()
    one_line_error(
        cli("train", "--resume", run, "train.lr=0.05"),
        "train.lr",
        "train.lr=0.0001",
        "to 0.05",
    )
    one_line_error(cli("train", "--resume", run, "model.backbone=resnet34"), "model.backbone")
    other = tmp_path / "other"
    one_line_error(cli("train", "--resume", run, "-o", other), "-o/--output", "--resume")
    one_line_error(cli("train", "--resume", run, "--config", "demo"), "--config")
    assert not other.exists()
    assert (run / "config.yaml").read_text() == config


def test_resume_may_extend_epochs_and_says_so(run, tmp_path):
    r = _copy(run, tmp_path)
    result = cli("train", "--resume", r, "train.epochs=2", "train.lr=0.0001")  # same lr: fine
    assert result.exit_code == 0, result.output
    assert "on resume: train.epochs 1 -> 2" in result.output
    rows = [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in rows if x["kind"] == "epoch"] == [1, 2]
    assert load_config(r / "config.yaml").train.epochs == 2


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda st: st.pop("optimizer"), "'optimizer' is missing"),
        (lambda st: st.update(epoch="3"), "'epoch' is a str"),
        (lambda st: st.update(epoch=-2), "'epoch' is negative"),
        (lambda st: st["rng"].pop("torch"), "'rng' lacks"),
        (lambda st: st.update(model={"w": [1, 2]}), "not tensors"),
        (lambda st: st["optimizer"].update(param_groups=3), "param_groups"),
    ],
)
def test_damaged_training_state_names_the_file_and_what(run, tmp_path, damage, needle):
    r = _copy(run, tmp_path)
    path = r / "checkpoints" / "last_state.pt"
    st = torch.load(path, weights_only=True)
    assert state_problem(st) is None
    damage(st)
    torch.save(st, path)
    one_line_error(cli("train", "--resume", r), str(path), "damaged training state", needle)


def test_num_instances_above_any_identity_is_refused_at_load(tmp_path):
    from .conftest import make_fvrid

    data = make_fvrid(tmp_path / "d")  # 4 images per training id
    out = tmp_path / "r"
    result = cli("train", "-o", out, f"data.root={data}", *RUN_ARGS, "data.num_instances=5")
    one_line_error(result, "data.num_instances=5", "at most 4")
    assert not out.exists()


@pytest.mark.parametrize(
    ("size", "needle"),
    [(("0", "0"), "got 0 0"), (("-64", "64"), "got -64 64"), (("100000", "64"), "4096")],
)
def test_export_refuses_bad_sizes_before_loading(tmp_path, size, needle):
    out = tmp_path / "m.onnx"
    result = cli("export", "--checkpoint", tmp_path / "none", "-o", out, "--size", *size)
    one_line_error(result, "--size", needle)
    assert not out.exists()


def test_export_restoration_needs_multiples_of_32(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    result = cli("export", "--checkpoint", ckpt, "--restoration", "--size", "33", "65")
    one_line_error(result, "--size", "multiples of 32")


def _rewrite_header(src, dst, **changes):
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def test_absurd_header_counts_and_sizes_are_refused_before_allocating(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    big = _rewrite_header(ckpt, tmp_path / "ids.safetensors", num_syn_ids=str(10**12))
    err = one_line_error(cli("export", "--checkpoint", big, "-o", tmp_path / "a.onnx"))
    assert str(big) in err and "num_syn_ids=1000000000000" in err
    with safe_open(str(ckpt), framework="pt") as f:
        cfg = f.metadata()["config"].replace("- 64\n  - 32", "- 100000\n  - 100000", 1)
    assert "100000" in cfg
    huge = _rewrite_header(ckpt, tmp_path / "size.safetensors", config=cfg)
    err = one_line_error(cli("export", "--checkpoint", huge, "-o", tmp_path / "b.onnx"))
    assert str(huge) in err and "data.size_test" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_eval_and_train_on_an_absent_cuda_device(run, tmp_path):
    ckpt = run / "checkpoints" / "last.safetensors"
    data = load_config(run / "config.yaml").data.root
    result = cli("eval", "--checkpoint", ckpt, "--device", "cuda", "-o", tmp_path / "e")
    one_line_error(result, "--device: cuda", "no CUDA device")
    out = tmp_path / "r"
    result = cli("train", "-o", out, f"data.root={data}", *RUN_ARGS, "train.device=cuda:7")
    one_line_error(result, "train.device: cuda:7", "no CUDA device")


def _index(run, tmp_path):
    from .conftest import write_image

    gallery = tmp_path / "g"
    for i in range(2):
        write_image(gallery / f"{i:05d}_c001_0.jpg", size=(32, 32), seed=i)
    ckpt = run / "checkpoints" / "last.safetensors"
    idx = tmp_path / "idx"
    assert cli("index", "build", gallery, "--checkpoint", ckpt, "-o", idx).exit_code == 0
    return idx, gallery


def test_damaged_index_files_and_odd_index_folders(run, tmp_path, monkeypatch):
    idx, gallery = _index(run, tmp_path)
    query = next(gallery.iterdir())
    manifest = idx / "manifest.json"
    good = manifest.read_text()
    manifest.write_text(json.dumps([1, 2, 3]))
    one_line_error(cli("search", query, "--index", idx), str(manifest), "a JSON list")
    manifest.write_text(json.dumps({**json.loads(good), "dim": "512"}))
    one_line_error(cli("search", query, "--index", idx), str(manifest), "dim")
    manifest.write_text(good)
    lock = tmp_path / "idx.lock"
    lock.mkdir()
    one_line_error(cli("index", "add", idx, query), str(lock), "remove it")
    lock.rmdir()
    monkeypatch.chdir(idx)
    ckpt = run / "checkpoints" / "last.safetensors"
    one_line_error(cli("index", "build", gallery, "--checkpoint", ckpt, "-o", "."), "'.'")
    from .conftest import write_image

    new = write_image(tmp_path / "00005_c002_0.jpg", size=(32, 32), seed=5)
    one_line_error(cli("index", "add", ".", new), "'.'")
    assert not os.path.exists(tmp_path / ".writing") and manifest.read_text() == good
