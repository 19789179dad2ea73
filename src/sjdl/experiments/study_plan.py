"""The study's plan and records: its rows, settings, run names, the metrics table and the
per-query arrays (no training, no models: ``study.py`` does the work)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..config import PRESET_VALUES, parse_overrides
from ..data.fog_kinds import UNSEEN_KINDS
from ..storage import write_atomic
from .study_data import DENSITIES


class StudyError(ValueError):
    """A study setting is wrong or the output folder holds something else; one line."""


# training kind -> config overrides (on configs/demo.yaml); "imagenet" trains nothing
AUGMENT_KINDS = ("uniform", "tinted")  # fog augmentation: disjoint from UNSEEN_KINDS
RECIPE = PRESET_VALUES["recommended"]  # the keys of `preset: recommended` (config.py)


def _keys(values: dict) -> list[str]:
    """``{"data.clear_twins": True}`` -> ``["data.clear_twins=true"]`` (override syntax)."""
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()]


# the demo's SJDL row (experiments/demo.py): FIRM's gain and offset at 1/4 resolution, a real
# batch every 5th step
DEMO_SJDL = ["method=sjdl", "model.firm.output=affine", "model.firm.scale=4", "train.real_every=5"]

TRAININGS = {
    "imagenet": [],
    "clear": ["method=baseline"],
    "baseline": ["method=baseline"],
    "baseline_clear": ["method=baseline", "data.clear_twins=true"],
    "baseline_aug": ["method=baseline", f"data.fog_augment=[{','.join(AUGMENT_KINDS)}]"],
    "jdl": ["method=jdl"],
    "sjdl_wo_sc": ["method=sjdl_wo_sc"],
    "sjdl": ["method=sjdl"],
    "sjdl_aug": ["method=sjdl", f"data.fog_augment=[{','.join(AUGMENT_KINDS)}]"],
    # issue-16 variants: embedding consistency with the clear twin, domain-specific BN for the
    # real stream, SJDL with the clear twins as ReID training images
    "baseline_cons": ["method=baseline", "loss.lambda_consistency=1.0"],
    "clear_cons": ["method=baseline", "data.clear_twins=true", "loss.lambda_consistency=1.0"],
    "sjdl_dsbn": ["method=sjdl", "model.dsbn=true"],
    "sjdl_clear": ["method=sjdl", "data.clear_twins=true"],
    # the control of the clear twins' extra steps: their epochs are twice as long
    "baseline_2x": ["method=baseline"],
    # SJDL with the recipe's clear twins and consistency (a candidate for the recipe)
    "sjdl_clear_cons": _keys({**RECIPE, "method": "sjdl"}),
    "recommended": _keys(RECIPE),
    # the training-length question: Baseline at 4x and the recipe at 2x the epochs
    "baseline_4x": ["method=baseline"],
    "recommended_2x": _keys(RECIPE),
    # how much of the restoration gradient reaches CFSM (1 in sjdl): none, or a tenth
    "sjdl_detach": ["method=sjdl", "model.firm.cfsm_grad=0"],
    "sjdl_grad01": ["method=sjdl", "model.firm.cfsm_grad=0.1"],
    # the recipe with each batch holding 8 ids x 2 foggy images and their clear twins (the
    # recipe's 32 images a step, one forward instead of two: data.twins_in_batch, issue 18)
    "recommended_pairs": [*_keys(RECIPE), "data.twins_in_batch=true", "data.num_ids=8"],
    # FIRM predicting a per-pixel gain and offset, at full, 1/2 or 1/4 resolution (issue 18)
    "sjdl_affine": ["method=sjdl", "model.firm.output=affine"],
    "sjdl_affine2": ["method=sjdl", "model.firm.output=affine", "model.firm.scale=2"],
    "sjdl_affine4": ["method=sjdl", "model.firm.output=affine", "model.firm.scale=4"],
    # the same with a real batch every 5th step, as the released code schedules it (issue 18)
    "sjdl_affine4_every5": DEMO_SJDL,
    # and with a lighter FIRM: no ResBlocks in its stages (1 as released, 2 in the paper text)
    "sjdl_affine4_every5_rb0": [*DEMO_SJDL, "model.firm.res_blocks=0"],
    # or FIRM restoring every 2nd training image of a batch only (one per id at K = 2)
    "sjdl_affine4_every5_half": [*DEMO_SJDL, "model.firm.train_stride=2"],
}
# epochs (and the LR schedule in epochs) x this
EPOCH_SCALE = {"baseline_2x": 2, "baseline_4x": 4, "recommended_2x": 2}
# steps per epoch x this: the clear twins join the foggy images as ReID training images
EPOCH_LENGTH = {k: 2 for k, v in TRAININGS.items() if parse_overrides(v).get("data.clear_twins")}
# BatchNorm statistics re-estimated after training (evaluation/adapt.py), on: the synthetic
# training images ("train"), or the unlabelled gallery images of each test set ("gallery")
ADAPT = ("train", "gallery")


def _rows() -> dict[str, tuple[str, str | None, str | None]]:
    """row -> (training kind, defogging before ReID, BN re-estimation or None)."""
    rows = {
        "imagenet": ("imagenet", None, None),
        "clear_reid": ("clear", None, None),
        "dcp_reid": ("clear", "dcp", None),
        "firm_reid": ("clear", "firm", None),
    }
    for kind in TRAININGS:
        if kind not in ("imagenet", "clear"):
            rows[kind] = (kind, None, None)
    for kind in TRAININGS:
        if kind != "clear":
            for src in ADAPT:
                rows[f"{kind}+bn_{src}"] = (kind, None, src)
    return rows


ROWS = _rows()
# chosen on the development split (README "Development split"); the controls baseline_2x,
# baseline_clear and sjdl are --rows away: with them the study takes about 2.5 h on 2 cores
DEFAULT_ROWS = [
    "imagenet",
    "baseline",
    "recommended",
    "baseline+bn_gallery",
    "recommended+bn_gallery",
]
TESTS = ("clear", "foggy", *UNSEEN_KINDS)  # the unseen kinds: fog no training uses
FIELDS = ["row", "density", "test", "seed", "mAP", "R1", "R5", "mINP", "PSNR", "SSIM"]
FIELDS += ["queries", "train_s", "eval_s"]
# restorations further from the clear image than their foggy input, of how many (as counted
# by evaluation.quality.QualityMeter); empty where a row does not restore
FIELDS += ["below_input", "restored"]
# Only for the time-left bar: cost of one training step relative to Baseline's, of one
# validation (per epoch) and of evaluating a row on one test set, in Baseline steps
# (measured at 96x96 on 2 CPU cores: Baseline 0.24 s/step, JDL 0.72, SJDL 0.81).
STEP_COST = {"clear": 1.0, "baseline": 1.0, "baseline_clear": 1.0, "baseline_aug": 1.1}
STEP_COST.update({"jdl": 3.0, "sjdl_wo_sc": 3.4, "sjdl": 3.4, "sjdl_aug": 3.5})
STEP_COST.update({"baseline_cons": 1.6, "clear_cons": 1.6, "sjdl_dsbn": 3.5, "sjdl_clear": 3.4})
STEP_COST.update({"baseline_2x": 1.0, "sjdl_clear_cons": 4.0, "recommended": 1.6})
STEP_COST.update(
    {"baseline_4x": 1.0, "recommended_2x": 1.6, "sjdl_detach": 3.2, "sjdl_grad01": 3.4}
)
STEP_COST.update(
    {"recommended_pairs": 1.0, "sjdl_affine": 3.4, "sjdl_affine2": 2.4, "sjdl_affine4": 2.0}
)
STEP_COST["sjdl_affine4_every5"] = 1.7
STEP_COST["sjdl_affine4_every5_rb0"] = 1.4
STEP_COST["sjdl_affine4_every5_half"] = 1.5
VAL_COST, EVAL_COST = 5.0, 8.0


@dataclass
class StudySettings:
    """What a study runs. ``None``: the value of ``configs/demo.yaml`` (with ``overrides``)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int | None = None
    densities: list[str] = field(default_factory=lambda: list(DENSITIES))
    rows: list[str] = field(default_factory=lambda: list(DEFAULT_ROWS))
    tests: list[str] = field(default_factory=lambda: list(TESTS))  # test sets (TESTS)
    size: tuple[int, int] | None = None
    test_ids: int = 160
    val_ids: int | None = None
    split_seed: int = 0
    fog_seed: int = 0
    max_steps: int = 0  # per epoch, 0 = full epochs
    overrides: list[str] = field(default_factory=list)
    resamples: int = 2000
    # "test": the study's 160 test ids; "dev": a development split for choices, disjoint from
    # those and from the demo's test ids (study_data.dev_split)
    split: str = "test"
    dev_ids: int = 100

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
        for key in ("seeds", "rows", "tests", "densities", "resamples"):
            d.pop(key)
        d["size"] = list(self.size)
        return d

    def check(self) -> None:
        check_overrides(self.overrides)
        if self.split not in ("test", "dev"):
            raise StudyError(f"split must be test or dev, got {self.split!r}")
        for what, names, known in (
            ("row", self.rows, ROWS),
            ("density", self.densities, DENSITIES),
            ("test", self.tests, TESTS),
        ):
            bad = [x for x in names if x not in known]
            if bad:
                raise StudyError(f"unknown {what} {bad[0]!r} (allowed: {_allowed(known)})")
        if not self.seeds or not self.rows or not self.densities or not self.tests:
            raise StudyError("a study needs at least one seed, row, density and test set")
        for flag, names in (
            ("--seeds", self.seeds),
            ("--rows", self.rows),
            ("--densities", self.densities),
            ("--tests", self.tests),
        ):
            twice = [x for i, x in enumerate(names) if x in names[:i]]
            if twice:  # a seed counted twice would narrow every interval
                raise StudyError(f"{flag}: {twice[0]!r} is given twice; name each once")
        bad_size = len(self.size) != 2 or min(self.size) < 32 or any(x % 32 for x in self.size)
        if self.epochs < 1 or bad_size:
            raise StudyError(
                f"epochs >= 1 and image sides that are multiples of 32 (FIRM) needed, got "
                f"{self.epochs} epochs, size {self.size[0]}x{self.size[1]}"
            )


