"""``sjdl serve``: the local search page over a gallery index."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from .common import console, err_console, fail


def serve_command(
    index_dir: Path = typer.Option(..., "--index", help="Index folder (sjdl index build)."),
    checkpoint: Path | None = typer.Option(None, help="Default: the index's checkpoint."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (this machine only)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free port)."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="Largest upload accepted (MiB)."),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        help="Also answer requests addressed to this name (repeatable), e.g. the machine's "
        "LAN name with --host 0.0.0.0.",
    ),
):
    """Serve a page where a query image is dropped and its ranked gallery matches (and FIRM
    restoration) are shown; the page's JSON endpoint is POST /api/search?k=10. Requests must
    name the server in their Host header: the --host address (any IP address for 0.0.0.0 or
    ::), localhost for loopback and wildcard binds, and each --allow-host name."""
    from ..data import DatasetError
    from ..models.io import CheckpointError
    from ..retrieval import Gallery, IndexError_
    from ..retrieval.hosts import HostPolicy

    try:
        policy = HostPolicy.for_bind(host, tuple(allow_host))
    except ValueError as e:
        fail(str(e))
    try:
        gallery = Gallery.open(index_dir, checkpoint)
        if not len(gallery):
            fail(f"{index_dir}: the index is empty (0 images); add images with sjdl index add")
        gallery.reid  # noqa: B018 - load the model now, not on the first search
    except (CheckpointError, IndexError_, DatasetError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    try:
        sock = _bind(host, port)
    except OSError as e:
        fail(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another --port")
    run(gallery, sock, host, int(max_upload_mb * 2**20), policy)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the queue until the server takes them
    except OSError:
        sock.close()
        raise
    return sock


def run(gallery, sock: socket.socket, host: str, max_upload: int, policy) -> None:
    import uvicorn

    from ..retrieval.server import create_app

    local = host in ("127.0.0.1", "localhost", "::1")
    if not local:
        err_console.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can "
            "search the gallery and see its images (there is no login)",
            highlight=False,
        )
    app = create_app(gallery, max_upload=max_upload, hosts=policy)
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    console.print(
        f"[bold green]serving[/] {len(gallery)} gallery images on http://{shown}:{port}/ "
        "(Ctrl+C to stop)",
        highlight=False,
    )
    if not local:
        err_console.print(
            f"answering requests addressed to {policy.describe()} (--allow-host NAME adds one)",
            highlight=False,
        )
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
