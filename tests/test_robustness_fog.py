"""Hostile-but-fair inputs to ``sjdl fog`` and the shared image/depth readers (issue 10):
output = manifest, nothing partial, depth maps validated, errors that name the file."""

import csv
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.data.fog import read_depth
from sjdl.data.io import read_image
from sjdl.data.synthesis import fog_folder

from .conftest import lock_held_elsewhere, write_image

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _said(result, text):
    """``text`` in the command's output, ignoring where the console wrapped lines."""
    return "".join(text.split()) in "".join(result.output.split())


# --- item 18: depth maps that cannot be read -------------------------------------------------


def test_corrupt_depth_maps_are_errors_naming_the_file(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.npy: cannot read depth map"):
        read_depth(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npy: cannot read depth map"):
        read_depth(tmp_path / "obj.npy")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=r"bad\.png: cannot read depth map"):
        read_depth(tmp_path / "bad.png")


# --- item 8: 16-bit PNGs -------------------------------------------------------------------


def _png16(path, arr):
    """A 16-bit PNG written by hand (Pillow writes 16-bit greyscale only)."""
    h, w = arr.shape[:2]
    colour = {1: 0, 3: 2}[1 if arr.ndim == 2 else arr.shape[2]]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def test_16_bit_pngs_are_scaled_not_white(tmp_path):
    grey = np.array([[0, 16384], [32768, 65535]], np.uint16)
    img = read_image(_png16(tmp_path / "g.png", grey))
    assert img.shape == (3, 2, 2)
    assert torch.allclose(img[0], torch.from_numpy(grey / 65535).float(), atol=1e-6)
    assert torch.equal(img[0], img[2])
    rgb = np.stack([grey, grey // 2, np.full_like(grey, 65535)], -1)
    img = read_image(_png16(tmp_path / "c.png", rgb))
    assert torch.allclose(img[1], torch.from_numpy(rgb[..., 1] / 65535).float(), atol=1 / 255)


# --- items 10, 19, 13: fog output = manifest, failed runs leave nothing, depth checks -------


def _clear_set(root, n=4):
    for i in range(n):
        write_image(root / "train" / f"{i:04d}_c001_x.jpg", size=(20, 12), seed=i)
    return root


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_fog_overwrite_leaves_exactly_the_manifest(tmp_path):
    src, dst = _clear_set(tmp_path / "clear"), tmp_path / "out"
    fog_folder(src, dst, copies=2, workers=1)
    assert len(_files(dst)) == 17
    r = _run("fog", src, dst, "--overwrite", "--workers", "1")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((dst / "fog_manifest.csv").open()))
    foggy = sorted(str(p.relative_to(dst)) for p in (dst / "train_foggy").iterdir())
    assert foggy == sorted(r["file"] for r in rows) and len(foggy) == 4
    assert len(list((dst / "train_clear").iterdir())) == 4


def test_failed_fog_leaves_no_partial_files_and_keeps_the_earlier_set(tmp_path):
    src, dst = _clear_set(tmp_path / "clear", n=20), tmp_path / "out"
    (src / "train" / "0019_c001_x.jpg").write_bytes(b"\xff\xd8 broken")
    r = _run("fog", src, dst, "--workers", "1")
    assert r.exit_code == 2 and "0019_c001_x.jpg: cannot read image" in r.stderr
    assert not dst.exists()  # created by this run, removed on failure
    (src / "train" / "0019_c001_x.jpg").unlink()
    assert _run("fog", src, dst, "--workers", "2").exit_code == 0
    before = {f: (dst / f).read_bytes() for f in _files(dst)}
    (src / "train" / "0000_c001_x.jpg").write_bytes(b"broken later")
    r = _run("fog", src, dst, "--overwrite", "--workers", "2", "--seed", "5")
    assert r.exit_code == 2
    assert {f: (dst / f).read_bytes() for f in _files(dst)} == before


def test_fog_refuses_stale_files_without_overwrite(tmp_path):
    src, dst = _clear_set(tmp_path / "clear"), tmp_path / "out"
    write_image(dst / "train_foggy" / "stale.jpg")
    r = _run("fog", src, dst, "--workers", "1")
    assert r.exit_code == 2 and "stale.jpg exists" in r.stderr


def test_fog_refuses_sources_inside_its_output_folders(tmp_path):
    src = _clear_set(tmp_path / "clear") / "train"
    r = _run("fog", src, tmp_path / "clear" / "..", "--overwrite", "--workers", "1")
    assert r.exit_code == 0  # sources in clear/train, outputs in train_* beside: fine
    r = _run("fog", tmp_path / "train_clear", tmp_path, "--overwrite", "--workers", "1")
    assert r.exit_code == 2 and "which sjdl fog writes" in r.stderr
    assert len(list((tmp_path / "train_clear").iterdir())) == 4


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (-np.ones((20, 12)), "negative values"),
        (np.full((20, 12), 5.0), "constant depth 5"),
        (np.random.default_rng(0).random((12, 20)), "transposed"),
        (np.random.default_rng(0).random((20, 20)), "aspect ratios differ"),
    ],
)
def test_fog_refuses_depth_maps_that_would_be_silently_wrong(tmp_path, depth, message):
    src, depth_dir = _clear_set(tmp_path / "clear"), tmp_path / "depth"
    depth_dir.mkdir()
    np.save(depth_dir / "0001_c001_x.npy", depth)
    r = _run("fog", src, tmp_path / "out", "--depth", depth_dir, "--workers", "1")
    assert r.exit_code == 2 and "0001_c001_x.npy" in r.stderr and message in r.stderr
    assert not (tmp_path / "out" / "fog_manifest.csv").exists()


