"""Edges found on 2026-12-02 (tenth session): training data that change under a run, and the
command's own output failing."""

from __future__ import annotations

import os
import shutil
import subprocess

import torch

from .cases_runtime import _epochs_logged, _wait_for
from .world import (
    ENV,
    Outcome,
    Run,
    Snapshot,
    World,
    case,
    refused,
    succeeded,
    wait_all,
    write_image,
)


def _rename_identity(data, old: int, new: int) -> None:
    for kind in ("train_foggy", "train_clear"):
        for f in (data / "FVRID_syn" / kind).glob(f"{old:05d}_*"):
            f.rename(f.with_name(f"{new:05d}" + f.name[5:]))


@case("interruption")
def case_resume_after_training_ids_renamed(w):
    """Same number of identities, another one among them: the classifier's rows would each
    stand for another vehicle; before 2026-12-02 the resume went on without a word."""
    data = w.new("renamed-data")
    shutil.copytree(w.base_data, data)
    run = w.new("renamed-run")
    r = w.sjdl(*w.train_args(data), "-o", run, setup=True)
    if r.rc != 0:
        return Outcome("not-run", f"training failed: {r.error_line()}")
    _rename_identity(data, 9, 11)
    intact = Snapshot(run / "checkpoints")
    r = w.sjdl("train", "--resume", run, "train.epochs=2")
    return refused(r, names=(run.name, "training data"), intact=intact)


@case("interruption")
def case_training_images_vanish_mid_run(w):
    """The data folder goes (a dropped mount, a moved folder) after epoch 1: before 2026-12-02
    every later epoch ran on empty batches (loss nan, 0 images/s) and the run said 'done'."""
    data, run, log = w.new("vanishing-data"), w.new("vanishing-run"), w.new("vanishing.log")
    shutil.copytree(w.base_data, data)
    args = w.train_args(data, "train.epochs=30", "data.cache_mb=0")
    proc = w.start(*args, "-o", run, log=log)
    reached = _wait_for(lambda: len(_epochs_logged(run)) >= 1, proc, w.timeout, 0.02)
    if reached:
        shutil.rmtree(data / "FVRID_syn" / "train_foggy")
    codes = wait_all([proc], w.timeout)
    text = log.read_text()
    if codes is None:
        return Outcome("hang", f"training still running {w.timeout:.0f} s after the data went")
    if not reached:
        return Outcome("not-run", f"epoch 1 not reached: {text[-200:]}")
    ran = Run(args, codes[0], text, "", 0)
    if ran.traceback:
        return Outcome("traceback", ran.last_line())
    if codes[0] == 0:
        return Outcome("silent-wrong", f"exit 0 without its images: {ran.last_line()}")
    state = torch.load(run / "checkpoints" / "last_state.pt", weights_only=True)
    detail = f"{ran.error_line()} [state at epoch {state['epoch']}]"
    if not ran.said("none of the training images"):
        detail += " [does not say the images are gone]"
    return Outcome("clear-error", detail)


@case("outputs")
def case_output_onto_a_full_disk(w: World):
    """``sjdl info > file`` on a full disk (here /dev/full): before 2026-12-02 a traceback."""
    if not os.path.exists("/dev/full"):
        return Outcome("not-run", "no /dev/full on this system")
    w.calls.append("sjdl info > /dev/full")
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [*w.command, "info"],
            cwd=w.root,
            env={**os.environ, **ENV},
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=w.timeout,
        )
    ran = Run(["info"], p.returncode, "", p.stderr, 0)
    if ran.traceback:
        return Outcome("traceback", ran.last_line("err"))
    if p.returncode == 0:
        return Outcome("silent-wrong", "exit 0 though nothing could be written")
    return Outcome("clear-error", ran.error_line())


@case("interruption")
def case_data_worker_killed_then_resume(w):
    """The out-of-memory killer takes a data-loading worker (here ``kill -9``): before
    2026-12-02 a traceback, and the epoch's steps since the last save were lost."""
    import signal

    run, log = w.new("worker-run"), w.new("worker.log")
    args = w.train_args(w.base_data, "train.epochs=30", "data.workers=1")
    proc = w.start(*args, "-o", run, log=log)
    reached = _wait_for(lambda: len(_epochs_logged(run)) >= 1, proc, w.timeout, 0.02)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    for pid in map(int, children.stdout.split()):
        os.kill(pid, signal.SIGKILL)
    codes = wait_all([proc], w.timeout)
    text = log.read_text()
    if codes is None:
        return Outcome("hang", f"training still running {w.timeout:.0f} s after its worker died")
    if not reached or not children.stdout.split():
        return Outcome("not-run", f"no worker to kill in epoch 2: {text[-200:]}")
    ran = Run(args, codes[0], text, "", 0)
    if ran.traceback:
        return Outcome("traceback", ran.last_line())
    if codes[0] == 0:
        return Outcome("silent-wrong", "exit 0 though its data worker was killed")
    if not ran.said("resumable checkpoint written"):
        return Outcome("data-loss", f"exit {codes[0]}, no resumable checkpoint: {ran.error_line()}")
    again = w.sjdl("train", "--resume", run, "train.epochs=3")
    if again.rc != 0:
        return Outcome("clear-error", f"UNEXPECTED: the resume failed: {again.error_line()}")
    return Outcome("clear-error", ran.error_line() + " [resumed to epoch 3]")


@case("interruption")
def case_defog_stopped_then_continue(w):
    """A defog of many images stopped half-way: before 2026-12-02 a rerun was refused and
    only ``--overwrite`` (all over again) went on; ``--continue`` restores the rest."""
    import signal

    src, out, log = w.new("many-foggy"), w.new("many-out"), w.new("defog.log")
    n = 300
    for i in range(n):
        write_image(src / f"img{i:03d}.jpg", size=(96, 128), seed=i)
    proc = w.start("defog", src, "-o", out, "--method", "dcp", log=log)
    _wait_for(lambda: len(list(out.glob("*.jpg"))) >= 20, proc, w.timeout, 0.01)
    proc.send_signal(signal.SIGINT)
    codes = wait_all([proc], w.timeout)
    if codes is None:
        return Outcome("hang", "defog still running after Ctrl-C")
    first = sorted(out.glob("*.jpg"))
    if codes[0] == 0 or len(first) >= n:
        return Outcome("not-run", f"defog finished before the Ctrl-C ({len(first)} images)")
    stopped = Run([], codes[0], log.read_text(), "", 0)
    if stopped.traceback:
        return Outcome("traceback", stopped.last_line())
    kept = Snapshot(*first)
    r = w.sjdl("defog", src, "-o", out, "--method", "dcp", "--continue")

    def check():
        done = len(list(out.glob("*.jpg")))
        said = r.said(f"wrote {n - len(first)} restored image(s)")
        return None if done == n and said else f"{done} of {n} images, said: {r.last_line()}"

    return succeeded(r, check, intact=kept)
