"""The ``sjdl`` command line: one small module per command, registered here."""

from __future__ import annotations

import errno
import os
import signal
import sys
import warnings

import typer

from . import defog, demo, deploy, evaluate, fog, info, serve, study, train

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
defog.register(app)
serve.register(app)
study.register(app)


def _as_interrupt(signum, _frame) -> None:
    """SIGTERM (``kill``, ``timeout``, a job scheduler) and SIGHUP (a closed terminal) stop a
    command the way Ctrl-C does: a training writes its resumable checkpoint, staged output is
    removed, locks are released (by default Python would die on the spot)."""
    raise KeyboardInterrupt(f"stopped by signal {signum}")


# failed writes of the output itself (``> file`` on a full disk, a closed pipe)
OUTPUT_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE, errno.EFBIG}


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as one line for the command's user (``warning: ...``), not as Python shows
    it to a developer (file, line number, category and the source line)."""
    return f"warning: {message}\n"


def main() -> None:
    warnings.formatwarning = _warning_line
    for name in ("SIGTERM", "SIGHUP"):  # SIGHUP: not on Windows; left alone under nohup
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _as_interrupt)
    try:
        app()
    except OSError as e:
        # commands turn failed writes of their own files into one-line errors; one of these
        # that escapes is the output itself failing (``> file`` on a full disk, a closed pipe)
        if e.errno not in OUTPUT_ERRORS:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nor at exit, when Python flushes it again
        if e.errno != errno.EPIPE:  # a reader that stopped early (``| head``) is no error
            print(f"error: cannot write the output: {e.strerror}", file=sys.stderr)
        sys.exit(2)
