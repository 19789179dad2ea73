"""``sjdl export``, ``sjdl index build|add`` and ``sjdl search``."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, deploy_errors, fail, interrupted, printable
from .progress import progress_bar

index_app = typer.Typer(help="Build or extend a FAISS gallery index.", no_args_is_help=True)
CKPT = typer.Option(..., "--checkpoint", help="Weights file or run folder.")


def export_command(
    checkpoint: Path = CKPT,
    output: Path = typer.Option(Path("model.onnx"), "--output", "-o"),
    fmt: str = typer.Option("onnx", "--format", help="Only onnx."),
    restoration: bool = typer.Option(False, help="Export FIRM (foggy -> J_enh) instead."),
    size: tuple[int, int] | None = typer.Option(None, help="Input H W (default: test size)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
):
    """Export the inference network (CFSM + ReIDM -> embedding), dynamic batch axis."""
    from ..models.io import CheckpointError, resolve_checkpoint
    from ..retrieval import ReID, export_onnx
    from ..retrieval.export import size_problem
    from ..storage import OwnershipError, check_not_input

    if fmt != "onnx":
        fail(f"--format {fmt}: only onnx is supported")
    if size is not None and (problem := size_problem(size, restoration)):
        fail(f"--size: {problem}")
    try:  # never over an input: the weights file (also the one a run folder resolves to)
        check_not_input(output, [resolve_checkpoint(checkpoint)])
    except OwnershipError as e:
        fail(str(e))
    except (CheckpointError, OSError):
        pass  # said when the checkpoint is loaded below
    if output.is_file() and not overwrite:
        fail(f"{output} exists; pass --overwrite to replace it or choose another file name")
    try:
        reid = ReID.from_checkpoint(checkpoint, "cpu")
        model, cfg = reid.model, reid.cfg
        path = export_onnx(model, output, tuple(size or cfg.data.size_test), restoration)
    except deploy_errors() as e:
        fail(str(e))
    what = "restoration (J_enh)" if restoration else f"embedding ({model.feat_dim}-d)"
    console.print(
        f"wrote {path}: {what}, input images (batch, 3, "
        f"{', '.join(map(str, size or cfg.data.size_test))}) in [0, 1]"
    )


def _bar_progress(bar, task):
    """A ``Gallery`` progress callback (images embedded, total) that advances ``task``."""
    return lambda n, total: bar.update(task, advance=n, total=total)


def _report(result) -> None:
    """Say which images ``Gallery.build``/``add`` skipped (already in it, unreadable, with a
    non-finite embedding)."""
    if result.duplicates:
        console.print(
            f"[yellow]skipped {len(result.duplicates)} image(s) already in the index, "
            f"e.g. {result.duplicates[0]}"
        )
    if result.unreadable:
        why = result.reasons[:3] or result.unreadable[:1]
        n = len(result.unreadable)
        more = f" (and {n - len(why)} more)" if n > len(why) else ""
        console.print(
            f"[yellow]skipped {len(result.unreadable)} unreadable image(s): "
            + escape(printable("; ".join(why)) + more),
            highlight=False,
        )
    if result.bad_names:
        console.print(
            f"[yellow]skipped {len(result.bad_names)} image(s) whose file name is not valid "
            "UTF-8 (an index stores names as UTF-8; rename them), e.g. "
            + escape(result.bad_names[0]),
            highlight=False,
        )
    if result.nonfinite:
        console.print(
            f"[yellow]skipped {len(result.nonfinite)} image(s) whose embedding is not finite "
            f"(NaN/inf), e.g. {result.nonfinite[0]}",
            highlight=False,
        )


@index_app.command("build")
def index_build(
    gallery: Path = typer.Argument(..., help="Folder of gallery images (searched recursively)."),
    checkpoint: Path = CKPT,
    output: Path = typer.Option(..., "--output", "-o", help="Index folder to write."),
    kind: str = typer.Option("flat", help="flat (exact), hnsw or ivf (approximate)."),
    adapt_bn: bool = typer.Option(
        False,
        "--adapt-bn",
        help="Re-estimate the model's BatchNorm statistics on the gallery images first (no "
        "labels); the index keeps them for its queries and additions. Off by default: in "
        "the study it helped at the paper's fog density and hurt in dense fog (README).",
    ),
    overwrite: bool = typer.Option(
        False,
        help="Replace the index already in OUTPUT (only an index's own files; a folder "
        "holding anything else is refused); inputs never.",
    ),
):
    """Embed every gallery image and write a FAISS index with its metadata."""
    from ..retrieval import Gallery, ReID, folder_lock
    from ..retrieval.outputs import check_index_output

    saving = False
    try:
        check_index_output(output, [gallery, checkpoint], overwrite)  # before any work
        with folder_lock(output):
            reid = ReID.from_checkpoint(checkpoint)
            with progress_bar() as bar:
                task = bar.add_task("embedding", total=None)
                index = Gallery.build(
                    [gallery], reid, kind, adapt_bn=adapt_bn, progress=_bar_progress(bar, task)
                )
            _report(index.last_add)
            saving = True
            index.save(output, overwrite=overwrite)
    except deploy_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted(_stopped(output, saving))
    bn = index.reid.bn_statistics
    bn_text = f", BatchNorm statistics re-estimated on {bn['images']} gallery images" if bn else ""
    console.print(f"index {output}: {len(index)} images, {reid.dim}-d, {kind}{bn_text}")


@index_app.command("add")
def index_add(
    index_dir: Path = typer.Argument(..., help="Existing index folder."),
    images: list[Path] = typer.Argument(..., help="Images or folders to append."),
    checkpoint: Path | None = typer.Option(None, help="Default: the one the index was built with."),
):
    """Append images to an index (refused if the checkpoint differs from the index's); images
    already in it (same path) are skipped. Concurrent writers are refused, not lost."""
    from ..retrieval import Gallery, folder_lock

    saving = False
    try:
        with folder_lock(index_dir):
            index = Gallery.open(index_dir, checkpoint)
            before = len(index)
            with progress_bar() as bar:
                task = bar.add_task("embedding", total=None)
                result = index.add(images, progress=_bar_progress(bar, task))
            _report(result)
            if not result.added:
                console.print(f"index {index_dir}: nothing new to add ({before} images)")
                return
            saving = True
            index.save()
    except deploy_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted(_stopped(index_dir, saving))
    console.print(f"index {index_dir}: {len(index)} images (+{len(result.added)})")


def _stopped(folder: Path, saving: bool) -> str:
    """What a stopped index build/add left (index writes swap in whole folders)."""
    if saving:
        return f"stopped while saving: {folder} holds one complete index, the earlier or the new"
    return f"nothing was written: {folder} is as it was"


def search_command(
    query: Path = typer.Argument(..., help="Query image."),
    index_dir: Path = typer.Option(..., "--index", help="Index folder."),
    top_k: int = typer.Option(10, "--top-k", min=1),
    checkpoint: Path | None = typer.Option(None, help="Default: the index's checkpoint."),
    png: Path | None = typer.Option(
        None,
        "--png",
        help="Rank-list picture, .png/.jpg/.bmp (default: ./<query stem>_ranks.png).",
    ),
    defog_out: Path | None = typer.Option(None, help="Also write the restored query image."),
    overwrite: bool = typer.Option(False, help="Replace existing --png / --defog-out files."),
):
    """Search the gallery index for a query image; print a ranked table, write a PNG.
    Outputs are checked before the search: never the query, a gallery image of the index or
    an existing file (without --overwrite)."""
    from ..data.io import read_image, save_image
    from ..data.records import parse_name
    from ..evaluation.visualize import rank_list
    from ..retrieval import Gallery
    from ..retrieval.search_outputs import check_search_outputs, save_picture

    png = png or Path(f"{query.stem}_ranks.png")
    try:
        index = Gallery.open(index_dir, checkpoint)
        if not len(index):
            fail(f"{index_dir}: the index is empty (0 images); add images with sjdl index add")
        if defog_out is not None and not index.reid.has_firm:
            fail("--defog-out needs a model with FIRM (not method=baseline)")
        outputs = {"--png": png, **({"--defog-out": defog_out} if defog_out else {})}
        check_search_outputs(outputs, query, index, overwrite)
        hits = index.search(query, top_k)
        if defog_out is not None:
            save_image(index.reid.defog(read_image(query)), defog_out)
    except deploy_errors() as e:
        fail(str(e))
    qpid = (parse_name(query.name) or (-1, -1))[0]
    # paths below the hits' common folder (given once), folded rather than cut: a cut path
    # showed the gallery's folder and hid the file name
    root = os.path.commonpath([str(Path(h.path).parent) for h in hits]) if hits else ""
    caption = f"paths under {root}" if root not in ("", "/") else None
    table = Table(title=f"top {len(hits)} for {query.name}", caption=caption)
    for col in ("rank", "distance", "pid", "camid", "path"):
        table.add_column(col, justify="left" if col == "path" else "right", overflow="fold")
    for h in hits:
        style = ("green" if h.pid == qpid else "red") if qpid >= 0 else None
        pid, cam = (str(-1 if v is None else v) for v in (h.pid, h.camid))
        shown = os.path.relpath(h.path, root) if caption else h.path
        table.add_row(str(h.rank), f"{h.distance:.4f}", pid, cam, shown, style=style)
    console.print(table)
    correct = [h.pid == qpid for h in hits] if qpid >= 0 else None
    missing: list[str] = []
    picture = rank_list(
        query, [h.path for h in hits], correct, [h.distance for h in hits], query.name, missing
    )
    if missing:
        console.print(
            f"[yellow]note: {len(missing)} image(s) of the answer can no longer be read "
            f"(deleted or damaged since indexing; grey in the picture), e.g. {missing[0]}",
            highlight=False,
        )
    try:
        save_picture(picture, png)
    except deploy_errors() as e:
        fail(str(e))
    console.print(f"rank list: {png}" + (f"; restored query: {defog_out}" if defog_out else ""))


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.add_typer(index_app, name="index")
    app.command("search")(search_command)
