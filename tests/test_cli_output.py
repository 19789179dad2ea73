"""The command line's own output: warnings as one line, and output that cannot be written
(``> file`` on a full disk, a closed pipe) as a one-line error, not a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

MAIN = "import sys; from sjdl.cli import main; sys.argv[0] = 'sjdl'; main()"


def _sjdl(*args, **kw):
    """``sjdl`` through its real entry point (``main``: signals, warnings, output errors)."""
    run = [sys.executable, "-c", MAIN, *map(str, args)]
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(run, stderr=subprocess.PIPE, text=True, timeout=300, **kw)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["info"], ["--help"]])
def test_output_onto_a_full_disk_is_a_one_line_error(args):
    with open("/dev/full", "w") as full:
        p = _sjdl(*args, stdout=full)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: cannot write the output: No space left on device"


def test_a_reader_that_stops_early_is_no_error():
    p = subprocess.Popen(
        [sys.executable, "-c", MAIN, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()  # like ``| head -0``: the pipe is closed before anything is read
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "error" not in err


def test_warnings_of_the_command_line_are_one_line(fvrid, tmp_path):
    (fvrid / "FVRID_syn" / "train_foggy" / "00003_c001_000000_0.jpg").write_bytes(b"not a jpeg")
    args = ["train", "-o", tmp_path / "run", f"data.root={fvrid}", "train.epochs=1"]
    overrides = ["model.backbone=resnet18", "data.size_train=[32,32]", "data.size_test=[32,32]"]
    overrides += ["data.num_ids=2", "data.num_instances=2", "data.workers=0"]
    overrides += ["train.tensorboard=false", "train.val_ids=0", "train.warmup_epochs=1"]
    p = _sjdl(*args, *overrides)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if "00003_c001_000000_0.jpg" in ln]
    assert lines and all(ln.startswith("warning: skipped unreadable image: ") for ln in lines)
    assert "UserWarning" not in p.stderr and "bad_images.update" not in p.stderr


@pytest.mark.parametrize("saving", [False, True])
def test_a_stopped_index_build_says_what_it_left(tmp_path, monkeypatch, saving):
    """Ctrl-C or ``kill`` in ``index build`` printed click's bare "Aborted!" (exit 1)."""
    from typer.testing import CliRunner

    from sjdl.cli import app
    from sjdl.retrieval import Gallery

    from .conftest import write_image
    from .test_deploy import _checkpoint

    ckpt, _ = _checkpoint(tmp_path)
    write_image(tmp_path / "gallery" / "00001_c001_0.jpg")

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Gallery, "save" if saving else "build", stop)
    out = tmp_path / "idx"
    r = CliRunner().invoke(
        app,
        ["index", "build", str(tmp_path / "gallery"), "--checkpoint", str(ckpt), "-o", str(out)],
    )
    assert r.exit_code == 130
    said = " ".join(r.stderr.split())
    if saving:
        assert f"stopped while saving: {out} holds one complete index" in said
    else:
        assert f"nothing was written: {out} is as it was" in said and not out.exists()
