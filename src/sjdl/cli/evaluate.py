"""``sjdl eval``: rank the foggy query/gallery with a checkpoint; metrics, pictures, report."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from .common import config_from_cli, console, err_console, fail
from .progress import progress_bar

RANK_KEYS = ["mAP", "mINP", "R1", "R5", "R10"]


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _put(cfg, key: str, value) -> None:
    *path, last = key.split(".")
    for part in path:
        cfg = getattr(cfg, part)
    setattr(cfg, last, copy.deepcopy(value))


def _fixed_keys(ckpt_cfg) -> list[str]:
    """Keys a checkpoint fixes: its method, every model key but the pretrained file (nested
    sections flattened), its evaluation input size."""
    keys = ["method", "data.size_test"]
    for k, v in dataclasses.asdict(ckpt_cfg.model).items():
        if k != "pretrained":
            keys += [f"model.{k}.{sub}" for sub in v] if isinstance(v, dict) else [f"model.{k}"]
    return keys


def checkpoint_wins(cfg, ckpt_cfg, overrides, ckpt_path) -> list[str]:
    """Give ``cfg`` the checkpoint's model and input size. A command-line override that
    differs is an error; a differing config-file value is replaced (returned as notes)."""
    from ..config import ConfigError, parse_overrides

    given = parse_overrides(overrides or [])
    notes = []
    for key in _fixed_keys(ckpt_cfg):
        mine, theirs = _get(cfg, key), _get(ckpt_cfg, key)
        if mine == theirs:
            continue
        if key in given:
            raise ConfigError(
                f"{key}={mine} conflicts with the checkpoint {ckpt_path} ({key}={theirs}): "
                "the model and input size of a checkpoint cannot be changed at evaluation"
            )
        notes.append(f"{key}={theirs} (the config says {mine})")
        _put(cfg, key, theirs)
    return notes


def load_for_eval(checkpoint, config, overrides, device_name=None):
    """(model, cfg, data, device): the model from the checkpoint (or fresh), data from the
    config; with a checkpoint, its model and input size win over the config."""
    from ..config import ConfigError, load_config, resolve_device
    from ..data import read_dataset
    from ..models import build_model
    from ..models.io import checkpoint_config, load_model, read_metadata, resolve_checkpoint

    if checkpoint is not None:
        checkpoint = resolve_checkpoint(checkpoint)
        meta = read_metadata(checkpoint)
        ckpt_cfg = checkpoint_config(checkpoint, meta)
        try:
            if config is None:  # the run's own config, with overrides
                cfg = load_config(overrides=overrides or [], text=meta["config"])
            else:
                cfg = config_from_cli(config, overrides)
            notes = checkpoint_wins(cfg, ckpt_cfg, overrides, checkpoint)
        except ConfigError as e:
            fail(str(e))
        if notes:
            err_console.print(
                f"[yellow]from the checkpoint {escape(str(checkpoint))}:[/] "
                + escape("; ".join(notes)),
                highlight=False,
            )
    else:
        cfg = config_from_cli(config, overrides)
    device = resolve_device(
        device_name or cfg.train.device, "--device" if device_name else "train.device"
    )
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
    rerank=None,
    flip=None,
    visualize=False,
    title="sjdl eval",
    checkpoint: Path | None = None,
):
    """Evaluate, print the table, write metrics.json (+ pictures and report.html).
    ``rerank`` / ``flip`` default to ``test.rerank`` / ``test.flip`` of ``cfg``."""
    from ..data import eval_loader
    from ..evaluation.evaluator import evaluate
    from ..storage import sha256_file as sha256

    rerank = cfg.test.rerank if rerank is None else rerank
    flip = cfg.test.flip if flip is None else flip

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
    q = result.quality
    judged = "below_input" in q  # each restoration compared with its own foggy input
    for k in RANK_KEYS + (["PSNR", "SSIM"] if q else []) + (["input PSNR", "below input"] * judged):
        table.add_column(k, justify="right")
    vals = [f"{100 * metrics[k]:.2f}" for k in RANK_KEYS]
    if q:
        vals += [f"{q['PSNR']:.2f}", f"{q['SSIM']:.4f}"]
    if judged:
        vals += [f"{q['input_PSNR']:.2f}", f"{q['below_input']} of {q['num_images']}"]
    table.add_row(*vals)
    console.print(table)
    console.print(
        f"{result.ranking.num_valid} queries ranked, {result.ranking.num_skipped} "
        f"skipped (no match in another camera){_unreadable(result.skipped, data)}; "
        f"feature {cfg.test.feature}, {cfg.test.metric}, flip {flip}, re-ranking {rerank}, "
        f"size {cfg.data.size_test[0]}x{cfg.data.size_test[1]}",
        highlight=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "metrics": metrics,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_sha256": None if checkpoint is None else sha256(checkpoint),
        "method": cfg.method,
        "backbone": cfg.model.backbone,
        "size_test": list(cfg.data.size_test),
        "feature": cfg.test.feature,
        "metric": cfg.test.metric,
        "normalize": cfg.test.normalize,
        "flip": flip,
        "rerank": rerank,
        "dataset": data.name,
        "test_set": cfg.data.test_set,
        "unreadable_images": result.skipped,
    }
    from ..storage import write_atomic

    write_atomic(out_dir / "metrics.json", json.dumps(info, indent=2))
    if visualize:
        write_pictures(result, data, out_dir, title, metrics)
    return result


def _unreadable(paths: list[str], data) -> str:
    """', N unreadable image(s) not ranked (q query, g gallery): first few' or ''."""
    if not paths:
        return ""
    queries = {str(r.path) for r in data.query}
    nq = sum(p in queries for p in paths)
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return (
        f", {len(paths)} unreadable image(s) not used ({nq} query, {len(paths) - nq} "
        f"gallery: {shown})"
    )


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


EVAL_OUTPUTS = ("metrics.json", "report.html", "restoration.png", "rank_lists")


def eval_command(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML or bundled name."),
    checkpoint: Path | None = typer.Option(None, help="Weights file or run folder."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides key=value."),
    rerank: bool | None = typer.Option(
        None, "--rerank/--no-rerank", help="k-reciprocal re-ranking (default: test.rerank)."
    ),
    flip: bool | None = typer.Option(
        None, "--flip/--no-flip", help="Average features of image and mirror (default: test.flip)."
    ),
    visualize: bool = typer.Option(False, help="Write rank lists, restorations, report.html."),
    output: Path = typer.Option(Path("runs/eval"), "--output", "-o", help="Output folder."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 (default: train.device)."),
    overwrite: bool = typer.Option(
        False, help="Replace an earlier evaluation's metrics.json and pictures in -o."
    ),
):
    """Evaluate a model on the foggy query/gallery: mAP, mINP, CMC, PSNR/SSIM of J_enh."""
    from ..config import ConfigError
    from ..data import DatasetError
    from ..data.io import ImageReadError
    from ..models.io import CheckpointError, resolve_checkpoint

    if output.exists() and not output.is_dir():
        fail(f"{output}: is a file; -o expects a folder (for metrics.json and pictures)")
    earlier = [output / n for n in EVAL_OUTPUTS if (output / n).exists()]
    if earlier and not overwrite:
        fail(
            f"{earlier[0]} exists (an earlier evaluation); pass --overwrite to replace it or "
            "choose another -o"
        )
    try:
        model, cfg, data, dev = load_for_eval(checkpoint, config, overrides, device)
        console.print(data.summary(), highlight=False)
        ckpt = None if checkpoint is None else resolve_checkpoint(checkpoint)
        run_eval(model, cfg, data, dev, output, rerank, flip, visualize, checkpoint=ckpt)
    except (DatasetError, CheckpointError, FileNotFoundError, ImageReadError, ConfigError) as e:
        fail(str(e))
    console.print(
        f"wrote {output / 'metrics.json'}" + (f" and {output / 'report.html'}" if visualize else "")
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