def test_fog_resizes_same_aspect_depth_maps_and_says_so(tmp_path):
    src, depth_dir = _clear_set(tmp_path / "clear"), tmp_path / "depth"
    depth_dir.mkdir()
    np.save(depth_dir / "0001_c001_x.npy", np.full((10, 6), 0.5))
    r = _run("fog", src, tmp_path / "out", "--depth", depth_dir, "--workers", "1")
    assert r.exit_code == 0 and _said(r, "1 depth map(s) had another size")
    rows = list(csv.DictReader((tmp_path / "out" / "fog_manifest.csv").open()))
    assert sum("(resized from 10x6)" in r["depth_source"] for r in rows) == 1
    assert json.dumps(rows)  # plain strings


def test_fogging_in_process_keeps_the_callers_thread_count(tmp_path):
    import torch

    from sjdl.data.synthesis import _fog_chunk

    torch.set_num_threads(2)
    try:
        assert _fog_chunk(([], ())) == []
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(2)


def test_a_second_fog_into_the_same_folder_stops_at_once(tmp_path):
    """Two runs into one DST shared one staging folder: the second deleted the first's staged
    images and replaced its output without --overwrite, and both said "wrote" (found by a
    probe). Now DST is locked while a run writes it; the second stops with one line."""
    src, dst = tmp_path / "clear", tmp_path / "out"
    write_image(src / "0001_c001_0.jpg", size=(32, 48))
    with lock_held_elsewhere(dst, "fog output") as pid:
        result = _run("fog", src, dst)
        assert result.exit_code == 2, result.output
        assert _said(result, f"fog output is being written by PID {pid}")
        assert not dst.exists()
    assert _run("fog", src, dst).exit_code == 0  # the lock went with its holder
    assert (dst / "fog_manifest.csv").is_file() and not (tmp_path / "out.lock").exists()


def test_fog_onto_a_full_disk_says_so_in_one_line(tmp_path, monkeypatch):
    """Copying a clear partner onto a full disk gave the raw "[Errno 28] ...: 'SRC' -> 'DST'"."""
    import errno

    from sjdl.data import synthesis

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(synthesis.shutil, "copyfile", full)
    src, dst = _clear_set(tmp_path / "clear"), tmp_path / "out"
    r = _run("fog", src, dst, "--workers", "1")
    assert r.exit_code == 2
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on device (")
    assert "train_clear" in errors[0] and "free some space" in errors[0]
    assert not dst.exists()
