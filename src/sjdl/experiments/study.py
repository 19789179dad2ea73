"""The study: the paper's Tables 3 and 4 in miniature, several seeds, two fog densities,
tested on clear and foggy images, with bootstrap confidence intervals (``sjdl study``).

Every training run uses ``configs/demo.yaml`` (loss weights included) on the study's own
split (``study_data``); it trains and is evaluated with the demo's blocks (``runs``). Model
selection uses validation ids carved from the train ids (``train.val_ids``), never the test
ids. Resumable: an evaluation is finished when its rows are in ``metrics.csv`` (its per-query
arrays are written first); a trained run has ``study_trained.json``; an interrupted
training continues from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ..config import load_config
from ..data.fog_kinds import UNSEEN_KINDS
from ..engine import train
from ..storage import folder_lock, write_atomic
from .runs import config_change, train_run
from .study_data import (
    DENSITIES,
    check_split,
    prepare_clear,
    prepare_density,
    prepare_split,
    prepare_unseen,
)
from .study_eval import StudyEvaluation
from .study_plan import (
    EPOCH_LENGTH,
    EPOCH_SCALE,
    EVAL_COST,
    ROWS,
    STEP_COST,
    TRAININGS,
    VAL_COST,
    StudyError,
    StudySettings,
    eval_key,
    read_table,
    run_name,
    training_runs,
)


# -- orchestration -------------------------------------------------------------------------
class Study(StudyEvaluation):
    """One study folder: its settings, data, runs, metrics; ``run()`` does what is missing."""

    def __init__(self, out: Path, settings: StudySettings, log=print, progress=None):
        settings = settings.resolved()
        settings.check()
        self.out, self.s, self.log, self.progress = Path(out), settings, log, progress
        self.table_path = self.out / "metrics.csv"
        self.table = read_table(self.table_path)
        self.done = {eval_key(r["row"], r["density"], r["test"], r["seed"]) for r in self.table}
        self.device = None
        self._tests: dict[str, tuple] = {}

    # settings and data ------------------------------------------------------------------
    def _check_folder(self) -> None:
        path = self.out / "study.json"
        fixed = self.s.fixed()
        if path.is_file():
            old = json.loads(path.read_text())
            default = StudySettings().resolved().fixed()  # keys older folders did not record
            diff = [k for k in fixed if old.get(k, default.get(k)) != fixed[k]]
            if diff:
                raise StudyError(
                    f"{path}: this study folder was made with {diff[0]}={old.get(diff[0])!r}, "
                    f"not {fixed[diff[0]]!r}; use another output folder to change it"
                )
        elif any(self.out.iterdir()) if self.out.is_dir() else False:
            raise StudyError(f"{self.out}: not empty and not a study folder; refusing")
        check_split(self.s.test_ids, self.s.split_seed, dev_ids=_dev(self.s))  # writes nothing
        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(fixed, indent=1).encode())

    def prepare_data(self) -> None:
        self._check_folder()
        data = self.out / "data"
        prepare_split(data, self.s.test_ids, self.s.split_seed, dev_ids=_dev(self.s))
        self.roots = {d: prepare_density(data, d, self.s.fog_seed) for d in self.s.densities}
        for kind in UNSEEN_KINDS:
            if kind in self.s.tests:
                self.roots[f"unseen-{kind}"] = prepare_unseen(data, kind, self.s.fog_seed)
        if any(ROWS[r][0] == "clear" for r in self.s.rows):
            self.roots[""] = prepare_clear(data)

    def config(self, run: tuple[str, str, int]):
        kind, density, seed = run
        base = load_config("demo", self.s.overrides)
        h, w = self.s.size
        epochs = self.s.epochs * EPOCH_SCALE.get(kind, 1)
        scale = epochs / base.train.epochs  # the demo's LR schedule, stretched
        steps = sorted({max(1, round(e * scale)) for e in base.train.steps})
        extra = list(TRAININGS.get(kind) or ["method=baseline"])
        if kind in EPOCH_SCALE:  # the warm-up too, so the schedule is the same in steps
            extra.append(f"train.warmup_epochs={base.train.warmup_epochs * EPOCH_SCALE[kind]}")
        if any(x.startswith("data.fog_augment=") for x in extra):  # the density's beta range
            beta = ",".join(f"{b:g}" for b in _beta_range(density))
            extra.append(f"data.fog_augment_beta=[{beta}]")
        return load_config(
            "demo",
            [
                *extra,
                f"data.root={self.roots[density]}",
                f"data.size_train=[{h},{w}]",
                f"data.size_test=[{h},{w}]",
                f"train.epochs={epochs}",
                f"train.steps=[{','.join(map(str, steps))}]",
                f"train.seed={seed}",
                f"train.val_ids={self.s.val_ids}",
                f"train.max_steps_per_epoch={self.s.max_steps}",
                f"train.output_dir={self.out / 'runs' / run_name(run)}",
                "train.tensorboard=false",
                *self.s.overrides,
            ],
        )

    # planning -----------------------------------------------------------------------------
    def evals(self) -> list[tuple[int, str, str]]:
        """(seed, density, row) of the evaluations not finished yet, seeds outermost."""
        return [
            (seed, density, row)
            for seed in self.s.seeds
            for density in self.s.densities
            for row in self.s.rows
            if not all(eval_key(row, density, t, seed) in self.done for t in self.s.tests)
        ]

    def trained(self, run) -> bool:
        return (self.out / "runs" / run_name(run) / "study_trained.json").is_file()

    def steps_per_epoch(self) -> int:
        split = json.loads((self.out / "data" / "split.json").read_text())
        ids = len(split["train_ids"]) - self.s.val_ids
        n = max(1, ids // load_config("demo").data.num_ids)
        return min(n, self.s.max_steps) if self.s.max_steps else n

    def cost(self, run) -> float:
        kind = run[0]
        steps = self.steps_per_epoch() * EPOCH_LENGTH.get(kind, 1) * STEP_COST[kind]
        return self.s.epochs * EPOCH_SCALE.get(kind, 1) * (steps + VAL_COST)

    def remaining_cost(self, todo) -> float:
        runs = {r for seed, d, row in todo for r in training_runs(row, d, seed)}
        evals = EVAL_COST * len(self.s.tests) * len(todo)
        return sum(self.cost(r) for r in runs if not self.trained(r)) + evals

    # work ---------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        """Train and evaluate everything missing; returns the metrics table."""
        self.prepare_data()
        todo = self.evals()
        if not todo:
            return self.table
        if self.progress is not None:
            self.progress.begin(self.remaining_cost(todo))
        try:
            for seed, density, row in todo:
                for run in training_runs(row, density, seed):
                    self.ensure_trained(run)
                self.evaluate(row, density, seed)
        finally:
            if self.progress is not None:
                self.progress.end()
        return self.table

    def ensure_trained(self, run) -> None:
        cfg = self.config(run)
        run_dir = Path(cfg.train.output_dir)
        if self.trained(run):
            self._same_config(run_dir, cfg)
            return
        what = f"{run[0]}" + (f", {run[1]} fog" if run[1] else "") + f", seed {run[2]}"
        self.log(f"training {what} -> {run_dir}")
        steps = _StepProgress(self.progress, STEP_COST[run[0]])
        quiet = lambda *a, **k: None  # noqa: E731 (train.log in the run folder keeps it all)
        t, cpu = time.perf_counter(), time.process_time()
        if (run_dir / "checkpoints" / "last_state.pt").is_file():
            train(cfg, run_dir, resume=True, log=quiet, progress=steps)
        else:
            train_run(cfg, run_dir, quiet, steps, overwrite=True)
        seconds = time.perf_counter() - t
        info = {
            "seconds": seconds,
            "cpu_seconds": time.process_time() - cpu,
            "threads": torch.get_num_threads(),
        }
        write_atomic(run_dir / "study_trained.json", json.dumps(info).encode())
        self.log(f"trained {what} in {seconds:.0f} s")

    @staticmethod
    def _same_config(run_dir: Path, cfg) -> None:
        """A finished run is reused only if it was trained with today's config."""
        change = config_change(run_dir, cfg)  # the study folder may have been moved
        if change:
            raise StudyError(
                f"{run_dir}: trained with another config than the one now given ({change}; "
                "configs/demo.yaml changed?); use another output folder"
            )


