"""``sjdl fog``: synthesise a paired foggy set from clear ReID images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from .common import console, fail, interrupted


def fog(
    src: Path = typer.Argument(
        ...,
        help="Clear images: a folder, or train/query/gallery "
        "(or VeRi image_*) sub-folders of PID_cCAM_* images.",
    ),
    dst: Path = typer.Argument(..., help="Output root: <split>_clear/ and <split>_foggy/."),
    depth: Path | None = typer.Option(
        None,
        "--depth",
        help="Depth maps matched by name (.png 8/16-bit, .npy, .mat); built-in prior otherwise.",
    ),
    copies: int = typer.Option(1, min=1, help="Foggy versions per clear image."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same files."),
    preset: str = typer.Option("paper", help="beta/airlight ranges: paper or official."),
    beta: tuple[float, float] | None = typer.Option(None, help="Explicit beta range LO HI."),
    airlight: tuple[float, float] | None = typer.Option(None, help="Airlight range LO HI."),
    overwrite: bool = typer.Option(
        False, help="Replace earlier output folders (they then hold exactly the new set)."
    ),
    require_depth: bool = typer.Option(False, help="Fail when an image has no depth file."),
    workers: int = typer.Option(2, min=1, help="Processes (default: both cores)."),
    kind: str = typer.Option(
        "uniform",
        help="Fog kind: uniform (homogeneous), patchy (non-uniform density), scatter "
        "(multiple-scattering blur), tinted (wavelength-dependent, coloured airlight); "
        "README 'Fog kinds'.",
    ),
):
    """Fog clear images (I = J t + A (1 - t), t = exp(-beta d)) into an FVRID_syn-style set."""
    from ..data.fog import fog_ranges
    from ..data.fog_kinds import check_kinds
    from ..data.records import DatasetError
    from ..data.synthesis import fog_folder, plan_jobs, refuse_overwrite

    try:
        beta_range, airlight_range = fog_ranges(preset, beta, airlight)
        check_kinds([kind])
        jobs = plan_jobs(src, dst, copies)
        if not overwrite:
            refuse_overwrite(jobs, dst)
        total = len(jobs)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("fogging", total=total)
            manifest = fog_folder(
                src,
                dst,
                depth,
                copies,
                seed,
                beta_range,
                airlight_range,
                overwrite,
                workers,
                require_depth,
                progress=lambda n: bar.advance(task, n),
                kind=kind,
            )
    except (DatasetError, ValueError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted(f"nothing was written: {dst} is as it was")
    console.print(
        f"wrote {total} foggy/clear pairs to {dst}; manifest: {manifest} "
        f"({kind} fog, beta {beta_range}, airlight {airlight_range})"
    )
    import csv

    with manifest.open(newline="") as f:
        resized = [r["depth_source"] for r in csv.DictReader(f) if "(resized" in r["depth_source"]]
    if resized:
        console.print(
            f"[yellow]{len(resized)} depth map(s) had another size than their image and were "
            f"resized (same aspect ratio), e.g. {resized[0]}; see depth_source in the manifest"
        )


def register(app: typer.Typer) -> None:
    app.command("fog")(fog)
