"""The ``sjdl`` command line: one small module per command, registered here."""

from __future__ import annotations

import signal

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


def _as_interrupt(signum, _frame) -> None:
    """SIGTERM (``kill``, ``timeout``, a job scheduler) and SIGHUP (a closed terminal) stop a
    command the way Ctrl-C does: a training writes its resumable checkpoint, staged output is
    removed, locks are released (by default Python would die on the spot)."""
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def main() -> None:
    for name in ("SIGTERM", "SIGHUP"):  # SIGHUP: not on Windows; left alone under nohup
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _as_interrupt)
    app()
