"""``sjdl train``: the paper's recipe (or any config) with progress, logs and resumable runs."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import config_from_cli, console, fail
from .progress import EpochProgress

# keys that a resumed run may change: they do not alter what was already trained
RESUME_SAFE = (
    "train.epochs",
    "data.workers",
    "data.cache_mb",
    "train.log_every",
    "train.tensorboard",
)


def resume_changes(saved, wanted) -> list[tuple[str, object, object]]:
    """(key, saved value, new value) for every key the overrides change."""
    from ..config import flat_dict

    a, b = flat_dict(saved.to_dict()), flat_dict(wanted.to_dict())
    return [(k, a[k], b[k]) for k in a if a[k] != b[k]]


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
    from ..config import ConfigError
    from ..data import DatasetError
    from ..data.io import ImageReadError
    from ..engine import DataWorkerError, NonFiniteLossError, train
    from ..engine.rundir import RunExistsError
    from ..models.io import CheckpointError
    from ..storage import StorageError

    if resume is not None:
        for flag, given in (
            ("-o/--output", output),
            ("--config", config),
            ("--overwrite", overwrite),
        ):
            if given:
                fail(
                    f"{flag} cannot be combined with --resume: a run continues in its own "
                    f"folder ({resume}) with its own config.yaml"
                )
        if not (resume / "config.yaml").is_file():
            fail(f"{resume}: no config.yaml, not a run folder to resume")
        cfg = config_from_cli(str(resume / "config.yaml"), overrides)
        for key, old, new in resume_changes(config_from_cli(str(resume / "config.yaml"), []), cfg):
            if key not in RESUME_SAFE:
                fail(
                    f"{key}: the run in {resume} was trained with {key}={old}, so --resume cannot "
                    f"change it to {new} (only {', '.join(RESUME_SAFE)} may change); start a "
                    "new run with -o to train with other settings"
                )
            console.print(f"on resume: {key} {old} -> {new}", highlight=False)
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
        DataWorkerError,
        StorageError,
        ConfigError,
    ) as e:
        fail(str(e))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(
        f"done: {summary['epochs']} epochs in {run_dir} (checkpoints in {run_dir / 'checkpoints'})"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
