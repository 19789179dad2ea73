"""Hostile inputs to training (issue 10): resume, run folders, kills, full disks, bad files."""

import errno
import json

import pytest
import torch
from safetensors.torch import load_file

from sjdl.config import ConfigError, load_config
from sjdl.engine import Trainer
from sjdl.engine import train as train_run

from .conftest import cli, one_line_error, tiny_train_config, write_image

QUIET = {"log": lambda *a: None}
TINY = [
    "model.backbone=resnet18",
    "data.size_train=[32,32]",
    "data.size_test=[32,32]",
    "data.num_ids=2",
    "data.num_instances=2",
    "data.workers=0",
    "train.tensorboard=false",
    "train.warmup_epochs=1",
    "train.log_every=1",
]


def _cfg(root, *extra):
    return tiny_train_config(
        root,
        "train.epochs=1",
        "train.log_every=1",
        "train.val_ids=1",
        "train.warmup_epochs=1",
        *extra,
    )


def _weights(run):
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rows(run, kind):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


# -- 2: resume after epoch >= 3 (best_map was a numpy scalar) ------------------------------
def test_resume_after_three_epochs_with_validation(fvrid, tmp_path):
    run = tmp_path / "run"
    train_run(_cfg(fvrid, "train.epochs=3"), run, **QUIET)
    state = torch.load(run / "checkpoints" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 3 and type(state["best_map"]) is float and state["best_map"] >= 0
    summary = train_run(_cfg(fvrid, "train.epochs=4"), run, resume=True, **QUIET)
    assert summary["epochs"] == 4
    assert "resumed from" in (run / "train.log").read_text()


# -- 5: an existing run is refused without --resume / --overwrite --------------------------
def test_train_cli_refuses_existing_run_unless_overwrite(fvrid, tmp_path):
    run = tmp_path / "run"
    args = ["train", "-o", run, f"data.root={fvrid}", *TINY, "train.epochs=1"]
    assert cli(*args).exit_code == 0
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    jsonl = (run / "metrics.jsonl").read_text()
    one_line_error(cli(*args), str(run), "--resume", "--overwrite")
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before
    assert (run / "metrics.jsonl").read_text() == jsonl
    result = cli(*args, "--overwrite", "train.seed=1")
    assert result.exit_code == 0, result.output
    assert len(_rows(run, "epoch")) == 1  # the old run's rows are gone, not appended to
    assert (run / "checkpoints" / "last.safetensors").read_bytes() != before


# -- 6: weights and training state always form one consistent pair -------------------------
@pytest.mark.parametrize("stale", ["state", "weights"])
def test_inconsistent_weights_and_state_resume_from_a_consistent_pair(fvrid, tmp_path, stale):
    train_run(_cfg(fvrid, "train.epochs=3"), tmp_path / "straight", **QUIET)
    run = tmp_path / "run"
    train_run(_cfg(fvrid, "train.epochs=1"), run, **QUIET)
    ck = run / "checkpoints"
    epoch1 = {n: (ck / n).read_bytes() for n in ("last.safetensors", "last_state.pt")}
    train_run(_cfg(fvrid, "train.epochs=2"), run, resume=True, **QUIET)
    # a kill between the two writes of the epoch-2 save leaves one file at epoch 1
    name = "last_state.pt" if stale == "state" else "last.safetensors"
    (ck / name).write_bytes(epoch1[name])
    train_run(_cfg(fvrid, "train.epochs=3"), run, resume=True, **QUIET)
    assert _same_weights(_weights(tmp_path / "straight"), _weights(run))
    log = (run / "train.log").read_text()
    assert "last.safetensors" in log and "does not match" in log


def test_state_without_weights_must_match_last_safetensors(fvrid, tmp_path):
    run = tmp_path / "run"
    train_run(_cfg(fvrid), run, **QUIET)
    ck = run / "checkpoints"
    old = torch.load(ck / "last_state.pt", weights_only=True)
    del old["model"]  # a state written before it carried the weights
    train_run(_cfg(fvrid, "train.epochs=2"), run, resume=True, **QUIET)
    torch.save(old, ck / "last_state.pt")  # epoch 1, while last.safetensors is at epoch 2
    result = cli("train", "--resume", run, "train.epochs=3")
    one_line_error(result, "last.safetensors (epoch 2", "does not match", "last_state.pt")


# -- 12 / R7: epoch means ---------------------------------------------------------------
def test_epoch_means_after_mid_epoch_resume(fvrid, tmp_path, monkeypatch):
    calls = {"n": 0}
    orig = Trainer._step

    def flaky(self, batch, real):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return orig(self, batch, real)

    monkeypatch.setattr(Trainer, "_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_run(_cfg(fvrid), tmp_path / "run", **QUIET)
    monkeypatch.setattr(Trainer, "_step", orig)
    train_run(_cfg(fvrid), tmp_path / "run", resume=True, **QUIET)
    steps = [r for r in _rows(tmp_path / "run", "train") if r["epoch"] == 1]
    (epoch,) = _rows(tmp_path / "run", "epoch")
    assert len(steps) == 2
    for key in ("loss", "syn/triplet"):
        assert epoch[key] == pytest.approx(sum(r[key] for r in steps) / 2)


def test_real_means_are_over_steps_with_a_real_batch(fvrid, tmp_path):
    cfg = _cfg(fvrid, "method=sjdl", "train.real_every=2", "train.val_ids=0")
    train_run(cfg, tmp_path / "run", **QUIET)
    steps = _rows(tmp_path / "run", "train")
    (epoch,) = _rows(tmp_path / "run", "epoch")
    real = [r["real/total"] for r in steps if "real/total" in r]
    assert 0 < len(real) < len(steps)
    assert epoch["real/total"] == pytest.approx(sum(real) / len(real))
    assert epoch["syn/total"] == pytest.approx(sum(r["syn/total"] for r in steps) / len(steps))


# -- 13 / 17: invalid values --------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=-1", "train.epochs"),
        ("train.val_ids=-3", "train.val_ids"),
        ("train.lr=-1", "train.lr"),
        ("test.batch_size=0", "test.batch_size"),
        ("data.workers=-1", "data.workers"),
    ],
)
def test_invalid_values_are_refused(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["data.num_ids=4"], "data.num_ids=4"),
        (["method=sjdl", "data.num_ids=3", "train.val_ids=0"], "data.num_ids=3"),
    ],
)
def test_more_identities_per_batch_than_the_data_has(fvrid, tmp_path, extra, needle):
    run = tmp_path / "run"
    result = cli("train", "-o", run, f"data.root={fvrid}", *TINY, "train.val_ids=1", *extra)
    one_line_error(result, needle, "identities")
    assert not run.exists()  # 19: a failed start leaves no run folder behind