def _beta_range(density: str) -> tuple[float, float]:
    from ..data.fog import fog_ranges

    return fog_ranges(DENSITIES[density])[0]


class _StepProgress:
    """The trainer's per-epoch progress protocol, turned into advances of the study bar."""

    def __init__(self, bar, weight: float):
        self.bar, self.weight, self.last = bar, weight, 0

    def start(self, description: str, total: int):
        self.last = 0
        return description

    def update(self, task, completed: int, loss: float, rate: float) -> None:
        if self.bar is not None:
            self.bar.advance((completed - self.last) * self.weight, f"training: {task}")
        self.last = completed

    def finish(self, task) -> None:
        pass


def run_study(out, settings: StudySettings, log=print, progress=None) -> list[Path]:
    """Do what is missing of the study in ``out``, then write its summary (``summary.md``,
    ``summary.csv``, ``study.png``); returns those paths. Holds the study folder's lock."""
    checked = settings.resolved()
    checked.check()  # wrong settings leave no trace: checked before the lock makes the folder
    check_split(checked.test_ids, checked.split_seed, dev_ids=_dev(checked))
    with folder_lock(out, "the study"):
        return _run_study(out, settings, log, progress)


def _dev(settings: StudySettings) -> int:
    return settings.dev_ids if settings.split == "dev" else 0


