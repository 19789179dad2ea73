"""The storage room (issue 17): atomic writes with unique temporaries, folder publication that
survives a crash, the advisory lock, ownership markers, fingerprints."""

import json
import os
import subprocess
import sys
import threading

import pytest

from sjdl.storage import (
    MARKER,
    LockedError,
    OwnershipError,
    StorageError,
    WriteError,
    atomic_path,
    check_not_input,
    check_replaceable,
    folder_lock,
    lock_path,
    new_stage,
    publish,
    recover,
    save_npz,
    sha256_file,
    sha256_json,
    stale_temporaries,
    write_atomic,
    write_marker,
)
from sjdl.storage import atomic as atomic_mod
from sjdl.storage.publish import old_path, stage_path


def test_two_concurrent_writers_of_one_path_never_share_a_temporary(tmp_path, monkeypatch):
    """Both writers are inside their write at once (a barrier); each has its own temporary,
    and the file ends up as one of the two whole contents, with no temporary left."""
    target = tmp_path / "metrics.csv"
    barrier = threading.Barrier(2, timeout=10)
    temps: list[str] = []

    def slow_write(f, data):
        temps.append(f.name)
        f.write(data[:10])
        barrier.wait()  # the other writer has its temporary open now
        f.write(data[10:])

    monkeypatch.setattr(atomic_mod, "_write_all", slow_write)
    contents = [b"a" * 5000, b"b" * 7000]
    errors = []

    def run(data):
        try:
            write_atomic(target, data)
        except Exception as e:  # pragma: no cover - the defect
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(temps)) == 2  # the old fixed NAME.tmp made both write into one file
    assert target.read_bytes() in contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "w.bin"
    write_atomic(target, b"old")

    def full(f, data):
        f.write(data[:2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_mod, "_write_all", full)
    with pytest.raises(WriteError, match=f"no space left on device .* writing {target}"):
        write_atomic(target, b"new content")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:  # a writer that fails
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


def test_callback_writers_keep_the_name_and_text_is_utf8(tmp_path):
    import numpy as np

    save_npz(tmp_path / "q.npz", AP=np.arange(3.0))
    assert np.load(tmp_path / "q.npz")["AP"].tolist() == [0.0, 1.0, 2.0]
    write_atomic(tmp_path / "t.md", "é\n")
    assert (tmp_path / "t.md").read_bytes() == "é\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.npz", "t.md"]


@pytest.mark.parametrize("name", ["a" * 251 + ".jpg", "é" * 125 + "x.png"])
def test_a_long_valid_file_name_is_written(tmp_path, name):
    """A 255-byte file name is valid, but NAME.<pid>-<random>.tmp was not: `defog` of such an
    image failed with "File name too long" (found by a probe)."""
    assert len(os.fsencode(name)) == 255
    seen = []
    with atomic_path(tmp_path / name) as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"x")
    assert (tmp_path / name).read_bytes() == b"x" and os.listdir(tmp_path) == [name]
    assert len(os.fsencode(seen[0])) <= 255 and seen[0].endswith(".tmp")


def test_stale_temporaries_of_dead_writers_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    names = ("last.safetensors",)
    legacy = tmp_path / "last.safetensors.tmp"
    of_dead = tmp_path / f"last.safetensors.{dead}-0123abcd.tmp"
    of_live = tmp_path / f"last.safetensors.{os.getpid()}-0123abcd.tmp"
    other = tmp_path / "mine.tmp"
    for p in (legacy, of_dead, of_live, other):
        p.write_bytes(b"x")
    assert stale_temporaries(tmp_path, names) == sorted([legacy, of_dead])


HOLD = """
import sys, time
from sjdl.storage import folder_lock
with folder_lock(sys.argv[1], "the run"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_held_lock_names_the_holder_pid_also_through_a_symlink(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    link = tmp_path / "link"
    link.symlink_to(run)
    assert lock_path(link) == lock_path(run)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(link)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for path in (run, link):  # the old lock took link.lock for the link: two writers
            busy = pytest.raises(LockedError, match=f"being written by PID {holder.pid}")
            with busy, folder_lock(path, "the run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # released by the kernel when its holder died; re-entry by one thread, through the link
    with folder_lock(run), folder_lock(link):
        pass
    assert not lock_path(run).exists()


def test_a_lock_path_that_is_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "idx.lock").mkdir()
    refused = pytest.raises(StorageError, match=r"idx\.lock is a folder, not a lock file")
    with refused, folder_lock(tmp_path / "idx"):
        pass


def test_ownership_refuses_foreign_files_and_other_kinds(tmp_path):
    own = ("index.faiss", "manifest.json")
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "index.faiss").write_bytes(b"v")
    check_replaceable(folder, "index", own, "sjdl index build")  # only its own files
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(OwnershipError, match="notes.txt.*deletes only its own files"):
        check_replaceable(folder, "index", own, "sjdl index build")
    (folder / "notes.txt").unlink()
    write_marker(folder, "run", "sjdl train")
    assert json.loads((folder / MARKER).read_text())["kind"] == "run"
    with pytest.raises(OwnershipError, match=r"another sjdl command \(run, not index\)"):
        check_replaceable(folder, "index", own, "sjdl index build")


def test_an_output_is_never_an_input(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"w")
    (tmp_path / "alias.safetensors").symlink_to(ckpt)
    for out in (ckpt, tmp_path / "alias.safetensors", tmp_path):
        with pytest.raises(OwnershipError, match="an input of this command"):
            check_not_input(out, [ckpt])
    check_not_input(tmp_path / "m.onnx", [ckpt])


def _folder(path, text):
    path.mkdir()
    (path / "data.txt").write_text(text)
    return path


def _complete(folder):
    return (folder / "data.txt").is_file()


def test_publish_replaces_and_fsyncs_leaving_no_stage_or_old(tmp_path):
    target = _folder(tmp_path / "idx", "v1")
    stage = new_stage(target)
    (stage / "data.txt").write_text("v2")
    publish(stage, target)
    assert (target / "data.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


@pytest.mark.parametrize(
    "state, expect",
    [
        ("between_renames", "v2"),  # the old save deleted NAME.old here: all data lost
        ("stage_unfinished", "v1"),
        ("after_renames", "v2"),
        ("before_renames", "v1"),
    ],
)
def test_a_crash_at_any_point_of_a_save_leaves_one_complete_copy(tmp_path, state, expect):
    target = tmp_path / "idx"
    if state == "between_renames":
        _folder(old_path(target), "v1")
        _folder(stage_path(target), "v2")
    elif state == "stage_unfinished":
        _folder(old_path(target), "v1")
        stage_path(target).mkdir()
    elif state == "after_renames":
        _folder(old_path(target), "v1")
        _folder(target, "v2")
    else:
        _folder(target, "v1")
        _folder(stage_path(target), "v2")
    assert recover(target, _complete)
    assert (target / "data.txt").read_text() == expect
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert recover(target, _complete) is None


def test_fingerprints(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha256_json({"a": 1, "b": [2]}) == sha256_json({"b": [2], "a": 1})
    assert sha256_json({"metric": "cosine"}) != sha256_json({"metric": "euclidean"})
