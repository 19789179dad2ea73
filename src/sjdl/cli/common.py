"""Helpers shared by the commands: config loading with one-line errors, the console."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from ..config import Config, ConfigError, load_config

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def printable(text: str) -> str:
    """``text`` that can always be printed: bytes of file names that are not UTF-8 (Python's
    surrogate escapes) appear as ``\\xff``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def interrupted(message: str) -> None:
    """Ctrl-C or ``kill`` (SIGTERM): say what was kept, exit 130 without a traceback."""
    err_console.print(f"[bold yellow]interrupted:[/] {escape(message)}", highlight=False)
    raise typer.Exit(130)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit with ``code`` (line breaks of library messages
    are folded so the error stays one line)."""
    message = " ".join(str(message).split())
    message = printable(message)
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def config_from_cli(config: str | None, overrides: list[str] | None) -> Config:
    try:
        return load_config(config, overrides or [])
    except ConfigError as e:
        fail(str(e))
        raise  # unreachable, keeps type checkers happy


def deploy_errors() -> tuple:
    """Errors of the deployment commands that are one-line messages for the user."""
    from ..data import DatasetError
    from ..data.io import ImageReadError
    from ..models.io import CheckpointError
    from ..retrieval import IndexError_

    return (
        DatasetError,
        CheckpointError,
        IndexError_,
        FileNotFoundError,
        ValueError,
        ImageReadError,
    )