def _run_study(out, settings: StudySettings, log=print, progress=None) -> list[Path]:
    import platform

    from .runs import input_quality
    from .study_report import summarize, write_summary

    study = Study(Path(out), settings, log, progress)
    settings = study.s
    t = time.perf_counter()
    table = study.run()
    quality = {}
    for density in settings.densities:
        q, g = study._test_records(density)["foggy"]
        quality[density] = input_quality(study.config(("baseline", density, 0)), q + g)
    for kind in (k for k in UNSEEN_KINDS if k in settings.tests):
        q, g = study._test_records(settings.densities[0])[kind]
        quality[f"unseen {kind}"] = input_quality(
            study.config(("baseline", settings.densities[0], 0)), q + g
        )
    summary = summarize(study.out, table, settings)
    train_s = sum(
        json.loads(p.read_text())["seconds"]
        for p in (study.out / "runs").glob("*/study_trained.json")
    )
    h, w = settings.size
    header = (
        f"sjdl study: seeds {','.join(map(str, settings.seeds))}, {settings.epochs} epoch"
        + ("s" if settings.epochs != 1 else "")
        + (f" of at most {settings.max_steps} steps" if settings.max_steps else "")
        + f", {h}x{w} images, "
        + (
            f"evaluated on {settings.dev_ids} development ids (the {settings.test_ids} test "
            "ids held out)"
            if settings.split == "dev"
            else f"{settings.test_ids} test ids"
        )
        + ", fog densities "
        f"{', '.join(settings.densities)}; {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()} with {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; training {train_s:.0f} s in all, this call "
        f"{time.perf_counter() - t:.0f} s. "
        + (
            f"DEVELOPMENT split ({settings.dev_ids} ids disjoint from the test and demo ids). "
            if settings.split == "dev"
            else ""
        )
        + "mAP and R1 in %: mean ± std over seeds; differences: paired, bootstrap over "
        "seeds and one query resample shared by all seeds (and unseen fog kinds)."
    )
    return write_summary(study.out, summary, quality, header)
