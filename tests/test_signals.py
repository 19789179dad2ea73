"""SIGTERM (``kill``, ``timeout``, a job scheduler) stops a command the way Ctrl-C does: a
training writes its resumable checkpoint mid-epoch, ``sjdl fog`` removes its staged output
and stops its workers. Before, the process died on the spot: a training lost every step since
its last epoch's checkpoint and ``sjdl fog`` left gigabytes in a hidden staging folder."""

import json
import signal
import subprocess
import sys
import time

from PIL import Image

from .conftest import make_fvrid

SJDL = [sys.executable, "-m", "sjdl"]


def _wait(pred, proc, limit=120.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _said(output: str, text: str) -> bool:
    """``text`` in ``output``, wherever the console wrapped its lines."""
    return "".join(text.split()) in "".join(output.split())


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def _train_rows(run):
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    return sum('"kind": "train"' in x for x in path.read_text().splitlines())


def test_sigterm_mid_epoch_writes_a_resumable_checkpoint(tmp_path):
    data = make_fvrid(tmp_path / "data", train_ids=(3, 7, 9, 11))  # 4 steps an epoch
    run = tmp_path / "run"
    common = ["data.workers=0", "train.tensorboard=false", "train.log_every=1"]
    args = [
        f"data.root={data}",
        "model.backbone=resnet18",
        "data.size_train=[32,32]",
        "data.size_test=[32,32]",
        "data.num_ids=2",
        "data.num_instances=2",
        "train.val_ids=0",
        "train.epochs=50",
        *common,
    ]
    proc = subprocess.Popen(
        [*SJDL, "train", "-o", str(run), *args], stdout=-1, stderr=-1, text=True
    )
    assert _wait(lambda: _train_rows(run) >= 6, proc), proc.communicate()  # 2 into epoch 2
    rc, said = _stop(proc)
    assert rc == 130, said
    assert "interrupted: resumable checkpoint written" in said
    done = _train_rows(run)
    assert 6 <= done < 8  # stopped inside epoch 2, whose steps so far are kept
    resumed = subprocess.run(
        [*SJDL, "train", "--resume", str(run), "train.epochs=2"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert _train_rows(run) == 8 and steps[-1] == 8  # the rest of epoch 2, nothing repeated


def test_sigterm_stops_fog_and_leaves_no_staged_output(tmp_path):
    src, dst = tmp_path / "clear", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        Image.new("RGB", (48, 32), (40 * i, 90, 160)).save(src / f"{i:04d}_c001_{i}.jpg")
    cmd = [*SJDL, "fog", str(src), str(dst), "--copies", "20000", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=-1, stderr=-1, text=True)
    stage = dst / ".sjdl-fog-partial"
    assert _wait(lambda: stage.is_dir() and any(stage.rglob("*.jpg")), proc), proc.communicate()
    t = time.monotonic()
    rc, said = _stop(proc)
    assert rc == 130 and time.monotonic() - t < 60, said  # not after fogging all 80 000
    assert _said(said, f"interrupted: nothing was written: {dst} is as it was")
    assert not dst.exists(), sorted(p.name for p in dst.rglob("*"))[:5]


def test_sigterm_in_a_study_says_what_is_kept(tmp_path):
    out = tmp_path / "study"
    cmd = [*SJDL, "study", "--quick", "--seeds", "0", "--densities", "dense", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=-1, stderr=-1, text=True)
    assert _wait(lambda: (out / "runs").is_dir(), proc), proc.communicate()
    rc, said = _stop(proc)
    assert rc == 130, said
    assert "Traceback" not in said
    assert _said(said, f"interrupted: finished trainings and evaluations are kept in {out}")
