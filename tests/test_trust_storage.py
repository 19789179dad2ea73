"""Issue 17, data-loss items through the storage room: index build --overwrite deletes only an
index's own files (1), export never writes over its input (3), run and study folders are
locked (4), calibrate_eq11 --only typo writes nothing (5), the index checksums cover its
metadata and manifest (14), an index save survives a crash at any point (20)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sjdl.retrieval import Gallery, GalleryIndex, IndexError_, fingerprint

from .conftest import cli, one_line_error, tiny_train_config
from .test_deploy import _checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _index(folder, fp="f" * 64, n=3, metric="euclidean"):
    idx = GalleryIndex.create(4, fp, metric=metric)
    idx.add(np.eye(4, dtype=np.float32)[:n], [(f"{i}.jpg", i, 1) for i in range(n)])
    idx.save(folder)
    return idx


# --- item 1: --overwrite replaces an index's own files, nothing else -------------------------


def test_index_build_overwrite_refuses_a_run_folder_and_foreign_files(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    gallery = fvrid / "FVRID_syn" / "gallery_foggy"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: sjdl\n")
    (run / "checkpoints" / "best.safetensors").write_bytes(b"weights")
    r = cli("index", "build", gallery, "--checkpoint", ckpt, "-o", run, "--overwrite")
    one_line_error(r, str(run), "not an sjdl index")
    assert (run / "checkpoints" / "best.safetensors").read_bytes() == b"weights"
    idx = tmp_path / "idx"
    _index(idx)
    (idx / "README.txt").write_text("my notes")
    r = cli("index", "build", gallery, "--checkpoint", ckpt, "-o", idx, "--overwrite")
    one_line_error(r, "README.txt", "deletes only its own files")
    assert (idx / "README.txt").read_text() == "my notes"
    (idx / "README.txt").unlink()
    r = cli("index", "build", gallery, "--checkpoint", ckpt, "-o", idx, "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in idx.iterdir()) == [
        ".sjdl-owner.json",
        "index.faiss",
        "manifest.json",
        "metadata.csv",
    ]


def test_index_add_never_deletes_a_file_dropped_into_the_index(tmp_path):
    idx = tmp_path / "idx"
    g = _index(idx)
    (idx / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        g.save(idx)
    assert (idx / "notes.txt").read_text() == "mine"


# --- item 3: export never writes over an input -----------------------------------------------


def test_export_refuses_to_write_over_its_checkpoint(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    before = ckpt.read_bytes()
    one_line_error(
        cli("export", "--checkpoint", ckpt, "-o", ckpt, "--overwrite"), "an input of this command"
    )
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    best = run / "checkpoints" / "best.safetensors"
    best.write_bytes(before)
    r = cli("export", "--checkpoint", run, "-o", best, "--overwrite")  # via the run folder
    one_line_error(r, str(best), "an input of this command")
    assert ckpt.read_bytes() == before and best.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "w.safetensors"]


# --- item 4: run and study folders are locked ------------------------------------------------

HOLD = """
import sys, time
from sjdl.storage import folder_lock
with folder_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holding(folder, what):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), what], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_train_resume_or_overwrite_on_a_busy_run_stops_with_its_pid(fvrid, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(tiny_train_config(fvrid).to_yaml())
    (run / "checkpoints" / "last.safetensors").write_bytes(b"weights")
    holder = _holding(run, "the run")
    try:
        for args in (
            ["-o", tmp_path / "link"],  # the same folder through a symlink
            ["--resume", run],
            ["-o", run, "--overwrite"],
        ):
            if args[1] == tmp_path / "link":
                (tmp_path / "link").symlink_to(run)
            r = cli("train", *args, f"data.root={fvrid}", "train.epochs=1")
            one_line_error(r, f"being written by PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]


def test_a_second_study_on_a_busy_study_folder_stops_with_its_pid(tmp_path):
    study = tmp_path / "study"
    holder = _holding(study, "the study")
    try:
        r = cli("study", "-o", study, "--quick")
        one_line_error(r, str(study), f"being written by PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert not study.exists()


# --- item 5: a typo in --only writes nothing ---------------------------------------------------


def test_calibrate_only_typo_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "cal"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run(
        [sys.executable, "benchmarks/calibrate_eq11.py", "--only", "typo", "--out", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--only 'typo' matches no variant" in lines[0]
    assert not out.exists()


# --- item 14: the checksums cover the metadata and the manifest --------------------------------


def test_swapped_metadata_rows_are_detected_on_load(tmp_path):
    idx = tmp_path / "idx"
    _index(idx)
    lines = (idx / "metadata.csv").read_text().splitlines()
    a, b = lines[1].split(","), lines[2].split(",")
    a[1:4], b[1:4] = b[1:4], a[1:4]  # paths and ids swapped, row numbers kept
    lines[1], lines[2] = ",".join(a), ",".join(b)
    (idx / "metadata.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(IndexError_, match=r"metadata\.csv: does not match the index's checksum"):
        GalleryIndex.load(idx)


def test_a_changed_manifest_metric_is_detected_on_load(tmp_path):
    idx = tmp_path / "idx"
    _index(idx)
    m = json.loads((idx / "manifest.json").read_text())
    m["metric"] = "cosine"
    (idx / "manifest.json").write_text(json.dumps(m, indent=2))
    with pytest.raises(IndexError_, match=r"manifest\.json: changed after the index was saved"):
        GalleryIndex.load(idx)


# --- item 20: a save survives a crash between its renames; changes are seen by content ---------

CRASH = """
import os, sys
import numpy as np
from sjdl.retrieval import GalleryIndex
idx = GalleryIndex.load(sys.argv[1])
idx.add(np.ones((1, 4), np.float32), [("new.jpg", 9, 1)])
real = os.replace
def replace(src, dst):
    if str(src).endswith(sys.argv[2]):
        os._exit(9)  # killed: no cleanup runs
    real(src, dst)
os.replace = replace
idx.save(sys.argv[1])
"""


@pytest.mark.parametrize("at", [".writing", "idx"])  # between the renames / before them
def test_a_crash_during_an_index_save_never_loses_the_index(tmp_path, at):
    idx = tmp_path / "idx"
    _index(idx)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run([sys.executable, "-c", CRASH, idx, at], env=env, timeout=120)
    assert p.returncode == 9
    assert not idx.exists() or at == "idx"  # the state the old save lost: data in idx.old
    loaded = GalleryIndex.load(idx)  # recovered on the next open
    assert len(loaded.rows) == (4 if at == ".writing" else 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    loaded.add(np.ones((1, 4), np.float32), [("later.jpg", 8, 1)])
    loaded.save(idx)  # the next save keeps everything
    assert len(GalleryIndex.load(idx).rows) == len(loaded.rows)


def test_a_change_keeping_inode_mtime_and_size_is_still_seen(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    idx = tmp_path / "idx"
    _index(idx, fp=fingerprint(ckpt))
    g = Gallery.open(idx, ckpt)
    manifest = idx / "manifest.json"
    st = manifest.stat()
    text = manifest.read_text()
    with manifest.open("r+") as f:  # another writer's same-size, same-mtime rewrite in place
        f.write(text.replace('"generation": 1', '"generation": 7'))
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = manifest.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )
    with pytest.raises(IndexError_, match="changed by another writer"):
        g.save()
