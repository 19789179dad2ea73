"""Hostile-but-fair inputs to export / index / search / defog (issue 10): nothing lost,
nothing silent, one-line errors that name the file."""

import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.retrieval import GalleryIndex, IndexError_, defog_dcp, defog_firm, export_onnx

from .conftest import write_image
from .test_deploy import _checkpoint

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _said(result, text):
    """``text`` in the command's output, ignoring where the console wrapped lines."""
    return "".join(text.split()) in "".join(result.output.split())


def _build(gallery, ckpt, out, *extra):
    return _run("index", "build", gallery, "--checkpoint", ckpt, "-o", out, *extra)


# --- item 1: index build -o never deletes what OUT held, nor the inputs --------------------


def test_index_build_refuses_non_empty_folder_and_never_deletes_inputs(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    gallery = fvrid / "FVRID_syn" / "gallery_foggy"
    images = sorted(p.name for p in gallery.iterdir())
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    r = _build(gallery, ckpt, out)
    assert r.exit_code == 2 and "not an sjdl index" in r.stderr
    assert (out / "precious.txt").read_text() == "keep me"
    for extra in ([], ["--overwrite"]):  # -o = the gallery folder itself: never
        r = _build(gallery, ckpt, gallery, *extra)
        assert r.exit_code == 2 and "an input of this command" in r.stderr
        assert sorted(p.name for p in gallery.iterdir()) == images
    r = _build(gallery, ckpt, tmp_path, "--overwrite")  # a folder holding the checkpoint
    assert r.exit_code == 2 and ckpt.is_file()
    idx = tmp_path / "idx"
    assert _build(gallery, ckpt, idx).exit_code == 0
    r = _build(gallery, ckpt, idx)  # an existing index: refused without --overwrite
    assert r.exit_code == 2 and "existing index of 4 images" in r.stderr
    assert _build(gallery, ckpt, idx, "--overwrite").exit_code == 0
    r = _build(gallery, ckpt, out, "--overwrite")  # --overwrite replaces an index only
    assert r.exit_code == 2 and "not an sjdl index" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    (idx / "notes.txt").write_text("mine")  # an index with a foreign file: refused too
    r = _build(gallery, ckpt, idx, "--overwrite")
    assert r.exit_code == 2 and "notes.txt" in r.stderr and "deletes only its own" in r.stderr
    assert (idx / "notes.txt").read_text() == "mine"
    assert GalleryIndex.load(idx).manifest["count"] == 4


# --- item 4: two writers on one index --------------------------------------------------------


HOLD_LOCK = """
import sys, time
from sjdl.retrieval import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_concurrent_index_add_is_refused_with_the_writer_pid(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    syn = fvrid / "FVRID_syn"
    idx = tmp_path / "idx"
    assert _build(syn / "gallery_foggy", ckpt, idx).exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(idx)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = _run("index", "add", idx, syn / "query_foggy")
        assert r.exit_code == 2
        assert f"being written by PID {holder.pid}" in r.stderr
        assert GalleryIndex.load(idx).manifest["count"] == 4  # untouched
    finally:
        holder.kill()  # kill -9: the kernel releases the lock, nothing is stale
        holder.wait()
    r = _run("index", "add", idx, syn / "query_foggy")
    assert r.exit_code == 0, r.output
    assert GalleryIndex.load(idx).manifest["count"] == 6
    assert not (tmp_path / "idx.lock").exists()


# --- item 11: adding images already in the index ---------------------------------------------


def test_index_add_skips_images_already_in_the_index(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    syn = fvrid / "FVRID_syn"
    idx = tmp_path / "idx"
    assert _build(syn / "gallery_foggy", ckpt, idx).exit_code == 0
    r = _run("index", "add", idx, syn / "gallery_foggy")
    assert r.exit_code == 0 and _said(r, "skipped 4 image(s) already in the index")
    assert _said(r, "nothing new")
    r = _run("index", "add", idx, syn / "gallery_foggy", syn / "query_foggy")
    assert r.exit_code == 0 and _said(r, "skipped 4 image(s) already in the index")
    index = GalleryIndex.load(idx)
    paths = [row["path"] for row in index.rows]
    assert len(paths) == 6 and len(set(paths)) == 6
    with pytest.raises(IndexError_, match="already in the index"):
        index.add(np.zeros((1, index.manifest["dim"]), np.float32), [(paths[0], 1, 0)])


# --- item 17: empty index, symlink loop, export -o DIR ---------------------------------------


def test_search_on_an_empty_index_is_a_clear_error(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    idx = tmp_path / "idx"
    assert _build(fvrid / "FVRID_syn" / "gallery_foggy", ckpt, idx).exit_code == 0
    full = GalleryIndex.load(idx)
    empty = GalleryIndex.create(full.manifest["dim"], full.manifest["fingerprint"])
    empty.manifest["checkpoint"] = full.manifest["checkpoint"]
    empty.save(tmp_path / "empty")
    query = next((fvrid / "FVRID_syn" / "query_foggy").iterdir())
    r = _run("search", query, "--index", tmp_path / "empty")
    assert r.exit_code == 2 and "the index is empty" in r.stderr
    with pytest.raises(IndexError_, match="empty"):
        empty.search(np.zeros((1, full.manifest["dim"]), np.float32))


def test_self_referencing_symlink_in_a_gallery_is_skipped_and_named(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for f in (fvrid / "FVRID_syn" / "gallery_foggy").iterdir():
        (gallery / f.name).write_bytes(f.read_bytes())
    os.symlink("loop.jpg", gallery / "loop.jpg")
    r = _build(gallery, ckpt, tmp_path / "idx")
    assert r.exit_code == 0, r.output
    assert _said(r, "skipped 1 unreadable") and _said(r, "loop.jpg")
    assert GalleryIndex.load(tmp_path / "idx").manifest["count"] == 4


def test_export_to_an_existing_folder_is_refused_and_leaves_no_tmp(tmp_path):
    ckpt, model = _checkpoint(tmp_path)
    folder = tmp_path / "exports"
    folder.mkdir()
    r = _run("export", "--checkpoint", ckpt, "-o", folder)
    assert r.exit_code == 2 and "is a folder" in r.stderr
    assert not list(tmp_path.glob("*.tmp")) and not list(folder.iterdir())


def test_failed_export_removes_its_temporary_file(tmp_path, monkeypatch):
    _, model = _checkpoint(tmp_path)

    def broken(net, args, path, **kw):
        with open(path, "wb") as f:
            f.write(b"half an onnx file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", broken)
    from sjdl.storage import WriteError

    with pytest.raises(WriteError, match="no space left on device"):  # one line, named
        export_onnx(model, tmp_path / "m.onnx", (64, 32))
    assert not list(tmp_path.glob("m.onnx*"))


# --- R10: the ONNX restoration output is clamped like sjdl defog -----------------------------


def test_onnx_restoration_is_clamped_like_defog(tmp_path):
    _, model = _checkpoint(tmp_path, "t", 0, "model.firm.output=tanh")
    x = torch.rand(2, 3, 64, 32)
    raw = model.restore(x)[1]
    assert raw.min() < 0 or raw.max() > 1  # the tanh head leaves [0, 1] (the defect)
    path = export_onnx(model, tmp_path / "r.onnx", (64, 32), restoration=True)
    out = ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})[0]
    assert out.min() >= 0 and out.max() <= 1
    assert np.abs(out - defog_firm(model, x).numpy()).max() < 1e-4


# --- item 18: errors that name the file ------------------------------------------------------


def test_non_integer_pid_in_metadata_names_file_and_line(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    idx = tmp_path / "idx"
    assert _build(fvrid / "FVRID_syn" / "gallery_foggy", ckpt, idx).exit_code == 0
    meta = idx / "metadata.csv"
    lines = meta.read_text().splitlines()
    cells = lines[2].split(",")
    cells[2] = "abc"
    lines[2] = ",".join(cells)
    meta.write_text("\n".join(lines) + "\n")
    query = next((fvrid / "FVRID_syn" / "query_foggy").iterdir())
    r = _run("search", query, "--index", idx)
    assert r.exit_code == 2
    assert "metadata.csv line 3: pid 'abc' is not an integer" in r.stderr


def test_non_image_query_names_the_file(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    idx = tmp_path / "idx"
    assert _build(fvrid / "FVRID_syn" / "gallery_foggy", ckpt, idx).exit_code == 0
    query = tmp_path / "notes.jpg"
    query.write_text("not an image")
    r = _run("search", query, "--index", idx)
    assert r.exit_code == 2 and "notes.jpg: cannot read image" in r.stderr


# --- items 3, 14: defog paths and unreadable images -----------------------------------------


def _foggy_tree(root):
    write_image(root / "a" / "x.jpg", seed=1)
    write_image(root / "b" / "x.jpg", seed=2)
    write_image(root / "b" / "y.png", seed=3)
    return root


def test_defog_refuses_output_equal_to_input(tmp_path):
    src = _foggy_tree(tmp_path / "in")
    before = {p: p.read_bytes() for p in src.rglob("*.*")}
    r = _run("defog", src / "a", "-o", src / "a", "--method", "dcp", "--overwrite")
    assert r.exit_code == 2 and "is the input folder" in r.stderr
    r = _run("defog", src / "a" / "x.jpg", "-o", src / "a", "--method", "dcp", "--overwrite")
    assert r.exit_code == 2 and "would overwrite the input" in r.stderr
    assert {p: p.read_bytes() for p in src.rglob("*.*")} == before


def test_defog_keeps_relative_paths_refuses_collisions_and_reruns(tmp_path):
    src = _foggy_tree(tmp_path / "in")
    out = tmp_path / "out"
    r = _run("defog", src, "-o", out, "--method", "dcp")
    assert r.exit_code == 0 and _said(r, "wrote 3 restored")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.*")) == [
        ".sjdl-defog.json",  # how they were made, for --continue
        "a/x.jpg",
        "b/x.jpg",
        "b/y.png",
    ]
    r = _run("defog", src / "a", src / "b", "-o", tmp_path / "o2", "--method", "dcp")
    assert r.exit_code == 2 and "would both be written to" in r.stderr
    assert not (tmp_path / "o2").exists()
    first = (out / "a" / "x.jpg").read_bytes()
    (out / "a" / "x.jpg").write_bytes(b"edited by hand")
    r = _run("defog", src, "-o", out, "--method", "dcp")  # a second run: refused
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    assert (out / "a" / "x.jpg").read_bytes() == b"edited by hand"
    r = _run("defog", src, "-o", out, "--method", "dcp", "--overwrite")
    assert r.exit_code == 0 and (out / "a" / "x.jpg").read_bytes() == first


def test_defog_skips_unreadable_images_and_reports_them(tmp_path):
    src = _foggy_tree(tmp_path / "in")
    (src / "a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    r = _run("defog", src, "-o", tmp_path / "out", "--method", "dcp")
    assert r.exit_code == 0, r.output
    assert _said(r, "skipped 1 unreadable image(s)") and _said(r, "broken.jpg")
    assert _said(r, "wrote 3 restored")
    assert len([p for p in (tmp_path / "out").rglob("*.*") if p.suffix != ".json"]) == 3
    assert not list((tmp_path / "out").rglob("*.tmp"))
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "z.jpg").write_text("no")
    r = _run("defog", only_bad, "-o", tmp_path / "o3", "--method", "dcp")
    assert r.exit_code == 2 and "none of the 1 image(s) could be read" in r.stderr


# --- item 20: large images -------------------------------------------------------------------


def test_guided_filter_matches_kornia_and_does_not_depend_on_radius_cost():
    from kornia.filters import guided_blur

    from sjdl.retrieval.defog import guided_filter

    guide, src = torch.rand(1, 1, 48, 40), torch.rand(1, 1, 48, 40)
    for r in (2, 7, 19):
        ref = guided_blur(guide, src, 2 * r + 1, 1e-3)
        assert (guided_filter(guide, src, r, 1e-3) - ref).abs().max() < 1e-5
    x = torch.rand(1, 1, 1024, 1024)
    times = []
    for r in (4, 300):  # a box filter via kernels costs ~r^2 (or r) per pixel
        t = time.perf_counter()
        guided_filter(x, x, r, 1e-3)
        times.append(time.perf_counter() - t)
    assert times[1] < 4 * times[0] + 0.5


def test_dcp_on_a_large_image_is_fast():
    img = torch.rand(1, 3, 2000, 2000)
    t = time.perf_counter()
    out = defog_dcp(img)
    assert time.perf_counter() - t < 30  # old: guided filter with a 201 x 201 box, minutes
    assert out.shape == img.shape


class _LocalModel(torch.nn.Module):
    """A stand-in FIRM that only looks at a 3 x 3 neighbourhood (plus a pointwise curve)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def restore(self, x):
        self.calls += 1
        blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # zero padding: tile edges differ
        return None, (1 - blurred) ** 2


def test_firm_tiles_cover_the_image_and_blend_without_seams():
    y, x = torch.meshgrid(torch.linspace(0, 1, 200), torch.linspace(0, 1, 170), indexing="ij")
    img = torch.stack([y, x, (x + y) / 2])[None] * 0.8 + 0.1  # smooth, so seams would show
    model = _LocalModel()
    whole = defog_firm(model, img, tile=1024)
    tiled = defog_firm(model, img, tile=96, overlap=32)
    assert model.calls == 1 + 3 * 3  # the whole image once, then 3 x 3 tiles
    assert tiled.shape == img.shape
    # the stand-in's zero padding marks the image border differently (padded vs not): compare
    # inside it; edge effects at tile borders are blended away (their weights are tiny)
    tiled, whole = tiled[..., 1:-1, 1:-1], whole[..., 1:-1, 1:-1]
    assert (tiled - whole).abs().max() < 0.01
    for t in (tiled, whole):
        t.dx = (t[..., 1:] - t[..., :-1]).abs().max()
        t.dy = (t[..., 1:, :] - t[..., :-1, :]).abs().max()
    assert tiled.dx < 1.5 * whole.dx and tiled.dy < 1.5 * whole.dy  # no seams


def test_firm_tiles_a_real_model(tmp_path):
    _, model = _checkpoint(tmp_path)
    img = torch.rand(1, 3, 150, 100)
    tiled = defog_firm(model.eval(), img, tile=64, overlap=32)
    assert tiled.shape == img.shape and tiled.min() >= 0 and tiled.max() <= 1
    with pytest.raises(ValueError, match="multiples of 32"):
        defog_firm(model, img, tile=100, overlap=30)


def test_export_never_replaces_an_existing_file_without_overwrite(tmp_path):
    from .conftest import cli, one_line_error

    ckpt = _checkpoint(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    one_line_error(cli("export", "--checkpoint", ckpt, "-o", notes), "--overwrite")
    assert notes.read_text() == "keep me"
