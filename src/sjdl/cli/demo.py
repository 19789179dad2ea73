"""``sjdl demo``: ImageNet features vs Baseline vs SJDL vs the recommended recipe on the
embedded data (clear, foggy and unseen-fog tests), with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, fail
from .progress import EpochProgress


def demo_command(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Output folder."),
    quick: bool = typer.Option(False, help="A tiny run (< 1 minute) to check the pipeline."),
    overrides: list[str] | None = typer.Argument(None, help="Extra overrides key=value."),
):
    """Train Baseline, SJDL and the recommended recipe on the embedded demo data, evaluate them
    and untrained ImageNet features on clear, foggy and unseen-fog test images, write a report."""
    from ..config import ConfigError
    from ..data import DatasetError
    from ..experiments.demo import run_demo

    try:
        report = run_demo(output, quick, overrides, log=console.print, progress=EpochProgress())
    except (DatasetError, ConfigError, FileNotFoundError) as e:
        fail(str(e))
    console.print(f"[bold green]report:[/] {report.resolve()}")
    console.print(f"[bold green]summary:[/] {(output / 'summary.json').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
