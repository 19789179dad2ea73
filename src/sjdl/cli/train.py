"""``sjdl train``: the paper's recipe (or any config) with progress, logs and resumable runs."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import config_from_cli, console, fail
from .progress import EpochProgress


def train_command(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML or bundled name."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides key=value."),
    resume: Path | None = typer.Option(None, help="Continue the run in this folder."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Run folder (default: train.output_dir)."
    ),
    overwrite: bool = typer.Option(
        False, help="Replace the run already in the output folder (else it is refused)."
    ),
):
    """Train SJDL (or baseline / jdl / sjdl_wo_sc) on FVRID or your own data."""
    from ..data import DatasetError
    from ..data.io import ImageReadError
    from ..engine import NonFiniteLossError, train
    from ..engine.rundir import RunExistsError
    from ..models.io import CheckpointError
    from ..storage import StorageError

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            fail(f"{resume}: no config.yaml, not a run folder to resume")
        cfg = config_from_cli(str(resume / "config.yaml"), overrides)
        run_dir = resume
    else:
        cfg = config_from_cli(config, overrides)
        run_dir = output or Path(cfg.train.output_dir)
    if cfg.data.dataset in ("fvrid", "veri", "folder") and not cfg.data.root:
        fail(
            "data.root is not set: pass data.root=/path/to/data (see README.md, "
            "section 'Data layout')"
        )
    try:
        summary = train(
            cfg,
            run_dir,
            resume is not None,
            log=console.print,
            progress=EpochProgress(),
            overwrite=overwrite,
        )
    except (
        DatasetError,
        CheckpointError,
        FileNotFoundError,
        RunExistsError,
        ImageReadError,
        NonFiniteLossError,
        StorageError,
    ) as e:
        fail(str(e))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(
        f"done: {summary['epochs']} epochs in {run_dir} (checkpoints in {run_dir / 'checkpoints'})"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
