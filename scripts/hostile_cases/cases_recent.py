"""Surfaces added after the first probes: the demo's output folder and rows, ``defog
--reference``, the study's lists (a value named twice would count twice in its statistics)."""

from __future__ import annotations

import time

from .world import (
    DEFOG_RECORD,
    Outcome,
    Snapshot,
    World,
    case,
    refused,
    refused_or_ok,
    succeeded,
    wait_all,
    write_image,
)


def _folder_of_mine(w: World):
    mine = w.new("my-results")
    (mine / "data").mkdir(parents=True)
    (mine / "report.html").write_text("my own report")
    (mine / "data" / "notes.txt").write_text("keep")
    return mine


@case("overwrite")
def case_demo_into_folder_of_other_files(w):
    mine = _folder_of_mine(w)
    intact = Snapshot(mine)
    r = w.sjdl("demo", "--quick", "-o", mine)
    return refused(r, names=(mine.name,), intact=intact, leftovers=(mine / ".sjdl-owner.json",))


@case("overwrite")
def case_demo_output_is_a_file(w):
    f = w.new("results.txt")
    f.write_text("mine")
    intact = Snapshot(f)
    return refused(w.sjdl("demo", "--quick", "-o", f), names=(f.name,), intact=intact)


@case("inputs")
def case_demo_unknown_row(w):
    out = w.new("demo-parent") / "demo"
    r = w.sjdl("demo", "--quick", "--rows", "baseline,SJDL", "-o", out)
    return refused(r, names=("SJDL",), leftovers=(out,))


def _foggy(w: World, n: int = 2):
    src = w.new("foggy")
    for i in range(n):
        write_image(src / f"img{i}.jpg", size=(40, 56), seed=i)
    return src


@case("inputs")
def case_defog_reference_missing(w):
    src, out = _foggy(w), w.new("parent") / "restored"
    r = w.sjdl("defog", src, "--method", "dcp", "-o", out, "--reference", w.root / "clear-typo")
    return refused(r, names=("clear-typo",), leftovers=(out,))


@case("inputs")
def case_defog_reference_other_size(w):
    src, out, ref = _foggy(w), w.new("restored"), w.new("clear")
    write_image(ref / "img0.jpg", size=(20, 28), seed=5)  # half the foggy image's size

    def check():
        made = sorted(p.name for p in out.iterdir() if p.name != DEFOG_RECORD)
        if made != ["img0.jpg", "img1.jpg"]:
            return f"expected both restorations, got {made}"
        if not r.said("img0.jpg: 28x20, its foggy image is 56x40"):
            return "the reference of another size is not named"
        if not r.said("1 of 2 input(s) have no reference image"):
            return "the input without a reference is not counted"
        return None

    r = w.sjdl("defog", src, "--method", "dcp", "-o", out, "--reference", ref)
    return refused_or_ok(r, check)


@case("inputs")
def case_study_seed_given_twice(w):
    out = w.new("study-parent") / "study"
    r = w.sjdl("study", "--quick", "--seeds", "0,0", "-o", out)
    return refused(r, names=("--seeds",), leftovers=(out,))


@case("state")
def case_demo_rerun_over_a_damaged_finished_record(w):
    """A rerun reads each row's finished.json: a damaged one means "train again"."""
    out = w.new("demo-parent") / "demo"
    first = w.sjdl("demo", "--quick", "--rows", "baseline", "-o", out, setup=True)
    if first.rc != 0:
        return refused(first)
    (out / "baseline" / "finished.json").write_text("[1, 2]")  # was a traceback

    def check():
        if not second.said("not reused: its finished.json is damaged"):
            return "the damaged record is not named"
        return None

    second = w.sjdl("demo", "--quick", "--rows", "baseline", "-o", out)
    return succeeded(second, check)


@case("concurrency")
def case_fog_two_at_once_into_one_folder(w):
    """Two ``fog`` runs into one destination, the second started while the first writes: one
    output must survive intact (the manifest describes exactly its files), and a run that
    says "wrote" must find its own set there."""
    src = w.new("clear-src")
    for i in range(4):
        write_image(src / f"{i:04d}_c001_{i}.jpg", size=(32, 48), seed=i)
    dst = w.new("fog-parent") / "fogged"
    logs = [w.new(f"fog{i}.log") for i in range(2)]
    first = w.start("fog", src, dst, "--copies", "1500", "--workers", "1", log=logs[0])
    stage = dst / ".sjdl-fog-partial"
    end = time.monotonic() + w.timeout
    while not stage.is_dir() and first.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    second = w.start("fog", src, dst, "--copies", "2", "--seed", "5", log=logs[1])
    codes = wait_all([first, second], w.timeout)
    if codes is None:
        return Outcome("hang", f"two fog runs still running after {w.timeout:.0f} s")
    texts = [f.read_text() for f in logs]
    if any("Traceback (most recent call last)" in t for t in texts):
        return Outcome("traceback", next(t for t in texts if "Traceback" in t).splitlines()[-1])
    if codes[0] != 0:  # it was alone when it started: the second must not break it
        return Outcome("clear-error", f"UNEXPECTED: the first run failed: {texts[0][-200:]}")
    refusals = ("being written by PID", "pass --overwrite")
    if codes[1] != 0 and not any(r in " ".join(texts[1].split()) for r in refusals):
        return Outcome("clear-error", f"UNEXPECTED: exit {codes[1]}: {texts[1][-200:]}")
    manifest = dst / "fog_manifest.csv"
    listed = len(manifest.read_text().splitlines()) - 1 if manifest.is_file() else 0
    wrote = [c == 0 for c in codes]
    expected = 6000 if wrote[0] and not wrote[1] else 8 if wrote[1] else 0
    detail = f"exits {codes}, manifest lists {listed} (expected {expected})"
    if wrote[0] and wrote[1]:
        return Outcome("data-loss", detail + ": both said 'wrote'; one set replaced the other")
    if listed != expected:
        return Outcome("data-loss", detail)
    return Outcome("ok", detail + ("; the second refused" if codes[1] == 2 else ""))


@case("config")
def case_yaml_key_given_twice(w):
    """A second ``train:`` block: YAML keeps the last, so ``lr: 0.5`` was silently dropped."""
    cfg = w.new("twice.yaml")
    cfg.write_text("train:\n  lr: 0.5\ntrain:\n  epochs: 2\n")
    return refused(w.sjdl("config", "--config", cfg), names=("line 3", "'train'"))


@case("inputs")
def case_defog_long_file_name(w):
    """A valid 250-character file name: its temporary's name exceeded 255 bytes."""
    src, out = w.new("long-src"), w.new("long-out")
    name = "a" * 246 + ".jpg"
    write_image(src / name, size=(40, 56), seed=1)

    def check():
        return None if (out / name).is_file() else "the restored image is missing"

    return succeeded(w.sjdl("defog", src, "--method", "dcp", "-o", out), check)


@case("overwrite")
def case_eval_into_an_earlier_evaluation(w):
    """``eval -o`` onto a folder holding a metrics.json replaced it without a word."""
    out = w.new("eval-earlier")
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("my earlier results")
    intact = Snapshot(out / "metrics.json")
    r = w.sjdl("eval", "--checkpoint", w.ckpt, f"data.root={w.base_data}", "-o", out)
    return refused(r, names=("metrics.json", "--overwrite"), intact=intact)
