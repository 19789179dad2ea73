"""Resuming on other training data is refused: the classifier's rows follow the sorted
identities, so the same number of identities but other ones would train silently wrong."""

import pytest
import torch

from sjdl.data.records import DatasetError, ImageRecord, records_summary
from sjdl.engine import train as train_run

from .conftest import cli, one_line_error, tiny_train_config

QUIET = {"log": lambda *a: None}


def _cfg(root, *extra):
    return tiny_train_config(root, "train.warmup_epochs=1", "train.val_ids=0", *extra)


def _rename_identity(root, old: int, new: int):
    for kind in ("train_foggy", "train_clear"):
        for f in (root / "FVRID_syn" / kind).glob(f"{old:05d}_*"):
            f.rename(f.with_name(f"{new:05d}" + f.name[5:]))


def _files(run):
    return {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}


def test_records_summary_sees_renamed_identities_and_ignores_order(tmp_path):
    a = [ImageRecord(tmp_path / "00003_c001_0.jpg", 3, 0), ImageRecord(tmp_path / "x.jpg", 9, 1)]
    s = records_summary(a)
    assert (s["images"], s["ids"]) == (2, 2)
    assert records_summary(a[::-1]) == s  # listing order does not matter
    other = [a[0], ImageRecord(tmp_path / "x.jpg", 11, 1)]  # same counts, another identity
    assert records_summary(other)["digest"] != s["digest"]
    moved = [ImageRecord(tmp_path / "elsewhere" / r.path.name, r.pid, r.camid) for r in a]
    assert records_summary(moved) == s  # the data folder may move between runs


def test_resume_on_renamed_identity_is_refused_and_the_run_kept(fvrid, tmp_path):
    run = tmp_path / "run"
    train_run(_cfg(fvrid, "train.epochs=1"), run, **QUIET)
    before = _files(run)
    _rename_identity(fvrid, 9, 11)  # 3 identities before and after
    err = one_line_error(cli("train", "--resume", run, "train.epochs=2"), str(run))
    assert "12 images of 3 identities as before, but other files or identities" in err
    assert _files(run) == before
    _rename_identity(fvrid, 11, 9)  # put back: the run continues
    assert train_run(_cfg(fvrid, "train.epochs=2"), run, resume=True, **QUIET)["epochs"] == 2


def test_resume_with_an_identity_more_names_both_counts(fvrid, tmp_path):
    run = tmp_path / "run"
    train_run(_cfg(fvrid, "train.epochs=1"), run, **QUIET)
    for kind in ("train_foggy", "train_clear"):
        folder = fvrid / "FVRID_syn" / kind
        for f in list(folder.glob("00009_*")):
            (folder / ("00012" + f.name[5:])).write_bytes(f.read_bytes())
    one_line_error(
        cli("train", "--resume", run, "train.epochs=2"), "12 images of 3 identities then, 16 of 4"
    )


@pytest.mark.parametrize(
    "damage, resumes",
    [
        (lambda st: st.pop("data"), True),  # a state of an older version: nothing to compare
        (lambda st: st.__setitem__("data", {"synthetic": 3}), False),
        (lambda st: st["data"]["real"].__setitem__("ids", "3"), False),
    ],
)
def test_state_data_summary_missing_or_damaged(fvrid, tmp_path, damage, resumes):
    run = tmp_path / "run"
    train_run(_cfg(fvrid, "train.epochs=1"), run, **QUIET)
    path = run / "checkpoints" / "last_state.pt"
    st = torch.load(path, weights_only=True)
    damage(st)
    torch.save(st, path)
    result = cli("train", "--resume", run, "train.epochs=2")
    if resumes:
        assert result.exit_code == 0, result.output
    else:
        one_line_error(result, "last_state.pt", "'data' is not a summary of the training data")


@pytest.mark.parametrize("folder", ["FVRID_syn/train_foggy", "FVRID_real/train_foggy"])
def test_training_images_vanishing_mid_run_stop_it_at_the_last_saved_epoch(fvrid, tmp_path, folder):
    """A dropped mount or a moved folder once gave 'done' after epochs of empty batches."""
    import shutil

    run = tmp_path / "run"

    def log(line):
        if line.startswith("epoch 1:"):  # the end of epoch 1, before its save
            shutil.rmtree(fvrid / folder)

    cfg = _cfg(fvrid, "train.epochs=3", "data.cache_mb=0", "method=sjdl")
    with (
        pytest.warns(UserWarning, match="skipped unreadable image"),
        pytest.raises(DatasetError, match="epoch 2: none of the .*images drawn could be"),
    ):
        train_run(cfg, run, log=log)
    st = torch.load(run / "checkpoints" / "last_state.pt", weights_only=True)
    assert st["epoch"] == 1 and st["step_in_epoch"] == 0


def test_a_data_worker_killed_saves_the_run_and_says_so(fvrid, tmp_path):
    """The out-of-memory killer taking a DataLoader worker gave a traceback and lost the
    epoch's steps; now the run is saved where it stood and the error says how to go on."""
    import os
    import signal
    import subprocess

    from sjdl.engine import DataWorkerError

    run, killed = tmp_path / "run", []

    def log(line):
        if line.startswith("epoch 1:") and not killed:  # the workers are persistent
            pids = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True)
            killed.extend(int(x) for x in pids.stdout.split())
            for pid in killed:  # the synthetic and the real loader's worker
                os.kill(pid, signal.SIGKILL)

    cfg = _cfg(fvrid, "train.epochs=3", "data.workers=1")
    with pytest.raises(DataWorkerError, match="is killed by signal") as err:
        train_run(cfg, run, log=log)
    assert killed and f"sjdl train --resume {run}" in str(err.value)
    st = torch.load(run / "checkpoints" / "last_state.pt", weights_only=True)
    assert st["epoch"] <= 1
    assert train_run(_cfg(fvrid, "train.epochs=3"), run, resume=True, **QUIET)["epochs"] == 3
