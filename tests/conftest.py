import contextlib
import subprocess
import sys

import pytest
import torch

from sjdl.config import load_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def small_cfg():
    """A small, fast configuration (ResNet-18) for model tests."""

    def make(*overrides):
        return load_config(overrides=["model.backbone=resnet18", *overrides])

    return make


def write_image(path, size=(24, 16), value=None, seed=0):
    """A small RGB JPEG/PNG at ``path`` (random or constant colour)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    arr = (
        np.full((h, w, 3), value, np.uint8)
        if value is not None
        else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    )
    Image.fromarray(arr).save(path)
    return path


def make_fvrid(
    root, train_ids=(3, 7, 9), per_id=4, test_ids=(100, 101), real_ids=(20, 21), real_labelled=True
):
    """A tiny FVRID tree: syn train/query/gallery foggy+clear, real train/query/gallery."""
    syn, real = root / "FVRID_syn", root / "FVRID_real"
    n = 0
    for pid in train_ids:
        for k in range(per_id):
            name = f"{pid:05d}_c{k % 2 + 1:03d}_{k:06d}_0.jpg"
            for kind in ("foggy", "clear"):
                write_image(syn / f"train_{kind}" / name, seed=n)
            n += 1
    for pid in test_ids:
        for split, cam in (("query", 1), ("gallery", 2), ("gallery", 3)):
            name = f"{pid:05d}_c{cam:03d}_000000_0.jpg"
            for kind in ("foggy", "clear"):
                write_image(syn / f"{split}_{kind}" / name, seed=n)
            n += 1
            if real_ids:
                write_image(real / f"{split}_foggy" / name, seed=n)
    for pid in real_ids:
        for k in range(per_id):
            name = f"{pid:05d}_c001_{k:06d}_0.jpg" if real_labelled else f"frame{pid}_{k}.jpg"
            write_image(real / "train_foggy" / name, seed=n)
            n += 1
    return root


@pytest.fixture
def fvrid(tmp_path):
    return make_fvrid(tmp_path / "data")


def tiny_train_config(root, *extra):
    """A config that trains in seconds on ``make_fvrid`` data (ResNet-18, 32x32, P x K 2x2)."""
    return load_config(
        overrides=[
            f"data.root={root}",
            "model.backbone=resnet18",
            "data.size_train=[32,32]",
            "data.size_test=[32,32]",
            "data.num_ids=2",
            "data.num_instances=2",
            "data.workers=0",
            "train.tensorboard=false",
            *extra,
        ]
    )


def cli(*args):
    """Run the ``sjdl`` app in-process (stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from sjdl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *needles):
    """Exit 2, no traceback, one ``error:`` line on stderr containing every needle."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, result.stderr
    err = errors[0]
    for n in needles:
        assert str(n) in err, (n, err)
    return err


@contextlib.contextmanager
def lock_held_elsewhere(folder, what: str):
    """Another process holds ``folder``'s write lock for the ``with`` block; yields its PID."""
    code = (
        "import time\nfrom sjdl.storage import folder_lock\n"
        f"with folder_lock({str(folder)!r}, {what!r}):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
