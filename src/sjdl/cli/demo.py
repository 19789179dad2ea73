"""``sjdl demo``: ImageNet features vs Baseline vs SJDL vs the recommended recipe on the
embedded data (clear, foggy and unseen-fog tests), with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, fail, interrupted
from .progress import EpochProgress


def demo_command(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Output folder."),
    quick: bool = typer.Option(False, help="A tiny run (< 1 minute) to check the pipeline."),
    rows: str = typer.Option(
        "baseline,sjdl,recommended",
        help="Trained rows, comma-separated (ImageNet features always run); fewer rows, less "
        "time: baseline ~2, sjdl ~4, recommended ~4 minutes on 2 CPU cores.",
    ),
    retrain: bool = typer.Option(
        False, help="Train every row again, even one an earlier (interrupted) run finished."
    ),
    overrides: list[str] | None = typer.Argument(None, help="Extra overrides key=value."),
):
    """Train Baseline, SJDL and the recommended recipe on the embedded demo data, evaluate them
    and untrained ImageNet features on clear, foggy and unseen-fog test images, write a report."""
    from ..config import ConfigError
    from ..data import DatasetError
    from ..engine import DataWorkerError, NonFiniteLossError
    from ..experiments.demo import check_rows, run_demo
    from ..storage import StorageError

    try:
        names = check_rows([r.strip() for r in rows.split(",") if r.strip()])
    except ValueError as e:
        fail(str(e))
    try:
        report = run_demo(
            output,
            quick,
            overrides,
            log=console.print,
            progress=EpochProgress(),
            rows=names,
            retrain=retrain,
        )
    except (
        DatasetError,
        ConfigError,
        FileNotFoundError,
        StorageError,
        DataWorkerError,
        NonFiniteLossError,
    ) as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted(f"rows finished so far are kept in {output}; the same command reuses them")
    console.print(f"[bold green]report:[/] {report.resolve()}")
    console.print(f"[bold green]summary:[/] {(output / 'summary.json').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