def test_strict_bad_training_image_is_a_one_line_error(fvrid, tmp_path):
    victim = sorted((fvrid / "FVRID_syn" / "train_foggy").iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    for workers in (0, 1):
        args = [f"data.root={fvrid}", *TINY, "data.strict=true", f"data.workers={workers}"]
        result = cli("train", "-o", tmp_path / f"run{workers}", *args)
        one_line_error(result, victim.name, "cannot read image", "data.strict")


# -- 15: disk full while saving -----------------------------------------------------------
def test_disk_full_during_save_is_one_line_and_leaves_no_temporaries(fvrid, tmp_path, monkeypatch):
    import sjdl.storage.atomic as atomic

    run = tmp_path / "run"
    args = ["train", "-o", run, f"data.root={fvrid}", *TINY, "train.epochs=1"]
    assert cli(*args).exit_code == 0
    before = (run / "checkpoints" / "last.safetensors").read_bytes()

    def full_disk(f, data):  # the disk fills up while a checkpoint is written
        if "checkpoints" not in str(f.name):
            return f.write(data)
        f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    result = cli("train", "--resume", run, "train.epochs=2")
    one_line_error(result, "no space left on device", str(run / "checkpoints"))
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before


# -- 16: broken files -----------------------------------------------------------------------
def test_broken_training_state_is_a_one_line_error(fvrid, tmp_path):
    from fractions import Fraction

    run = tmp_path / "run"
    train_run(_cfg(fvrid), run, **QUIET)
    state = run / "checkpoints" / "last_state.pt"
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])
    one_line_error(cli("train", "--resume", run), "last_state.pt")
    torch.save({"epoch": 1, "evil": Fraction(1, 3)}, state)
    one_line_error(cli("train", "--resume", run), "last_state.pt", "pickled")


def _pretrained_files(tmp_path):
    from safetensors.torch import save_file

    from sjdl.models import ResNet

    net = ResNet("resnet18")
    good = tmp_path / "r18.safetensors"
    save_file(dict(net.state_dict()), str(good))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:5000])
    full_model = tmp_path / "full_model.pth"
    torch.save(net, full_model)
    raw = tmp_path / "raw_pickle.pth"
    import pickle

    raw.write_bytes(pickle.dumps(torch.nn.Linear(2, 2)))
    return [truncated, full_model, raw]


def test_bad_pretrained_files_are_one_line_errors(fvrid, tmp_path):
    for path in _pretrained_files(tmp_path):
        result = cli(
            "train", "-o", tmp_path / "run", f"data.root={fvrid}", *TINY, f"model.pretrained={path}"
        )
        one_line_error(result, path.name)


