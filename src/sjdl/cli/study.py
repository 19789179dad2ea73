"""``sjdl study``: the paper's Tables 3 and 4 in miniature on the embedded data, with seeds,
two fog densities and bootstrap confidence intervals."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .common import console, fail, interrupted


class StudyBar:
    """One bar for the whole study (work in estimated training steps), with time left."""

    def __init__(self):
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            speed_estimate_period=900,
        )
        self.task = None

    def begin(self, total: float) -> None:
        self.bar.start()
        self.task = self.bar.add_task("study", total=max(total, 1e-9))

    def advance(self, amount: float, description: str) -> None:
        self.bar.update(self.task, advance=amount, description=description)

    def end(self) -> None:
        self.bar.stop()


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        fail(f"--{what}: expected integers separated by commas, got {text!r}")
        raise


def _names(text: str) -> list[str]:
    return [x for x in text.replace(",", " ").split() if x]


def study_command(
    output: Path = typer.Option(Path("runs/study"), "--output", "-o", help="Output folder."),
    seeds: str = typer.Option("0,1,2", help="Training seeds (train.seed), comma-separated."),
    epochs: int = typer.Option(
        None, help="Epochs per training run [default: configs/demo.yaml's]."
    ),
    densities: str = typer.Option(
        "paper,dense", help="Fog densities: paper (beta 0.4-1.6), dense (beta 1-5)."
    ),
    rows: str = typer.Option(
        None,
        help="Rows, comma-separated: imagenet, clear_reid, dcp_reid, firm_reid, baseline, "
        "baseline_clear, baseline_aug, baseline_cons, clear_cons, jdl, sjdl_wo_sc, sjdl, sjdl_aug, "
        "sjdl_dsbn, sjdl_clear, sjdl_clear_cons, baseline_2x, baseline_4x, recommended, "
        "recommended_2x, sjdl_detach, sjdl_grad01, recommended_pairs, sjdl_affine, sjdl_affine2, "
        "sjdl_affine4, sjdl_affine4_every5, "
        "and any trained row "
        "with +bn_train or +bn_gallery (BN statistics re-estimated) [default: README].",
    ),
    tests: str = typer.Option(
        None,
        help="Test sets, comma-separated: clear, foggy (the training fog), patchy, scatter "
        "(fog kinds no training uses) [default: all].",
    ),
    split: str = typer.Option(
        "test",
        help="test: the study's test ids; dev: a development split disjoint from them and "
        "from the demo's test ids (make choices there).",
    ),
    size: str = typer.Option(
        None, help="Image size HxW, multiples of 32 [default: configs/demo.yaml's]."
    ),
    test_ids: int = typer.Option(None, help="Identities in the test split [default: 160]."),
    max_steps: int = typer.Option(None, help="Cap on steps per epoch (0 = none)."),
    quick: bool = typer.Option(
        False, help="A tiny run (1 seed, 1 epoch of 2 steps, 64x32, 3 rows, dense fog)."
    ),
    overrides: list[str] | None = typer.Argument(None, help="Extra overrides key=value."),
):
    """Train and evaluate the study's rows over seeds and fog densities (resumable: finished
    runs are kept), then write metrics.csv, summary.md/.csv and study.png."""
    from dataclasses import replace

    from ..config import ConfigError
    from ..data import DatasetError
    from ..engine import DataWorkerError, NonFiniteLossError
    from ..experiments.study import run_study
    from ..experiments.study_plan import QUICK, StudyError, StudySettings
    from ..storage import StorageError

    s = QUICK if quick else StudySettings()
    changes = {}
    if not quick or seeds != "0,1,2":
        changes["seeds"] = _ints(seeds, "seeds")
    if not quick or densities != "paper,dense":
        changes["densities"] = _names(densities)
    if rows is not None:
        changes["rows"] = _names(rows)
    if tests is not None:
        changes["tests"] = _names(tests)
    if size is not None:
        try:
            h, w = (int(x) for x in size.lower().split("x"))
        except ValueError:
            fail(f"--size: expected HxW such as 64x64, got {size!r}")
        changes["size"] = (h, w)
    changes["split"] = split
    for key, value in (("epochs", epochs), ("test_ids", test_ids), ("max_steps", max_steps)):
        if value is not None:
            changes[key] = value
    s = replace(s, overrides=list(overrides or []), **changes)
    try:
        paths = run_study(output, s, log=console.print, progress=StudyBar())
    except (
        DatasetError,
        ConfigError,
        FileNotFoundError,
        FileExistsError,
        StudyError,
        StorageError,
        DataWorkerError,
        NonFiniteLossError,
    ) as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted(
            f"finished trainings and evaluations are kept in {output}; the same command "
            "continues from there"
        )
    for p in paths:
        console.print(f"[bold green]wrote[/] {p.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("study")(study_command)
