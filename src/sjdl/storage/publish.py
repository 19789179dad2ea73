"""Atomic publication of a folder: build it in ``NAME.writing``, then swap it in.

``publish`` fsyncs every file of the stage and the stage itself, renames the current
``NAME`` to ``NAME.old``, renames the stage to ``NAME`` (fsyncing the parent after each
rename) and only then removes ``NAME.old``. A crash at any point leaves one complete copy
findable, which ``recover`` puts back under ``NAME``:

- ``NAME`` exists: it is complete; a leftover stage (an unfinished save) and ``NAME.old``
  (an already replaced copy) are removed.
- ``NAME`` is missing and the stage is complete (``complete(stage)``): the crash came between
  the two renames of a finished save; the stage becomes ``NAME``.
- otherwise ``NAME.old`` (if any) is put back.

Callers hold the folder's lock (``lock.folder_lock``) around both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .atomic import fsync_dir, fsync_file, write_error

STAGE, OLD = ".writing", ".old"


def stage_path(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(target.name + STAGE)


def old_path(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(target.name + OLD)


def new_stage(target: str | Path) -> Path:
    """An empty stage folder beside ``target`` (a leftover one is removed first)."""
    stage = stage_path(target)
    try:
        stage.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as e:
        raise write_error(stage, e) from None
    return stage


def fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def publish(stage: str | Path, target: str | Path) -> Path:
    """Swap the finished ``stage`` in as ``target`` (see the module text)."""
    stage, target = Path(stage), Path(target)
    old = old_path(target)
    parent = target.absolute().parent
    try:
        fsync_tree(stage)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)  # safe: target is a complete copy
            os.replace(target, old)
            fsync_dir(parent)
        os.replace(stage, target)
        fsync_dir(parent)
    except OSError as e:
        raise write_error(target, e) from None
    shutil.rmtree(old, ignore_errors=True)
    return target


def recover(target: str | Path, complete: Callable[[Path], bool]) -> str | None:
    """Put the one complete copy of ``target`` back in place after a crash; returns what it
    did (None when there was nothing to do)."""
    target = Path(target)
    stage, old = stage_path(target), old_path(target)
    if not stage.exists() and not old.exists():
        return None
    if target.exists():
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        return f"removed the leftovers of an interrupted save beside {target}"
    if stage.is_dir() and complete(stage):
        os.replace(stage, target)
        fsync_dir(target.absolute().parent)
        shutil.rmtree(old, ignore_errors=True)
        return f"{target}: finished an interrupted save (its new copy was complete)"
    if old.is_dir():
        os.replace(old, target)
        fsync_dir(target.absolute().parent)
        shutil.rmtree(stage, ignore_errors=True)
        return f"{target}: restored the copy from before an interrupted save"
    shutil.rmtree(stage, ignore_errors=True)
    return f"removed the unfinished first save of {target}"
