"""The ``sjdl`` command line: one small module per command, registered here."""

from __future__ import annotations

import typer

from . import demo, deploy, evaluate, fog, info, serve, study, train

app = typer.Typer(
    name="sjdl",
    help="Foggy vehicle re-identification with semi-supervised joint defogging learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
info.register(app)
fog.register(app)
evaluate.register(app)
train.register(app)
demo.register(app)
deploy.register(app)
serve.register(app)
study.register(app)


def main() -> None:
    app()
