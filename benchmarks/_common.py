"""Shared header for benchmark output: machine, date, versions."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch


def header(title: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"# {title}\n# {datetime.date.today()} | {cpu} | {os.cpu_count()} cores | {dev} | "
        f"torch {torch.__version__} | threads {torch.get_num_threads()}"
    )


def short_head() -> str:
    """This checkout's commit, abbreviated (empty outside a git checkout)."""
    repo = Path(__file__).resolve().parents[1]
    cmd = ["git", "rev-parse", "--short", "HEAD"]
    return subprocess.run(cmd, cwd=repo, text=True, capture_output=True).stdout.strip()
