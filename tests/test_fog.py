import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.data import add_fog, builtin_depth, random_fog, read_depth
from sjdl.data.fog import find_depth, fog_ranges
from sjdl.data.io import read_image
from sjdl.data.synthesis import fog_folder

from .conftest import write_image


def test_beta_zero_is_identity_and_infinite_depth_gives_airlight():
    clear = torch.rand(2, 3, 8, 6)
    depth = torch.rand(1, 8, 6)
    assert torch.allclose(add_fog(clear, depth, 0.0, 0.8), clear)
    far = add_fog(clear, torch.full((1, 8, 6), 1e4), 1.0, torch.tensor([0.7, 0.9]))
    assert torch.allclose(far[0], torch.full((3, 8, 6), 0.7))
    assert torch.allclose(far[1], torch.full((3, 8, 6), 0.9))


def test_fog_hand_computed_and_in_range():
    out = add_fog(torch.tensor([0.2]).view(1, 1, 1), torch.tensor([[[0.5]]]), 2.0, 1.0)
    t = np.exp(-1.0)
    assert out.item() == pytest.approx(0.2 * t + (1 - t), rel=1e-6)
    many = random_fog(torch.rand(4, 3, 16, 8), torch.Generator().manual_seed(0))
    assert many.min() >= 0 and many.max() <= 1


def test_builtin_depth_ground_plane():
    d = builtin_depth(5, 3)
    assert d.shape == (1, 5, 3)
    assert d[0, 0, 0] == pytest.approx(1.0) and d[0, -1, 0] == pytest.approx(0.3)
    assert torch.all(d[0, :-1] >= d[0, 1:])  # farther towards the top


def test_read_depth_formats(tmp_path):
    a8 = np.array([[0, 255], [51, 102]], np.uint8)
    Image.fromarray(a8).save(tmp_path / "a.png")
    assert np.allclose(read_depth(tmp_path / "a.png"), a8 / 255)
    a16 = np.array([[0, 65535], [13107, 0]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "b.png")
    assert np.allclose(read_depth(tmp_path / "b.png"), a16 / 65535, atol=1e-6)
    np.save(tmp_path / "c.npy", np.array([[2.0, 4.0], [6.0, 10.0]]))
    assert np.allclose(read_depth(tmp_path / "c.npy"), [[0, 0.25], [0.5, 1]])
    from scipy.io import savemat

    savemat(tmp_path / "d.mat", {"depth": np.array([[0.1, 0.2], [0.3, 0.4]])})
    assert np.allclose(read_depth(tmp_path / "d.mat"), [[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(ValueError, match="unsupported depth format"):
        read_depth(tmp_path / "e.txt")
    (tmp_path / "x").mkdir()
    Image.fromarray(a8).save(tmp_path / "x" / "predict_depth_gray.png")
    assert find_depth(tmp_path, "x.jpg") == tmp_path / "x" / "predict_depth_gray.png"
    assert find_depth(tmp_path, "c.jpg") == tmp_path / "c.npy"


def test_fog_ranges():
    assert fog_ranges("official") == ((1.0, 5.0), (0.4, 1.0))
    assert fog_ranges("paper", beta=(0.1, 0.2)) == ((0.1, 0.2), (0.5, 1.0))
    with pytest.raises(ValueError, match="bad fog ranges"):
        fog_ranges("paper", airlight=(0.5, 2.0))


def _clear_set(root):
    for split in ("train", "query"):
        for i in range(5):
            write_image(root / split / f"{i:04d}_c001_{split}.jpg", size=(20, 12), seed=i)
    return root


def test_fog_folder_seeded_manifest_and_depth(tmp_path):
    src = _clear_set(tmp_path / "clear")
    depth_dir = tmp_path / "depth"
    depth_dir.mkdir()
    np.save(depth_dir / "0000_c001_train.npy", np.zeros((10, 6)))  # depth 0: no fog; half size
    m1 = fog_folder(src, tmp_path / "a", depth_dir, copies=2, seed=3, workers=2)
    m2 = fog_folder(src, tmp_path / "b", depth_dir, copies=2, seed=3, workers=1)
    rows = list(csv.DictReader(m1.open()))
    assert len(rows) == 20 and rows == list(csv.DictReader(m2.open()))
    for row in rows:
        foggy = tmp_path / "a" / row["file"]
        clear = tmp_path / "a" / row["file"].replace("_foggy", "_clear")
        assert foggy.is_file() and clear.is_file()
        assert foggy.read_bytes() == (tmp_path / "b" / row["file"]).read_bytes()
        assert 0.4 <= float(row["beta"]) <= 1.6 and 0.5 <= float(row["airlight"]) <= 1.0
    zero = [r for r in rows if r["source"] == "train/0000_c001_train.jpg"]
    assert all(r["depth_source"].endswith("0000_c001_train.npy (resized from 10x6)") for r in zero)
    f, c = (
        read_image(tmp_path / "a" / zero[0]["file"].replace("_foggy", k))
        for k in ("_foggy", "_clear")
    )
    assert (f - c).abs().mean() < 0.03  # depth 0 -> t = 1 (JPEG re-encoding noise only)
    other = [r for r in rows if r["depth_source"] == "builtin:ground-plane"]
    assert len(other) == 18
    f, c = (
        read_image(tmp_path / "a" / other[0]["file"].replace("_foggy", k))
        for k in ("_foggy", "_clear")
    )
    assert (f - c).abs().mean() > 0.1  # real fog where the built-in depth applies
    different_seed = fog_folder(src, tmp_path / "c", copies=1, seed=4)
    assert list(csv.DictReader(different_seed.open()))[0]["beta"] != rows[0]["beta"]


def test_fog_folder_refuses_to_overwrite(tmp_path):
    src = _clear_set(tmp_path / "clear")
    fog_folder(src, tmp_path / "out", workers=1)
    from sjdl.data import DatasetError

    with pytest.raises(DatasetError, match="exists .* pass --overwrite"):
        fog_folder(src, tmp_path / "out", workers=1)
    fog_folder(src, tmp_path / "out", workers=1, overwrite=True)


def test_fog_cli(tmp_path):
    src = _clear_set(tmp_path / "clear")
    runner = CliRunner()
    args = ["fog", str(src), str(tmp_path / "out"), "--preset", "official", "--seed", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "out" / "fog_manifest.csv").open()))
    assert len(rows) == 10 and all(1.0 <= float(r["beta"]) <= 5.0 for r in rows)
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
