"""Issue 17 items 7, 9, 15, 18: every image reader goes through one gate (formats, regular
files, a pixel limit); index build, defog, search, eval and the search page say what they
refused and go on, without blocking on a FIFO or decoding a bomb."""

import io
import os
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

import sjdl
from sjdl.data import ReIDDataset, read_fvrid
from sjdl.data.io import (
    MAX_PIXELS,
    ImageFormatError,
    ImageReadError,
    ImageTooLargeError,
    read_image,
)
from sjdl.data.records import parse_name
from sjdl.data.transforms import PairedTransform
from sjdl.retrieval.server import create_app

from .conftest import cli, make_fvrid, one_line_error, write_image
from .test_deploy import _checkpoint


def png_bomb(path, w=50_000, h=50_000):
    """A ~70-byte PNG whose header claims w x h pixels."""

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def eps_as_jpg(path):
    """A valid EPS file named .jpg (Pillow would hand it to Ghostscript on decoding)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "EPS")
    path.write_bytes(buf.getvalue())
    return path


def _within(seconds, fn):
    """fn() in a thread; fails (instead of hanging the suite) if it blocks."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked"
    return out


def test_the_gate_refuses_fifos_other_formats_and_bombs(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    out = _within(10, lambda: read_image(fifo))
    assert isinstance(out["error"], ImageReadError)
    assert str(out["error"]) == f"{fifo}: not a regular file (a FIFO, socket or device), not read"
    with pytest.raises(ImageFormatError, match=r"eps.jpg: EPS format; only JPEG, PNG, BMP or"):
        read_image(eps_as_jpg(tmp_path / "eps.jpg"))
    tif = tmp_path / "t.tif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tif)
    with pytest.raises(ImageFormatError, match="TIFF format"):
        read_image(tif)
    bomb = png_bomb(tmp_path / "bomb.png")
    expected = f"{bomb}: too large (50000 x 50000 pixels, limit {MAX_PIXELS})"
    with pytest.raises(ImageTooLargeError) as e:
        read_image(bomb)
    assert str(e.value) == expected
    # between Pillow's warning and error thresholds: refused too, not decoded
    with pytest.raises(ImageTooLargeError, match=r"12000 x 12000 pixels"):
        read_image(png_bomb(tmp_path / "mid.png", 12_000, 12_000))
    webp = tmp_path / "w.webp"
    Image.fromarray(np.full((8, 6, 3), 200, np.uint8)).save(webp)
    assert read_image(webp).shape == (3, 8, 6)


def test_dataset_skips_bombs_fifos_and_eps_by_name(tmp_path):
    data = read_fvrid(make_fvrid(tmp_path / "d"))
    recs = data.gallery[:3]
    png_bomb(recs[0].path)
    recs[1].path.unlink()
    os.mkfifo(recs[1].path)
    eps_as_jpg(recs[2].path)
    ds = ReIDDataset(recs, PairedTransform((32, 32)), with_clear=False)
    items = _within(20, lambda: [ds[i] for i in range(3)])["value"]
    assert [it["bad"] for it in items] == [str(r.path) for r in recs]
    assert "too large (50000 x 50000" in items[0]["error"]
    assert "not a regular file" in items[1]["error"] and "EPS format" in items[2]["error"]


def test_huge_ids_in_names_are_not_ids():
    assert parse_name("00012_c003_x.jpg") == (12, 2)
    assert parse_name("2147483647_c1_x.jpg") == (2147483647, 0)
    assert parse_name("1" * 30 + "_c001_x.jpg") is None
    assert parse_name("12_c" + "9" * 30 + "_x.jpg") is None


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    ckpt, _ = _checkpoint(root)
    return root, ckpt


def test_upload_of_a_bomb_is_too_large_and_eps_is_named(model, tmp_path):
    root, ckpt = model
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    syn = make_fvrid(tmp_path / "d") / "FVRID_syn"
    gallery = sjdl.Gallery.build([syn / "gallery_foggy"], reid)
    app = create_app(gallery, max_upload=20_000, max_pixels=100_000)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/api/search", content=png_bomb(tmp_path / "b.png").read_bytes())
        assert r.status_code == 413, r.text
        assert r.json()["error"].startswith("image too large (50000 x 50000 pixels")
        r = c.post("/api/search", content=eps_as_jpg(tmp_path / "e.jpg").read_bytes())
        assert r.status_code == 415 and "EPS format" in r.json()["error"]


def test_index_build_skips_and_names_hostile_gallery_files(model, tmp_path):
    _, ckpt = model
    gallery = tmp_path / "g"
    for i in range(3):
        write_image(gallery / f"{i:05d}_c001_000000_0.jpg", size=(32, 32), seed=i)
    png_bomb(gallery / "00007_c002_bomb.png")
    os.mkfifo(gallery / "00008_c002_pipe.jpg")
    eps_as_jpg(gallery / "00009_c002_eps.jpg")
    write_image(gallery / ("1" * 30 + "_c001_0.jpg"), size=(32, 32), seed=7)
    odd = os.fsencode(gallery) + b"/00010_c001_\xff\xfe.jpg"
    with open(odd, "wb") as f:
        f.write((gallery / "00000_c001_000000_0.jpg").read_bytes())
    out = tmp_path / "idx"
    result = _within(120, lambda: cli("index", "build", gallery, "--checkpoint", ckpt, "-o", out))
    result = result["value"]
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped 3 unreadable image(s)" in text
    flat = "".join(text.split())
    for why in ("EPSformat", "notaregularfile", "toolarge(50000x50000pixels"):
        assert why in flat, why
    assert "skipped 1 image(s) whose file name is not valid UTF-8" in text
    assert "00010_c001_\\xff\\xfe.jpg" in "".join(text.split())
    idx = sjdl.Gallery.open(out, ckpt)
    assert len(idx) == 4  # 3 images + the one with a 30-digit number (no id)
    rows = {os.path.basename(r["path"]): r for r in idx._index.rows}
    assert rows["1" * 30 + "_c001_0.jpg"]["pid"] == -1
    assert not (tmp_path / "idx.writing").exists()


def test_search_and_defog_say_too_large_in_one_line(model, tmp_path):
    _, ckpt = model
    gallery = tmp_path / "g"
    for i in range(2):
        write_image(gallery / f"{i:05d}_c001_000000_0.jpg", size=(32, 32), seed=i)
    idx = tmp_path / "idx"
    assert cli("index", "build", gallery, "--checkpoint", ckpt, "-o", idx).exit_code == 0
    bomb = png_bomb(tmp_path / "q.png")
    r = cli("search", bomb, "--index", idx, "--png", tmp_path / "r.png")
    one_line_error(r, f"{bomb}: too large (50000 x 50000 pixels")
    inputs = tmp_path / "in"
    write_image(inputs / "ok.jpg", size=(32, 32))
    png_bomb(inputs / "bomb.png")
    os.mkfifo(inputs / "pipe.jpg")
    r = _within(60, lambda: cli("defog", inputs, "-o", tmp_path / "out", "--method", "dcp"))
    r = r["value"]
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "skipped 2 unreadable image(s)" in text and "too large (50000 x 50000" in text
    assert "pipe.jpg: not a regular file" in text
    assert (tmp_path / "out" / "ok.jpg").is_file()
