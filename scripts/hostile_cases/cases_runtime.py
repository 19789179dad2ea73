"""Index abuse (two writers at once, duplicates, an empty or damaged index, IVF on too few
images), interruptions (kill -9 during a checkpoint save, Ctrl-C, a write that fails), and
evaluation with a config that conflicts with the checkpoint."""

from __future__ import annotations

import csv
import json
import re
import signal
import time
from pathlib import Path

from .cases_checkpoint import rewrite_checkpoint
from .world import (
    Outcome,
    Run,
    Snapshot,
    World,
    case,
    refused,
    refused_or_ok,
    succeeded,
    wait_all,
    write_image,
)


def rows(index: Path) -> list[str]:
    with (index / "metadata.csv").open(newline="") as f:
        return [r["path"] for r in csv.DictReader(f)]


def _new_images(w: World, n: int, first_pid: int) -> Path:
    folder = w.new("new-images")
    for i in range(n):
        write_image(folder / f"{first_pid + i:05d}_c002_000000_0.jpg", seed=first_pid + i)
    return folder


@case("concurrency")
def case_index_add_two_at_once(w):
    idx = w.copy_index()
    base = len(rows(idx))
    a, b = _new_images(w, 20, 500), _new_images(w, 20, 600)
    files = [w.new(f"add{i}.log") for i in range(2)]
    procs = [w.start("index", "add", idx, f, log=log) for f, log in zip((a, b), files, strict=True)]
    codes = wait_all(procs, w.timeout)
    if codes is None:
        return Outcome("hang", f"two index add still running after {w.timeout:.0f} s")
    logs = [f.read_text() for f in files]
    for code, log in zip(codes, logs, strict=True):
        if "Traceback (most recent call last)" in log:
            return Outcome("traceback", log.strip().splitlines()[-1])
        if code != 0 and "being written by PID" not in log:
            return Outcome("clear-error", f"UNEXPECTED: exit {code}: {log.strip()[-200:]}")
    expected = base + 20 * sum(c == 0 for c in codes)
    got = len(rows(idx))
    detail = f"exits {codes}, {got} rows (expected {expected})"
    if got != expected:
        return Outcome("data-loss", detail + ": an exit-0 writer's rows are missing")
    return Outcome("ok", detail + ("; one refused: being written by PID" if 2 in codes else ""))


@case("duplicates")
def case_index_add_same_folder_twice(w):
    idx, new = w.copy_index(), _new_images(w, 3, 700)
    base = len(rows(idx))
    first = w.sjdl("index", "add", idx, new)
    if first.rc != 0:
        return succeeded(first)
    r = w.sjdl("index", "add", idx, new)

    def check():
        got = rows(idx)
        if len(got) != base + 3 or len(set(got)) != len(got):
            return f"{len(got)} rows ({len(set(got))} distinct) after adding 3 images twice"
        return None if r.said("already in the index") else "the duplicates were not mentioned"

    return succeeded(r, check)


@case("duplicates")
def case_index_add_gallery_it_was_built_from(w):
    idx = w.copy_index()
    before = rows(idx)
    r = w.sjdl("index", "add", idx, w.base_data / "FVRID_syn" / "gallery_foggy")

    def check():
        got = rows(idx)
        return None if got == before else f"{len(before)} rows became {len(got)}"

    return succeeded(r, check)


def _empty_index(w: World) -> Path:
    """An index with no rows (the CLI refuses to build one; an older version, a script or
    a crash could leave one): the base index's manifest with every row removed."""
    from sjdl.retrieval import GalleryIndex

    full = GalleryIndex.load(w.base_index())
    m = full.manifest
    empty = GalleryIndex.create(m["dim"], m["fingerprint"], m["kind"], m["metric"], m["config"])
    empty.manifest["checkpoint"] = m.get("checkpoint")
    return empty.save(w.new("empty-index"))


@case("index")
def case_search_empty_index(w):
    idx = _empty_index(w)
    q = w.base_data / "FVRID_syn" / "query_foggy" / "00100_c001_000000_0.jpg"
    r = w.sjdl("search", q, "--index", idx)
    return refused(r, names=(idx.name,))


