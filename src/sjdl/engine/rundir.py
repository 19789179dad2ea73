"""The run folder: refuse to replace a run by accident, clear it on --overwrite, clean up
temporaries that a killed save left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..storage import stale_temporaries

FINISHED = "finished.json"  # written when a training ran to its end (experiments.runs)
RUN_FILES = ("config.yaml", "train.log", "metrics.jsonl", FINISHED)
CHECKPOINT_FILES = ("best.safetensors", "last.safetensors", "last_state.pt")


class RunExistsError(FileExistsError):
    """The output folder already holds a run and neither resume nor overwrite was asked."""


def run_files(run_dir: Path) -> list[str]:
    """The files of an sjdl run found in ``run_dir`` (relative names)."""
    found = [n for n in RUN_FILES if (run_dir / n).exists()]
    found += [
        f"checkpoints/{n}" for n in CHECKPOINT_FILES if (run_dir / "checkpoints" / n).exists()
    ]
    if (run_dir / "tensorboard").is_dir():
        found.append("tensorboard/")
    return found


def check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds a run unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir}: is a file, expected a run folder")
    found = run_files(run_dir)
    if found and not overwrite:
        raise RunExistsError(
            f"{run_dir}: already holds a run ({', '.join(found[:4])}); continue it with "
            f"--resume {run_dir}, or pass --overwrite to replace it"
        )


def clear_run(run_dir: Path) -> list[str]:
    """Remove the files of an earlier run (only sjdl's own names); return what went."""
    found = run_files(run_dir)
    for name in found:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return found


def remove_stale_temporaries(ckpt_dir: Path) -> list[Path]:
    """Delete temporaries of our checkpoint names left by a killed save (the run's lock is
    held, so no live writer of this run owns them)."""
    stale = stale_temporaries(ckpt_dir, CHECKPOINT_FILES)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
