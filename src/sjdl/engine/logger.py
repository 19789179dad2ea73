"""Run logging: a plain-text log, metrics.jsonl (one JSON object per point), TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


class RunLogger:
    """Only the main rank writes; every method is a no-op elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.run_dir = run_dir
        self.writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.text = (run_dir / "train.log").open("a", buffering=1)
        self.jsonl = (run_dir / "metrics.jsonl").open("a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self.line("tensorboard is not installed: TensorBoard logs are off")

    def line(self, message: str) -> None:
        if self.enabled:
            self.text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def scalars(self, step: int, values: dict, kind: str = "train") -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, int | float):
                    self.writer.add_scalar(f"{kind}/{k}", v, step)

    def images(self, step: int, tag: str, images: torch.Tensor) -> None:
        """(N, 3, H, W) in [0, 1] as one TensorBoard image grid (rows of images)."""
        if self.enabled and self.writer is not None:
            self.writer.add_images(tag, images.clamp(0, 1).float().cpu(), step)

    def close(self) -> None:
        if self.enabled:
            self.text.close()
            self.jsonl.close()
            if self.writer is not None:
                self.writer.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