@case("index")
def case_search_index_damaged_metadata(w):
    idx = w.copy_index()
    text = (idx / "metadata.csv").read_text().splitlines()
    cells = text[1].split(",")
    cells[2] = "twelve"  # row, path, pid, ...
    (idx / "metadata.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    q = w.base_data / "FVRID_syn" / "query_foggy" / "00100_c001_000000_0.jpg"
    r = w.sjdl("search", q, "--index", idx)
    return refused(r, names=("metadata.csv",))


@case("index")
def case_search_index_without_faiss_file(w):
    idx = w.copy_index()
    (idx / "index.faiss").unlink()
    q = w.base_data / "FVRID_syn" / "query_foggy" / "00100_c001_000000_0.jpg"
    r = w.sjdl("search", q, "--index", idx)
    return refused(r, names=("index.faiss",))


@case("index")
def case_search_with_other_checkpoint(w):
    def nudge(tensors):
        k = next(k for k, v in sorted(tensors.items()) if v.is_floating_point())
        tensors[k] = tensors[k] + 0.01

    other = rewrite_checkpoint(w, "other.safetensors", tensor_change=nudge)
    q = w.base_data / "FVRID_syn" / "query_foggy" / "00100_c001_000000_0.jpg"
    r = w.sjdl("search", q, "--index", w.base_index(), "--checkpoint", other)
    return refused(r, names=("fingerprint",))


@case("index")
def case_index_build_ivf_on_four_images(w):
    out = w.new("index")
    gallery = w.base_data / "FVRID_syn" / "gallery_foggy"
    r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", out, "--kind", "ivf")

    def check():
        n = len(rows(out))
        return None if n == 4 else f"{n} rows for 4 images"

    return refused_or_ok(r, check)


@case("index")
def case_index_build_unknown_kind(w):
    out = w.new("index")
    gallery = w.base_data / "FVRID_syn" / "gallery_foggy"
    r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", out, "--kind", "annoy")
    return refused(r, names=("annoy",), leftovers=(out,))


# --- interruptions ----------------------------------------------------------------------


def _wait_for(pred, proc, limit: float, poll: float = 0.002) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


def _epochs_logged(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "epoch":
            out.append(int(rec["epoch"]))
    return out


def _resume_check(w: World, run: Path, epochs: int, how: str, *extra: str) -> Outcome:
    r = w.sjdl("train", "--resume", run, *extra, timeout=300)

    def check():
        if not r.said(f"done: {epochs} epochs") or _epochs_logged(run)[-1:] != [epochs]:
            return f"resume did not finish {epochs} epochs: {r.last_line('out')}"
        stray = [p.name for p in (run / "checkpoints").glob("*.tmp")]
        return f"stale temporaries left: {stray}" if stray else None

    res = succeeded(r, check)
    found = re.search(r"resumed from \S+ after (epoch \d+(?: step \d+ of epoch \d+)?)", r.out)
    where = found.group(1) if found else "(no 'resumed from' line)"
    res.detail = f"{how}; resumed after {where}; {res.detail}"
    return res


def _kill_during_save(w: World, target: str) -> Outcome:
    """Train 3 epochs; kill -9 while ``target``.tmp is being written in epoch 2; resume."""
    run, log = w.new("run"), w.new("train.log")
    args = w.train_args(w.base_data, "train.epochs=3")
    proc = w.start(*args, "-o", run, log=log)
    ckpt = run / "checkpoints"
    try:
        seen = _wait_for(lambda: (ckpt / "last.safetensors").is_file(), proc, 600, 0.01)
        caught = seen and _wait_for(lambda: (ckpt / f"{target}.tmp").exists(), proc, 300)
        still_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.log_file.close()
    if not seen:
        why = "no checkpoint after 600 s" if still_running else "training ended early"
        return Outcome("not-run", f"{why}: {log.read_text()[-200:]}")
    how = f"killed while writing {target}.tmp" if caught else "kill missed the save window"
    return _resume_check(w, run, 3, how)


@case("interruption")
def case_kill9_during_state_save_then_resume(w):
    return _kill_during_save(w, "last_state.pt")


@case("interruption")
def case_kill9_during_weights_save_then_resume(w):
    return _kill_during_save(w, "last.safetensors")


@case("interruption")
def case_ctrl_c_in_epoch_3_then_resume(w):
    return _stopped_in_epoch_3(w, signal.SIGINT, "Ctrl-C")


@case("interruption")
def case_kill_sigterm_in_epoch_3_then_resume(w):
    """``kill PID`` (a scheduler, ``timeout``): before 2026-12-02 the steps of epoch 3 were lost."""
    return _stopped_in_epoch_3(w, signal.SIGTERM, "SIGTERM")


def _stopped_in_epoch_3(w, sig, name: str):
    run, log = w.new("run"), w.new("train.log")
    args = w.train_args(w.base_data, "train.epochs=4", "train.max_steps_per_epoch=8")
    proc = w.start(*args, "-o", run, log=log)
    weights = run / "checkpoints" / "last.safetensors"
    try:
        reached = _wait_for(lambda: len(_epochs_logged(run)) >= 2, proc, 600, 0.02)
        logged = time.time()
        # epoch 2's checkpoints are written (weights last): then a few steps into epoch 3
        reached = reached and _wait_for(
            lambda: weights.is_file() and weights.stat().st_mtime >= logged - 0.05, proc, 300
        )
        still_running = proc.poll() is None
        time.sleep(0.5)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_file.close()
    text = log.read_text()
    interrupted = Run(args, code, text, "", 0)
    if not reached:
        why = "epoch 3 not reached in time" if still_running else "training ended early"
        return Outcome("not-run", f"{why}: {text[-200:]}")
    if interrupted.traceback:
        return Outcome("traceback", f"on {name}: {interrupted.last_line()}")
    if code == 0:
        return Outcome("silent-wrong", f"exit 0 after {name}")
    if not interrupted.said("resumable checkpoint written"):  # the epoch's steps are lost
        return Outcome("data-loss", f"{name}: exit {code}, no resumable checkpoint written")
    return _resume_check(w, run, 4, f"{name} exit {code}, resumable")


@case("interruption")
def case_extend_finished_run(w):
    run = w.copy_run()
    return _resume_check(w, run, 2, "1-epoch run resumed with train.epochs=2", "train.epochs=2")


@case("disk-full")
def case_checkpoint_write_fails_midway(w):
    """Extend a run with a 60 MB file-size limit: the 141 MB training state cannot be written.
    Expect a one-line error naming the file, the epoch-1 checkpoints intact, no temporaries."""
    run = w.copy_run()
    ckpt = run / "checkpoints"
    intact = Snapshot(ckpt / "last_state.pt", ckpt / "last.safetensors")
    r = w.sjdl("train", "--resume", run, "train.epochs=2", max_file_mb=60)
    res = refused(r, names=("last_state.pt",), intact=intact)
    stray = [p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")]
    if res.outcome == "clear-error" and stray:
        res.detail += f" [left behind {stray[0]}]"
    return res


# --- evaluation against the checkpoint's own settings -----------------------------------


def _eval_override_refused(w, override: str):
    """``sjdl eval`` of the world's checkpoint with an override its settings contradict."""
    key = override.split("=", 1)[0]
    out = w.new("eval")
    r = w.sjdl("eval", "--checkpoint", w.ckpt, f"data.root={w.base_data}", override, "-o", out)
    return refused(r, names=(key,))


@case("eval-conflict")
def case_eval_size_override_conflicts(w):
    return _eval_override_refused(w, "data.size_test=[64,64]")


@case("eval-conflict")
def case_eval_model_override_conflicts(w):
    return _eval_override_refused(w, "model.backbone=resnet50")


@case("eval-conflict")
def case_eval_config_file_conflicts(w):
    """A config file written for another model/size: the checkpoint's settings must win,
    be announced, and be recorded in metrics.json with the checkpoint."""
    cfg, out = w.new("other.yaml"), w.new("eval")
    cfg.write_text(
        f"model: {{backbone: resnet50}}\ndata: {{root: {w.base_data}, size_test: [64, 64], "
        "workers: 0}\ntest: {feature: pre_bn}\n"
    )
    r = w.sjdl("eval", "--checkpoint", w.ckpt, "-c", cfg, "-o", out)

    def check():
        m = json.loads((out / "metrics.json").read_text())
        wrong = {
            k: m.get(k)
            for k, v in (("size_test", [32, 32]), ("backbone", "resnet18"))
            if m.get(k) != v
        }
        if wrong:
            return f"metrics.json records {wrong}: the config won over the checkpoint"
        if not m.get("checkpoint") or not m.get("checkpoint_sha256"):
            return "metrics.json does not record the checkpoint and its fingerprint"
        if m.get("feature") != "pre_bn":
            return f"test.feature=pre_bn asked, metrics.json says {m.get('feature')}"
        return None if r.said("size_test") else "the replaced settings were not announced"

    return succeeded(r, check, Snapshot(w.ckpt))


@case("eval-conflict")
def case_eval_flip_and_rerank_from_config_file(w):
    """test.flip / test.rerank set in the config file (not as flags) are used and recorded."""
    cfg, out = w.new("flip.yaml"), w.new("eval")
    cfg.write_text(
        f"data: {{root: {w.base_data}, workers: 0}}\ntest: {{flip: true, rerank: true}}\n"
    )
    r = w.sjdl("eval", "--checkpoint", w.ckpt, "-c", cfg, "-o", out)

    def check():
        m = json.loads((out / "metrics.json").read_text())
        got = {k: m.get(k) for k in ("flip", "rerank")}
        return None if got == {"flip": True, "rerank": True} else f"metrics.json: {got}"

    return succeeded(r, check)


@case("config")
def case_train_fog_on_the_fly_with_real_set(w):
    """data.fog_on_the_fly=true with method sjdl (real batches have no clear image)."""
    out = w.new("run")
    r = w.sjdl(*w.train_args(w.base_data), "data.fog_on_the_fly=true", "-o", out)
    return succeeded(
        r,
        lambda: (
            None
            if (out / "checkpoints" / "last.safetensors").is_file()
            else "no checkpoint written"
        ),
    )
