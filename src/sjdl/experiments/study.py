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

import numpy as np
import torch

from ..config import load_config, resolve_device
from ..data import read_dataset
from ..engine import train
from ..evaluation.ranking import per_query_metrics
from ..retrieval.defog import defog_dcp
from ..storage import folder_lock, save_npz, write_atomic
from .runs import clear_records, evaluate_test, load_run, train_run
from .study_data import check_split, prepare_clear, prepare_density, prepare_split
from .study_plan import (
    EVAL_COST,
    ROWS,
    STEP_COST,
    TESTS,
    VAL_COST,
    StudyError,
    StudySettings,
    eval_key,
    query_file,
    read_table,
    run_name,
    training_runs,
    write_table,
)


class DefogThenReID(torch.nn.Module):
    """Two-stage retrieval: defog the images, then embed them with a ReID model. Exposes the
    evaluator's interface; its ``restore`` is the defogging (scored like FIRM's)."""

    def __init__(self, reid: torch.nn.Module, defog):
        super().__init__()
        self.reid, self.defog = reid, defog
        self.firm = defog  # tells the evaluator that this model restores images

    @torch.no_grad()
    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.reid.extract_features(self.defog(images))

    @torch.no_grad()
    def restore(self, images: torch.Tensor):
        return None, self.defog(images)


