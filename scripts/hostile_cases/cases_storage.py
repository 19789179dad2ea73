"""Storage: what ``--overwrite`` may delete, writes over an input, two commands on one run or
study folder, a typo that replaced a committed table, damage to an index's metadata (issue 17,
items 1, 3, 4, 5, 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .world import ENV, Outcome, Run, Snapshot, World, case, refused

REPO = Path(__file__).resolve().parents[2]


def _gallery(w: World) -> Path:
    return w.base_data / "FVRID_syn" / "gallery_foggy"


def _query(w: World) -> Path:
    return next(iter(sorted((w.base_data / "FVRID_syn" / "query_foggy").iterdir())))


# --- item 1: index build --overwrite deletes only an index's own files -----------------------


@case("storage")
def case_index_build_overwrite_keeps_foreign_files(w):
    idx = w.copy_index()
    (idx / "notes.txt").write_text("my notes on this gallery\n")
    intact = Snapshot(idx)
    r = w.sjdl("index", "build", _gallery(w), "--checkpoint", w.ckpt, "-o", idx, "--overwrite")
    return refused(r, names=("notes.txt",), intact=intact)


@case("storage")
def case_index_build_overwrite_onto_a_run(w):
    run = w.copy_run()
    intact = Snapshot(run)
    r = w.sjdl("index", "build", _gallery(w), "--checkpoint", w.ckpt, "-o", run, "--overwrite")
    return refused(r, names=(run.name,), intact=intact)


# --- item 3: export never writes over its input -----------------------------------------------


@case("storage")
def case_export_over_its_checkpoint(w):
    run = w.copy_run()
    ckpt = run / "checkpoints" / "last.safetensors"
    intact = Snapshot(run)
    r = w.sjdl("export", "--checkpoint", ckpt, "-o", ckpt, "--overwrite")
    return refused(r, names=(ckpt.name,), intact=intact)


# --- item 4: a run or study folder in use is locked --------------------------------------------


def _wait_for(cond, proc, secs: float) -> bool:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _while_training(w: World, second: list, what: str) -> Outcome:
    """Start a long tiny training into a run folder; once it trains, run ``second`` (RUN in
    it stands for the folder): it must stop with the first one's PID and delete nothing."""
    data = w.data()
    run = w.new("run")
    log = w.new("first.log")
    proc = w.start(*w.train_args(data, "train.epochs=1000"), "-o", run, log=log)
    try:
        started = _wait_for(lambda: (run / "config.yaml").is_file(), proc, w.timeout)
        if not started:
            return Outcome("clear-error", f"UNEXPECTED: the first training did not start ({what})")
        args = [run if a == "RUN" else a for a in second]
        r = w.sjdl(*args)
        still = (run / "config.yaml").is_file() and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        proc.log_file.close()
    if not still:
        return Outcome("data-loss", f"{what}: the running run lost its files or was stopped")
    out = refused(r, names=(f"PID {proc.pid}",))
    if out.outcome == "silent-wrong":
        return Outcome("silent-wrong", f"{what}: exit 0 while the run was training")
    return out


@case("storage")
def case_train_into_a_run_that_trains(w):
    return _while_training(w, [*w.train_args(w.base_data), "-o", "RUN"], "a second train -o")


@case("storage")
def case_resume_a_run_that_trains(w):
    return _while_training(w, ["train", "--resume", "RUN"], "--resume while it trains")


@case("storage")
def case_overwrite_a_run_that_trains(w):
    args = [*w.train_args(w.base_data), "-o", "RUN", "--overwrite"]
    return _while_training(w, args, "-o --overwrite while it trains")


@case("storage")
def case_two_studies_in_one_folder(w):
    study = w.new("study")
    log = w.new("first.log")
    proc = w.start("study", "-o", study, "--quick", log=log)
    lock = study.with_name(study.name + ".lock")
    try:
        if not _wait_for(lock.exists, proc, w.timeout):
            return Outcome("clear-error", "UNEXPECTED: the first study did not start")
        r = w.sjdl("study", "-o", study, "--quick")
    finally:
        proc.kill()
        proc.wait()
        proc.log_file.close()
    return refused(r, names=(f"PID {proc.pid}",))


# --- item 5: a typo in calibrate_eq11 --only -------------------------------------------------


@case("storage")
def case_calibrate_only_typo(w):
    out = w.new("calibration")
    argv = [sys.executable, str(REPO / "benchmarks" / "calibrate_eq11.py"), "--only", "typo"]
    argv += ["--out", str(out)]
    w.calls.append(" ".join(["python", *argv[1:]]).replace(str(w.root), "$TMP"))
    t0 = time.monotonic()
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO / "src")}
    try:
        p = subprocess.run(
            argv, cwd=w.root, env=env, capture_output=True, text=True, timeout=w.timeout
        )
        rc, so, se = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, so, se = None, "", ""
    r = Run(argv, rc, so, se, time.monotonic() - t0)
    w.runs.append(r)
    return refused(r, names=("typo",), leftovers=(out,))


# --- item 14: damage to an index's metadata or manifest ----------------------------------------


@case("storage")
def case_index_metadata_rows_swapped(w):
    idx = w.copy_index()
    meta = idx / "metadata.csv"
    lines = meta.read_text().splitlines()
    a, b = lines[1].split(","), lines[2].split(",")
    a[1:4], b[1:4] = b[1:4], a[1:4]  # two images' paths and ids swapped, row numbers kept
    lines[1], lines[2] = ",".join(a), ",".join(b)
    meta.write_text("\n".join(lines) + "\n")
    r = w.sjdl("search", _query(w), "--index", idx, "--png", w.new("r.png"))
    return refused(r, names=("metadata.csv",))


@case("storage")
def case_index_manifest_metric_changed(w):
    idx = w.copy_index()
    m = json.loads((idx / "manifest.json").read_text())
    m["metric"] = "cosine" if m.get("metric") != "cosine" else "euclidean"
    (idx / "manifest.json").write_text(json.dumps(m, indent=2))
    r = w.sjdl("search", _query(w), "--index", idx, "--png", w.new("r.png"))
    return refused(r, names=("manifest.json",))
