"""``sjdl eval``: rank the foggy query/gallery with a checkpoint; metrics, pictures, report."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from .common import config_from_cli, console, err_console, fail

RANK_KEYS = ["mAP", "mINP", "R1", "R5", "R10"]


def progress_bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def load_for_eval(checkpoint, config, overrides, device_name=None):
    """(model, cfg, data): the model from the checkpoint (or fresh), data from the config."""
    from ..config import ConfigError, load_config, resolve_device
    from ..data import read_dataset
    from ..models import build_model
    from ..models.io import load_model, read_metadata

    if checkpoint is not None and config is None:  # the run's own config, with overrides
        meta = read_metadata(checkpoint)
        try:
            cfg = load_config(overrides=overrides or [], text=meta["config"])
        except ConfigError as e:
            fail(str(e))
    else:
        cfg = config_from_cli(config, overrides)
    device = resolve_device(device_name or cfg.train.device)
    data = read_dataset(cfg.data, with_real=False)
    if checkpoint is not None:
        model, _, _ = load_model(checkpoint, device)
    else:
        err_console.print("[yellow]no --checkpoint: evaluating a freshly initialised model[/]")
        model = build_model(cfg, max(1, data.num_train_ids)).to(device).eval()
    return model, cfg, data, device


def run_eval(
    model,
    cfg,
    data,
    device,
    out_dir: Path,
    rerank=False,
    flip=False,
    visualize=False,
    title="sjdl eval",
):
    """Evaluate, print the table, write metrics.json (+ pictures and report.html)."""
    from ..data import eval_loader
    from ..evaluation.evaluator import evaluate

    bs = cfg.test.batch_size
    ql = eval_loader(data.query, cfg.data, bs, device, with_clear=True)
    gl = eval_loader(data.gallery, cfg.data, bs, device, with_clear=True)
    with progress_bar() as bar:
        task = bar.add_task("extracting features", total=len(data.query) + len(data.gallery))
        result = evaluate(
            model, ql, gl, device, cfg.test, rerank, flip, progress=lambda n: bar.advance(task, n)
        )
    metrics = result.metrics()
    table = Table(title=title)
    for k in RANK_KEYS + (["PSNR", "SSIM"] if result.quality else []):
        table.add_column(k, justify="right")
    vals = [f"{100 * metrics[k]:.2f}" for k in RANK_KEYS]
    if result.quality:
        vals += [f"{result.quality['PSNR']:.2f}", f"{result.quality['SSIM']:.4f}"]
    table.add_row(*vals)
    console.print(table)
    console.print(
        f"{result.ranking.num_valid} queries ranked, {result.ranking.num_skipped} "
        f"skipped (no match in another camera); feature {cfg.test.feature}, "
        f"{cfg.test.metric}, flip {flip}, re-ranking {rerank}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "metrics": metrics,
        "feature": cfg.test.feature,
        "metric": cfg.test.metric,
        "normalize": cfg.test.normalize,
        "flip": flip,
        "rerank": rerank,
        "dataset": data.name,
        "test_set": cfg.data.test_set,
        "unreadable_images": result.skipped,
    }
    (out_dir / "metrics.json").write_text(json.dumps(info, indent=2))
    if visualize:
        write_pictures(result, data, out_dir, title, metrics)
    return result


def write_pictures(result, data, out_dir: Path, title: str, metrics: dict) -> Path:
    from ..evaluation.report import metrics_table, write_report
    from ..evaluation.visualize import save_rank_lists, save_restoration_grid

    pics = save_rank_lists(result, data.query, data.gallery, out_dir / "rank_lists")
    grid = save_restoration_grid(result.samples, out_dir / "restoration.png")
    keys = RANK_KEYS + (["restored_PSNR", "restored_SSIM"] if result.quality else [])
    header, rows = metrics_table({"model": metrics}, keys)
    figures = (
        [("rank lists: query (blue), correct (green), wrong (red), distance under each", pics[-1])]
        if pics
        else []
    )
    if grid:
        figures.append(("restoration: foggy | restored (J_enh) | clear", grid))
    figures += [(p.stem, p) for p in pics[:-1]]
    return write_report(out_dir / "report.html", title, [("metrics (%)", header, rows)], figures)


def eval_command(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML or bundled name."),
    checkpoint: Path | None = typer.Option(None, help="Weights file or run folder."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides key=value."),
    rerank: bool = typer.Option(False, help="k-reciprocal re-ranking."),
    flip: bool = typer.Option(False, help="Average features of image and mirror."),
    visualize: bool = typer.Option(False, help="Write rank lists, restorations, report.html."),
    output: Path = typer.Option(Path("runs/eval"), "--output", "-o", help="Output folder."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 (default: train.device)."),
):
    """Evaluate a model on the foggy query/gallery: mAP, mINP, CMC, PSNR/SSIM of J_enh."""
    from ..data import DatasetError
    from ..models.io import CheckpointError

    try:
        model, cfg, data, dev = load_for_eval(checkpoint, config, overrides, device)
        console.print(data.summary(), highlight=False)
        run_eval(model, cfg, data, dev, output, rerank, flip, visualize)
    except (DatasetError, CheckpointError, FileNotFoundError) as e:
        fail(str(e))
    console.print(
        f"wrote {output / 'metrics.json'}" + (f" and {output / 'report.html'}" if visualize else "")
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