def _allowed(known) -> str:
    """The names in ``known``, rows' "+bn_*" variants folded into one phrase."""
    plain = [k for k in known if "+" not in k]
    suffixes = sorted({k.split("+", 1)[1] for k in known if "+" in k})
    more = f"; any row with {' or '.join('+' + x for x in suffixes)}" if suffixes else ""
    return ", ".join(plain) + more


# keys the study sets per run: an override of them would make every seed or row the same
CONTROLLED = {
    "method": "--rows",
    "data.root": "the study's own data",
    "data.size_train": "--size",
    "data.size_test": "--size",
    "data.clear_twins": "--rows (baseline_clear, clear_cons, sjdl_clear)",
    "loss.lambda_consistency": "--rows (baseline_cons, clear_cons)",
    "model.dsbn": "--rows (sjdl_dsbn)",
    "model.firm.cfsm_grad": "--rows (sjdl_detach, sjdl_grad01)",
    "model.firm.output": "--rows (sjdl_affine*)",
    "data.twins_in_batch": "--rows (recommended_pairs)",
    "model.firm.scale": "--rows (sjdl_affine2, sjdl_affine4)",
    "data.fog_augment": "--rows (*_aug)",
    "data.fog_augment_beta": "--rows (*_aug) and --densities",
    "train.epochs": "--epochs",
    "train.steps": "--epochs (the demo's schedule, stretched)",
    "train.seed": "--seeds",
    "train.val_ids": "the study",
    "train.max_steps_per_epoch": "--max-steps",
    "train.output_dir": "-o",
}


def check_overrides(overrides) -> None:
    """Refuse overrides of keys the study controls (one line naming the key)."""
    for item in overrides:
        key, _, value = (x.strip() for x in item.partition("="))
        if key == "preset" and value == "recommended":  # would give every row clear twins
            raise StudyError("preset=recommended: use --rows recommended for the recipe's row")
        if key in CONTROLLED:
            raise StudyError(
                f"{key}: the study sets this key for every run; use {CONTROLLED[key]} instead"
            )


QUICK = StudySettings(
    seeds=[0],
    epochs=1,
    densities=["dense"],
    rows=["imagenet", "dcp_reid", "baseline", "sjdl", "baseline+bn_gallery"],
    size=(64, 32),
    val_ids=10,
    max_steps=2,
    resamples=200,
)


def training_runs(row: str, density: str, seed: int) -> list[tuple[str, str, int]]:
    """The (training, density, seed) runs a row needs; the clear run ignores the density,
    untrained ImageNet features need none."""
    kind, defog, _ = ROWS[row]
    if kind == "imagenet":
        return []
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
