"""Overwrite attempts: every command asked to write where something already is. The right
answer is a refusal that leaves what was there untouched (or, where replacing is what the
user asked for, output that is exactly the new result)."""

from __future__ import annotations

import csv
import shutil

from .world import Snapshot, World, case, refused, refused_or_ok, succeeded, write_image


def _gallery(w: World):
    return w.base_data / "FVRID_syn" / "gallery_foggy"


@case("overwrite")
def case_train_into_existing_run(w):
    run = w.copy_run()
    intact = Snapshot(run)
    r = w.sjdl(*w.train_args(w.base_data), "-o", run)
    return refused(r, names=("--resume",), intact=intact)


@case("overwrite")
def case_train_overwrite_keeps_foreign_files(w):
    """--overwrite replaces the run; the user's own files in that folder stay."""
    run = w.copy_run()
    (run / "notes.txt").write_text("my notes on this run\n")
    intact = Snapshot(run / "notes.txt", w.base_data)
    r = w.sjdl(*w.train_args(w.base_data), "-o", run, "--overwrite")

    def check():
        logged = (run / "metrics.jsonl").read_text().splitlines()
        return None if len(logged) == 1 else f"metrics.jsonl has {len(logged)} lines, expected 1"

    return succeeded(r, check, intact)


@case("overwrite")
def case_index_build_into_non_empty_folder(w):
    out = w.new("mine")
    out.mkdir()
    (out / "thesis.txt").write_text("three years of work")
    intact = Snapshot(out, _gallery(w))
    r = w.sjdl("index", "build", _gallery(w), "--checkpoint", w.ckpt, "-o", out)
    return refused(r, names=(out.name,), intact=intact)


@case("overwrite")
def case_index_build_into_gallery_folder(w):
    gallery = w.new("gallery")
    shutil.copytree(_gallery(w), gallery)
    intact = Snapshot(gallery)
    for extra in ([], ["--overwrite"]):
        r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", gallery, *extra)
        res = refused(r, names=(gallery.name,), intact=intact)
        if res.outcome != "clear-error":
            return res
    return res


@case("overwrite")
def case_index_build_into_checkpoint_folder(w):
    run = w.copy_run()
    intact = Snapshot(run)
    ckpt = run / "checkpoints" / "last.safetensors"
    r = w.sjdl(
        "index",
        "build",
        _gallery(w),
        "--checkpoint",
        ckpt,
        "-o",
        run / "checkpoints",
        "--overwrite",
    )
    return refused(r, intact=intact)


@case("overwrite")
def case_index_build_over_existing_index(w):
    idx = w.copy_index()
    intact = Snapshot(idx)
    r = w.sjdl(
        "index",
        "build",
        w.base_data / "FVRID_syn" / "query_foggy",
        "--checkpoint",
        w.ckpt,
        "-o",
        idx,
    )
    return refused(r, names=("--overwrite",), intact=intact)


def _foggy_folder(w: World, n: int = 3):
    src = w.new("foggy")
    for i in range(n):
        write_image(src / f"img{i}.jpg", seed=i)
    return src


@case("overwrite")
def case_defog_output_is_input(w):
    src = _foggy_folder(w)
    intact = Snapshot(src)
    r = w.sjdl("defog", src, "--method", "dcp", "-o", src)
    return refused(r, names=(src.name,), intact=intact)


@case("overwrite")
def case_defog_into_existing_outputs(w):
    src, out = _foggy_folder(w), w.new("restored")
    first = w.sjdl("defog", src, "--method", "dcp", "-o", out)
    if first.rc != 0:
        return succeeded(first)
    intact = Snapshot(out)
    r = w.sjdl("defog", src, "--checkpoint", w.ckpt, "-o", out)
    return refused(r, names=("--overwrite",), intact=intact)


@case("overwrite")
def case_defog_same_names_two_folders(w):
    a, b, out = _foggy_folder(w, 1), _foggy_folder(w, 1), w.new("restored")
    write_image(b / "img0.jpg", seed=42)  # same name, other picture
    r = w.sjdl("defog", a / "img0.jpg", b / "img0.jpg", "--method", "dcp", "-o", out)

    def check():
        made = sorted(p.name for p in out.rglob("*") if p.is_file())
        return None if len(made) == 2 else f"2 inputs gave {len(made)} output(s): {made}"

    return refused_or_ok(r, check)


def _clear_folder(w: World, n: int):
    src = w.new("clear")
    for i in range(n):
        write_image(src / f"{i + 1:05d}_c001_000000_0.jpg", seed=i)
    return src


@case("overwrite")
def case_fog_into_existing_outputs(w):
    src, dst = _clear_folder(w, 3), w.new("fogged")
    first = w.sjdl("fog", src, dst, "--workers", "1")
    if first.rc != 0:
        return succeeded(first)
    intact = Snapshot(dst)
    r = w.sjdl("fog", src, dst, "--workers", "1", "--seed", "7")
    return refused(r, names=("--overwrite",), intact=intact)


@case("overwrite")
def case_fog_overwrite_keeps_no_stale_files(w):
    src, dst = _clear_folder(w, 4), w.new("fogged")
    first = w.sjdl("fog", src, dst, "--workers", "1")
    if first.rc != 0:
        return succeeded(first)
    for f in sorted(src.iterdir())[2:]:
        f.unlink()
    r = w.sjdl("fog", src, dst, "--workers", "1", "--overwrite")

    def check():
        with (dst / "fog_manifest.csv").open(newline="") as f:
            listed = {row["file"].split("/")[-1] for row in csv.DictReader(f)}
        on_disk = {p.name for p in (dst / "train_foggy").iterdir()}
        if on_disk != listed:
            return f"train_foggy holds {sorted(on_disk)}, the manifest lists {sorted(listed)}"
        return None

    return succeeded(r, check)


@case("overwrite")
def case_fog_destination_is_source(w):
    src = _clear_folder(w, 2)
    intact = Snapshot(src)
    r = w.sjdl("fog", src, src, "--workers", "1")

    def check():
        return None  # only the inputs matter here (the snapshot)

    return refused_or_ok(r, check, intact)


@case("overwrite")
def case_export_into_folder(w):
    out = w.new("exports")
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    intact = Snapshot(out)
    r = w.sjdl("export", "--checkpoint", w.ckpt, "-o", out)
    res = refused(r, names=(out.name,), intact=intact)
    stray = [p.name for p in out.parent.glob(f"{out.name}*.tmp")] + [
        p.name for p in out.glob("*.tmp")
    ]
    if res.outcome == "clear-error" and stray:
        res.detail += f" [left behind {stray[0]}]"
    return res


@case("overwrite")
def case_export_over_unrelated_file(w):
    """-o names an existing file that is not an ONNX model (a typo): replacing it loses it."""
    out = w.new("notes.txt")
    out.write_text("my notes\n")
    intact = Snapshot(out)
    r = w.sjdl("export", "--checkpoint", w.ckpt, "-o", out)
    return refused(r, names=(out.name,), intact=intact)


@case("overwrite")
def case_eval_output_is_a_file(w):
    out = w.new("results.txt")
    out.write_text("earlier results\n")
    intact = Snapshot(out)
    r = w.sjdl("eval", "--checkpoint", w.ckpt, f"data.root={w.base_data}", "-o", out)
    return refused(r, names=(out.name,), intact=intact)


@case("overwrite")
def case_index_add_to_missing_index(w):
    idx = w.new("no-index")
    r = w.sjdl("index", "add", idx, _gallery(w))
    return refused(r, names=(idx.name,), leftovers=(idx,))