# -- 19: stale temporaries of interrupted saves -------------------------------------------
def test_stale_temporaries_are_removed_on_resume(fvrid, tmp_path):
    run = tmp_path / "run"
    train_run(_cfg(fvrid), run, **QUIET)
    stale = [run / "checkpoints" / n for n in ("last.safetensors.tmp", "last_state.pt.tmp")]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    keep = run / "checkpoints" / "mine.tmp"  # not our naming pattern: left alone
    keep.write_bytes(b"y")
    train_run(_cfg(fvrid, "train.epochs=2"), run, resume=True, **QUIET)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert "stale temporary" in (run / "train.log").read_text()


def test_failed_start_leaves_no_run_folder(tmp_path):
    run = tmp_path / "run"
    result = cli("train", "-o", run, f"data.root={tmp_path / 'nowhere'}", *TINY)
    one_line_error(result, "nowhere")
    assert not run.exists()


# -- R5, R10: on-the-fly fog ----------------------------------------------------------------
def test_fog_on_the_fly_with_a_real_set_trains(fvrid, tmp_path):
    cfg = _cfg(fvrid, "method=sjdl", "data.fog_on_the_fly=true", "train.val_ids=0")
    assert train_run(cfg, tmp_path / "run", **QUIET)["epochs"] == 1


def _parts(cfg):
    from sjdl.engine.distributed import DistInfo
    from sjdl.engine.setup import build_run

    return build_run(cfg, torch.device("cpu"), DistInfo(), log=lambda *a: None)


def test_fog_on_the_fly_uses_the_preset_ranges(fvrid):
    from sjdl.data.fog import FOG_PRESETS

    cfg = _cfg(fvrid, "preset=official", "model.neck=bnneck", "data.fog_on_the_fly=true")
    assert _parts(cfg).syn_loader.dataset.fog_ranges == FOG_PRESETS["official"]


def test_fog_on_the_fly_validation_sees_foggy_images(tmp_path):
    root = tmp_path / "folder"
    n = 0
    for split, ids, cams in (("train", (1, 2, 3), (1, 2)), ("query", (8,), (1,))):
        for pid in ids:
            for cam in cams:
                for k in range(2):
                    write_image(root / split / f"{pid:04d}_c{cam:03d}_{k}.jpg", seed=n)
                    n += 1
    for k in range(2):
        write_image(root / "gallery" / f"0008_c002_{k}.jpg", seed=100 + k)
    cfg = _cfg(root, "data.dataset=folder", "data.fog_on_the_fly=true", "method=jdl")
    ql, _ = _parts(cfg).val_loaders
    a, b = ql.dataset[0], ql.dataset[0]
    assert not torch.allclose(a["img"], a["clear"], atol=0.02)  # fogged, not clear vs clear
    assert torch.equal(a["img"], b["img"])  # the same fog at every validation


# -- R9: AMP switched on when resuming a run saved without it ------------------------------
def test_resume_with_amp_on_after_a_run_without_it(fvrid, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train_run(_cfg(fvrid), run, **QUIET)
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", enabled=True))
    assert train_run(_cfg(fvrid, "train.epochs=2"), run, resume=True, **QUIET)["epochs"] == 2


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.max_steps_per_epoch=-1", "train.max_steps_per_epoch"),
        ("data.hflip=2", "data.hflip"),
        ("data.real_batch_size=-4", "data.real_batch_size"),
        ("train.device=tpu", "train.device"),
    ],
)
def test_more_invalid_values_found_by_the_probe_are_refused(override, key):
    from sjdl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=key):
        load_config(overrides=[override])


def test_pretrained_file_of_another_network_is_refused(tmp_path):
    from sjdl.models import build_model
    from sjdl.models.io import CheckpointError

    torch.save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "other.pth")
    cfg = tiny_train_config(tmp_path, f"model.pretrained={tmp_path / 'other.pth'}")
    with pytest.raises(CheckpointError, match="no tensor of it fits this backbone"):
        build_model(cfg, 2)


def test_real_batch_larger_than_the_real_set_is_a_one_line_error(tmp_path):
    from .conftest import make_fvrid

    root = make_fvrid(tmp_path / "data", real_labelled=False)
    run = tmp_path / "run"
    args = [f"data.root={root}", *TINY, "method=sjdl", "data.real_labelled=false"]
    result = cli("train", "-o", run, *args, "data.real_batch_size=100")
    one_line_error(result, "data.real_batch_size = 100", "unlabelled real set has")
    assert not run.exists()
