"""Bad data: missing folders, names that do not parse, unpaired images, unreadable /
truncated / non-image / 16-bit images, symlink loops, bad depth maps."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .world import (
    DEFOG_RECORD,
    Snapshot,
    World,
    case,
    make_fvrid,
    refused,
    refused_or_ok,
    succeeded,
    write_image,
)

Q = "FVRID_syn/query_foggy"
Q_CLEAR = "FVRID_syn/query_clear"


def truncate(path: Path, keep: int = 200) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _bad_query(w: World, kind: str):
    """Data with one extra query (pid 101, camera 1) that cannot be read: truncated JPEG,
    a text file named .jpg, or a symlink to itself. Its clear partner is fine."""
    data = w.data(f"q-{kind}")
    name = "00101_c001_000009_0.jpg"
    write_image(data / Q_CLEAR / name, seed=99)
    bad = data / Q / name
    if kind == "truncated":
        truncate(write_image(bad, seed=99))
    elif kind == "text":
        bad.write_text("this is not an image\n")
    else:
        bad.symlink_to(name)  # points at itself: opening it loops
    return data, bad


def _eval(w: World, data: Path, *extra):
    out = w.new("eval")
    return w.sjdl("eval", "--checkpoint", w.ckpt, f"data.root={data}", *extra, "-o", out), out


def _reports_unreadable(w: World, kind: str):
    data, bad = _bad_query(w, kind)
    r, out = _eval(w, data)

    def check():
        listed = json.loads((out / "metrics.json").read_text())["unreadable_images"]
        if len(listed) != 1 or bad.name not in listed[0]:
            return f"metrics.json unreadable_images = {listed}, expected [{bad.name}]"
        if not r.said("1 unreadable") or not r.said(bad.name):
            return f"the summary does not name the unreadable query {bad.name}"
        return None

    return succeeded(r, check)


@case("data", fast=True)
def case_train_root_missing(w):
    out, root = w.new("run"), w.new("nowhere")
    r = w.sjdl(*w.train_args(root), "-o", out)
    return refused(r, names=(root.name,), leftovers=(out,))


@case("data")
def case_train_root_unset(w):
    out = w.new("run")
    r = w.sjdl("train", *w.train_args(w.new("x"))[2:], "-o", out)
    return refused(r, names=("data.root",), leftovers=(out,))


@case("data")
def case_train_split_folder_missing(w):
    data, out = w.data(), w.new("run")
    shutil.rmtree(data / Q)
    r = w.sjdl(*w.train_args(data), "-o", out)
    return refused(r, names=("query_foggy",), leftovers=(out,))


@case("data")
def case_train_unparsable_names(w):
    data, out = w.data(), w.new("run")
    for kind in ("foggy", "clear"):
        write_image(data / f"FVRID_syn/train_{kind}/holiday_photo.jpg")
    r = w.sjdl(*w.train_args(data), "-o", out)
    return refused(r, names=("holiday_photo.jpg",), leftovers=(out,))


@case("data")
def case_train_foggy_without_clear(w):
    data, out = w.data(), w.new("run")
    write_image(data / "FVRID_syn/train_foggy/00003_c001_000077_0.jpg")
    r = w.sjdl(*w.train_args(data), "-o", out)
    return refused(r, names=("00003_c001_000077_0.jpg",), leftovers=(out,))


def _train_with_truncated_image(w: World, *extra):
    """One truncated clear training image; 2 ids x 2 images, so the one P x K batch of the
    epoch holds every training image."""
    data, out = make_fvrid(w.new("data"), train_ids=(3, 7), per_id=2), w.new("run")
    bad = truncate(sorted((data / "FVRID_syn/train_clear").iterdir())[1])
    r = w.sjdl(*w.train_args(data), *extra, "-o", out)
    return r, bad


@case("data")
def case_train_truncated_image_skipped(w):
    r, bad = _train_with_truncated_image(w)
    named = f"train_clear/{bad.name}"
    return succeeded(r, lambda: None if r.said(named) else f"{named} skipped silently")


@case("data")
def case_train_strict_truncated_image(w):
    r, bad = _train_with_truncated_image(w, "data.strict=true")
    return refused(r, names=(bad.name,))


@case("data")
def case_train_num_ids_above_identities(w):
    data, out = w.data(), w.new("run")
    r = w.sjdl(*w.train_args(data), "data.num_ids=50", "-o", out)
    return refused(r, names=("data.num_ids",), leftovers=(out,))


@case("data")
def case_real_batch_above_real_images(w):
    """8 unlabelled real images, random real batches of 100."""
    data, out = w.data(), w.new("run")
    args = ("data.real_labelled=false", "data.real_batch_size=100")
    r = w.sjdl(*w.train_args(data), *args, "-o", out)
    return refused(r, names=("data.real_batch_size",), leftovers=(out / "checkpoints",))


@case("data")
def case_eval_truncated_query(w):
    return _reports_unreadable(w, "truncated")


@case("data")
def case_eval_non_image_query(w):
    return _reports_unreadable(w, "text")


@case("data")
def case_eval_symlink_loop_query(w):
    return _reports_unreadable(w, "loop")


@case("data")
def case_eval_strict_bad_image(w):
    data, bad = _bad_query(w, "truncated")
    r, _ = _eval(w, data, "data.strict=true")
    return refused(r, names=(bad.name,))


@case("data")
def case_eval_all_queries_unreadable(w):
    data = w.data()
    for f in (data / Q).iterdir():
        f.write_text("not an image")
    r, _ = _eval(w, data)
    return refused(r, names=("query",))


def _png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit RGB PNG (Pillow cannot write one), rows filter 0."""
    h, wd, _ = arr.shape
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", wd, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def _defog_16bit(w: World, colour: bool):
    """DCP-defog a 16-bit PNG and its 8-bit twin: the results must agree (not all white)."""
    src = w.new("png16")
    src.mkdir()
    ramp = np.linspace(0.15, 0.85, 48)[None, :, None] * np.ones((40, 1, 3))
    ramp[..., 1] *= 0.9
    if colour:
        _png16(src / "a16.png", np.round(ramp * 65535))
    else:
        Image.fromarray(np.round(ramp[..., 0] * 65535).astype(np.uint16)).save(src / "a16.png")
        ramp[..., 1] = ramp[..., 0]
    eight = ramp if colour else ramp[..., :1].repeat(3, axis=2)
    Image.fromarray(np.round(eight * 255).astype(np.uint8)).save(src / "a8.png")
    out = w.new("defogged")
    r = w.sjdl("defog", src, "--method", "dcp", "-o", out)

    def check():
        a16 = np.asarray(Image.open(out / "a16.png").convert("RGB"), np.float32) / 255
        a8 = np.asarray(Image.open(out / "a8.png").convert("RGB"), np.float32) / 255
        diff = float(np.abs(a16 - a8).mean())
        if diff > 0.03:
            return f"16-bit and 8-bit versions differ by {diff:.3f} (16-bit mean {a16.mean():.2f})"
        return None

    return succeeded(r, check)


