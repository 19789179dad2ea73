"""The study's plan and records: its rows, settings, run names, the metrics table and the
per-query arrays (no training, no models: ``study.py`` does the work)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..storage import write_atomic
from .study_data import DENSITIES


class StudyError(ValueError):
    """A study setting is wrong or the output folder holds something else; one line."""


# row -> (training run it uses, defogging applied to the test images before its ReID)
ROWS = {
    "clear_reid": ("clear", None),
    "dcp_reid": ("clear", "dcp"),
    "firm_reid": ("clear", "firm"),
    "baseline": ("baseline", None),
    "jdl": ("jdl", None),
    "sjdl_wo_sc": ("sjdl_wo_sc", None),
    "sjdl": ("sjdl", None),
}
TESTS = ("clear", "foggy")
FIELDS = ["row", "density", "test", "seed", "mAP", "R1", "R5", "mINP", "PSNR", "SSIM"]
FIELDS += ["queries", "train_s", "eval_s"]
# Only for the time-left bar: cost of one training step relative to Baseline's, of one
# validation (per epoch) and of evaluating a row on both test sets, in Baseline steps
# (measured at 96x96 on 2 CPU cores: Baseline 0.24 s/step, JDL 0.72, SJDL 0.81).
STEP_COST = {"clear": 1.0, "baseline": 1.0, "jdl": 3.0, "sjdl_wo_sc": 3.4, "sjdl": 3.4}
VAL_COST, EVAL_COST = 5.0, 16.0


@dataclass
class StudySettings:
    """What a study runs. ``None``: the value of ``configs/demo.yaml`` (with ``overrides``)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int | None = None
    densities: list[str] = field(default_factory=lambda: list(DENSITIES))
    rows: list[str] = field(default_factory=lambda: list(ROWS))
    size: tuple[int, int] | None = None
    test_ids: int = 160
    val_ids: int | None = None
    split_seed: int = 0
    fog_seed: int = 0
    max_steps: int = 0  # per epoch, 0 = full epochs
    overrides: list[str] = field(default_factory=list)
    resamples: int = 2000

    def resolved(self) -> StudySettings:
        """A copy with the ``None`` values taken from the demo config."""
        from ..config import load_config

        base = load_config("demo", self.overrides)
        return replace(
            self,
            epochs=base.train.epochs if self.epochs is None else self.epochs,
            size=tuple(base.data.size_train if self.size is None else self.size),
            val_ids=base.train.val_ids if self.val_ids is None else self.val_ids,
        )

    def fixed(self) -> dict:
        """What every run of one study folder must share (seeds, rows, densities may grow)."""
        d = asdict(self)
        for key in ("seeds", "rows", "densities", "resamples"):
            d.pop(key)
        d["size"] = list(self.size)
        return d

    def check(self) -> None:
        bad = [r for r in self.rows if r not in ROWS]
        bad += [d for d in self.densities if d not in DENSITIES]
        if bad:
            allowed = ", ".join([*ROWS, *DENSITIES])
            raise StudyError(f"unknown row or density {bad[0]!r} (allowed: {allowed})")
        if not self.seeds or not self.rows or not self.densities:
            raise StudyError("a study needs at least one seed, one row and one density")
        bad_size = len(self.size) != 2 or min(self.size) < 32 or any(x % 32 for x in self.size)
        if self.epochs < 1 or bad_size:
            raise StudyError(
                f"epochs >= 1 and image sides that are multiples of 32 (FIRM) needed, got "
                f"{self.epochs} epochs, size {self.size[0]}x{self.size[1]}"
            )


QUICK = StudySettings(
    seeds=[0],
    epochs=1,
    densities=["dense"],
    rows=["dcp_reid", "baseline", "sjdl"],
    size=(64, 32),
    val_ids=10,
    max_steps=2,
    resamples=200,
)


def training_runs(row: str, density: str, seed: int) -> list[tuple[str, str, int]]:
    """The (training, density, seed) runs a row needs; the clear run ignores the density."""
    kind, defog = ROWS[row]
    runs = [(kind, "" if kind == "clear" else density, seed)]
    if defog == "firm":  # the trained FIRM comes from JDL at that density and seed
        runs.append(("jdl", density, seed))
    return runs


def run_name(run: tuple[str, str, int]) -> str:
    kind, density, seed = run
    return f"{kind}-{density}-s{seed}" if density else f"{kind}-s{seed}"


def query_file(out: Path, row: str, density: str, test: str, seed: int) -> Path:
    return out / "per_query" / f"{row}-{density}-{test}-s{seed}.npz"


# -- the metrics table ---------------------------------------------------------------------
def read_table(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_table(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def eval_key(row: str, density: str, test: str, seed) -> tuple[str, str, str, str]:
    return (row, density, test, str(seed))