def _dcp(size) -> callable:
    patch = max(3, (min(size) // 16) | 1)  # He et al.'s 15 px at 240 px, scaled to the image
    return lambda x: defog_dcp(x, patch=patch)


# -- orchestration -------------------------------------------------------------------------
class Study:
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
            diff = [k for k in fixed if old.get(k) != fixed[k]]
            if diff:
                raise StudyError(
                    f"{path}: this study folder was made with {diff[0]}={old.get(diff[0])!r}, "
                    f"not {fixed[diff[0]]!r}; use another output folder to change it"
                )
        elif any(self.out.iterdir()) if self.out.is_dir() else False:
            raise StudyError(f"{self.out}: not empty and not a study folder; refusing")
        check_split(self.s.test_ids, self.s.split_seed)  # before anything is written
        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(fixed, indent=1).encode())

    def prepare_data(self) -> None:
        self._check_folder()
        data = self.out / "data"
        prepare_split(data, self.s.test_ids, self.s.split_seed)
        self.roots = {d: prepare_density(data, d, self.s.fog_seed) for d in self.s.densities}
        if any(ROWS[r][0] == "clear" for r in self.s.rows):
            self.roots[""] = prepare_clear(data)

    def config(self, run: tuple[str, str, int]):
        kind, density, seed = run
        base = load_config("demo", self.s.overrides)
        h, w = self.s.size
        scale = self.s.epochs / base.train.epochs  # the demo's LR schedule, stretched
        steps = sorted({max(1, round(e * scale)) for e in base.train.steps})
        return load_config(
            "demo",
            [
                f"method={'baseline' if kind == 'clear' else kind}",
                f"data.root={self.roots[density]}",
                f"data.size_train=[{h},{w}]",
                f"data.size_test=[{h},{w}]",
                f"train.epochs={self.s.epochs}",
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
            if not all(eval_key(row, density, t, seed) in self.done for t in TESTS)
        ]

    def trained(self, run) -> bool:
        return (self.out / "runs" / run_name(run) / "study_trained.json").is_file()

    def steps_per_epoch(self) -> int:
        split = json.loads((self.out / "data" / "split.json").read_text())
        ids = len(split["train_ids"]) - self.s.val_ids
        n = max(1, ids // load_config("demo").data.num_ids)
        return min(n, self.s.max_steps) if self.s.max_steps else n

    def cost(self, run) -> float:
        return self.s.epochs * (self.steps_per_epoch() * STEP_COST[run[0]] + VAL_COST)

    def remaining_cost(self, todo) -> float:
        runs = {r for seed, d, row in todo for r in training_runs(row, d, seed)}
        return sum(self.cost(r) for r in runs if not self.trained(r)) + EVAL_COST * len(todo)

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
        old = _flat(load_config(text=(run_dir / "config.yaml").read_text()).to_dict())
        new = _flat(cfg.to_dict())
        moved = ("data.root", "train.output_dir")  # the study folder may have been moved
        diff = [k for k in new if old.get(k) != new[k] and k not in moved]
        if diff:
            raise StudyError(
                f"{run_dir}: trained with {diff[0]}={old.get(diff[0])!r}, the config now gives "
                f"{new[diff[0]]!r} (configs/demo.yaml changed?); use another output folder"
            )

    def _test_records(self, density: str):
        if density not in self._tests:
            data = read_dataset(self.config(("baseline", density, 0)).data, with_real=False)
            self._tests[density] = {
                "foggy": (data.query, data.gallery),
                "clear": (clear_records(data.query), clear_records(data.gallery)),
            }
        return self._tests[density]

    def _model(self, row: str, density: str, seed: int):
        kind, defog = ROWS[row]
        runs = training_runs(row, density, seed)
        model, cfg = load_run(self.out / "runs" / run_name(runs[0]), self.device)
        if defog == "dcp":
            model = DefogThenReID(model, _dcp(self.s.size))
        elif defog == "firm":
            firm, _ = load_run(self.out / "runs" / run_name(runs[1]), self.device)
            model = DefogThenReID(model, lambda x: firm.restore(x)[1].float().clamp(0, 1))
        return model, cfg

    def evaluate(self, row: str, density: str, seed: int) -> None:
        if self.device is None:
            self.device = resolve_device(self.config(("baseline", density, seed)).train.device)
        model, cfg = self._model(row, density, seed)
        for test, (q, g) in self._test_records(density).items():
            if eval_key(row, density, test, seed) in self.done:
                continue
            t = time.perf_counter()
            result = evaluate_test(model, cfg, q, g, self.device)
            per = per_query_metrics(
                result.distmat,
                result.query.pids,
                result.gallery.pids,
                result.query.camids,
                result.gallery.camids,
            )
            idx = result.query.indices.numpy()
            full = {k: np.full(len(q), np.nan) for k in per}
            for k, v in per.items():
                full[k][idx] = v
            pids = np.array([r.pid for r in q])
            save_npz(query_file(self.out, row, density, test, seed), pid=pids, **full)
            m = result.ranking.as_dict()
            self.table.append(
                {
                    "row": row,
                    "density": density,
                    "test": test,
                    "seed": str(seed),
                    "mAP": f"{100 * m['mAP']:.4f}",
                    "R1": f"{100 * m['R1']:.4f}",
                    "R5": f"{100 * m['R5']:.4f}",
                    "mINP": f"{100 * m['mINP']:.4f}",
                    "PSNR": _num(result.quality.get("PSNR")),
                    "SSIM": _num(result.quality.get("SSIM")),
                    "queries": m["num_valid_queries"],
                    "train_s": self._train_seconds(row, density, seed),
                    "eval_s": f"{time.perf_counter() - t:.2f}",
                }
            )
            write_table(self.table_path, self.table)
            self.done.add(eval_key(row, density, test, seed))
        if self.progress is not None:
            self.progress.advance(EVAL_COST, f"evaluated {row}, {density} fog, seed {seed}")

    def _train_seconds(self, row, density, seed) -> str:
        run = training_runs(row, density, seed)[0]
        info = json.loads((self.out / "runs" / run_name(run) / "study_trained.json").read_text())
        return f"{info['seconds']:.1f}"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


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
    with folder_lock(out, "the study"):
        return _run_study(out, settings, log, progress)


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
        + f", {h}x{w} images, {settings.test_ids} test ids, fog densities "
        f"{', '.join(settings.densities)}; {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()} with {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; training {train_s:.0f} s in all, this call "
        f"{time.perf_counter() - t:.0f} s. mAP and R1 in %: mean ± std over seeds; "
        "differences: paired, bootstrap over seeds and queries."
    )
    return write_summary(study.out, summary, quality, header)