@case("data")
def case_defog_16bit_grey_png(w):
    return _defog_16bit(w, colour=False)


@case("data")
def case_defog_16bit_colour_png(w):
    return _defog_16bit(w, colour=True)


@case("data")
def case_defog_skips_unreadable(w):
    src = w.new("foggy")
    for i in range(3):
        write_image(src / f"ok{i}.jpg", seed=i)
    truncate(write_image(src / "broken.jpg", seed=9))
    (src / "notes.png").write_text("not an image")
    out = w.new("restored")
    r = w.sjdl("defog", src, "--method", "dcp", "-o", out)

    def check():
        made = sorted(p.name for p in out.iterdir() if p.name != DEFOG_RECORD)
        if made != ["ok0.jpg", "ok1.jpg", "ok2.jpg"]:
            return f"outputs {made}, expected the 3 readable images"
        if not (r.said("broken.jpg") and r.said("notes.png")):
            return "the unreadable images are not named"
        return None

    return succeeded(r, check)


def _index_rows(index: Path) -> list[str]:
    import csv

    with (index / "metadata.csv").open(newline="") as f:
        return [row["path"] for row in csv.DictReader(f)]


def _gallery_copy(w: World) -> Path:
    gallery = w.new("gallery")
    shutil.copytree(w.base_data / "FVRID_syn" / "gallery_foggy", gallery)
    return gallery


@case("data")
def case_index_build_symlink_self_loop(w):
    gallery = _gallery_copy(w)
    (gallery / "00100_c009_000000_0.jpg").symlink_to("00100_c009_000000_0.jpg")
    out = w.new("index")
    r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", out)

    def check():
        n = len(_index_rows(out))
        return None if n == 4 else f"{n} rows, expected the 4 readable images"

    return refused_or_ok(r, check)


@case("data")
def case_index_build_dir_symlink_loop(w):
    gallery = _gallery_copy(w)
    (gallery / "again").symlink_to(".", target_is_directory=True)
    out = w.new("index")
    r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", out, timeout=60)

    def check():
        rows = _index_rows(out)
        return None if len(rows) == 4 else f"{len(rows)} rows for 4 images (the loop)"

    return refused_or_ok(r, check)


@case("data")
def case_index_build_empty_folder(w):
    gallery, out = w.new("empty"), w.new("index")
    gallery.mkdir()
    r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", out)
    return refused(r, names=(gallery.name,))


def _fog_with_depth(w: World, depth_array, name="car.png", size=(24, 40)):
    src, depth, dst = w.new("clear"), w.new("depth"), w.new("fogged")
    write_image(src / name, size=size)
    depth.mkdir()
    target = depth / (Path(name).stem + ".npy")
    if isinstance(depth_array, bytes):
        target.write_bytes(depth_array)
    else:
        np.save(target, depth_array)
    r = w.sjdl("fog", src, dst, "--depth", depth, "--workers", "1")
    if size_ok(depth_array, size):
        return succeeded(r, lambda: None if r.said("resized") else "the resize was not mentioned")
    return refused(r, names=(target.name,), leftovers=(dst,))


def size_ok(depth_array, size) -> bool:
    """A map of the image's aspect ratio but another size is resized (README), not refused."""
    if isinstance(depth_array, bytes) or depth_array.min() < 0:
        return False
    h, w = depth_array.shape
    return (h, w) != tuple(size) and h * size[1] == w * size[0]


@case("data")
def case_fog_corrupt_npy_depth(w):
    return _fog_with_depth(w, b"\x93NUMPY garbage")


@case("data")
def case_fog_negative_depth(w):
    return _fog_with_depth(w, -np.ones((24, 40), np.float32))


@case("data")
def case_fog_transposed_depth(w):
    return _fog_with_depth(w, np.random.default_rng(0).random((40, 24), np.float32))


@case("data")
def case_fog_depth_other_size_same_aspect(w):
    return _fog_with_depth(w, np.random.default_rng(0).random((12, 20), np.float32))


@case("data")
def case_fog_src_missing(w):
    src, dst = w.new("nowhere"), w.new("fogged")
    r = w.sjdl("fog", src, dst)
    return refused(r, names=(src.name,), leftovers=(dst,))


@case("data")
def case_search_non_image_query(w):
    q = w.new("query.jpg")
    q.write_text("not a picture")
    intact = Snapshot(w.base_index())
    r = w.sjdl("search", q, "--index", w.base_index())
    return refused(r, names=(q.name,), intact=intact)
