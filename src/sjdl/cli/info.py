"""``sjdl config`` (resolved configuration) and ``sjdl info`` (model parameter counts)."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import config_from_cli, console

CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML file or bundled config name.")
OVERRIDES = typer.Argument(None, help="Dotted overrides, e.g. model.split=conv3 train.lr=1e-4")


def show_config(config: str | None = CONFIG_OPT, overrides: list[str] | None = OVERRIDES):
    """Print the fully resolved configuration as YAML."""
    cfg = config_from_cli(config, overrides)
    console.print(cfg.to_yaml(), end="", highlight=False, markup=False)


def info(
    config: str | None = CONFIG_OPT,
    overrides: list[str] | None = OVERRIDES,
    syn_ids: int = typer.Option(3000, help="Synthetic train identities (ID head size)."),
    real_ids: int = typer.Option(403, help="Real train identities (0 = unlabelled)."),
):
    """Print the parameter count of each module (CFSM, ReIDM, FIRM, heads) for a config."""
    from ..models import build_model, count_parameters

    cfg = config_from_cli(config, overrides)
    model = build_model(cfg, syn_ids, real_ids)
    rows = [
        ("CFSM (shared)", count_parameters(model.cfsm)),
        ("ReIDM (incl. neck)", count_parameters(model.reidm)),
        ("FIRM (training only)", count_parameters(model.firm)),
        ("ID heads (training only)", count_parameters(model.heads)),
    ]
    table = Table(
        title=f"{cfg.method} / preset {cfg.preset} / {cfg.model.backbone} "
        f"/ split {cfg.model.split} / {model.feat_dim}-d"
    )
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for name, n in rows:
        table.add_row(name, f"{n:,}")
    table.add_row("inference (CFSM + ReIDM)", f"{rows[0][1] + rows[1][1]:,}", style="bold")
    table.add_row("total", f"{count_parameters(model):,}", style="bold")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("config")(show_config)
    app.command("info")(info)
