"""``sjdl demo``: train Baseline and SJDL on the embedded data, evaluate, restore, report."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import console, fail

METHODS = ("baseline", "sjdl")
QUICK = [
    "train.epochs=1",
    "train.max_steps_per_epoch=2",
    "train.val_ids=10",
    "train.log_every=1",
    "data.size_train=[64,32]",
    "data.size_test=[64,32]",
]


def _curves(run_dirs: dict[str, Path], out: Path) -> list[tuple[str, Path]]:
    from ..engine.logger import read_metrics
    from ..evaluation.plots import line_plot

    loss, val = {}, {}
    for method, run in run_dirs.items():
        rows = read_metrics(run)
        loss[method] = [
            (r["step"], r["syn/total"]) for r in rows if r["kind"] == "train" and "syn/total" in r
        ]
        val[method] = [(r["step"], 100 * r["mAP"]) for r in rows if r["kind"] == "val"]
    return [
        (
            "training loss on synthetic batches (triplet + ID [+ restoration])",
            line_plot(loss, out / "loss_curves.png", "synthetic-batch loss", "iteration"),
        ),
        (
            "validation mAP (%) on held-out train ids",
            line_plot(val, out / "val_map.png", "validation mAP (%)", "iteration"),
        ),
    ]


def _restore_real(model, data, cfg, device, out: Path, n: int = 8) -> Path | None:
    import torch

    from ..data import PairedTransform
    from ..data.io import read_image
    from ..evaluation.visualize import restoration_row, stack

    if not data.real_train or model.firm is None:
        return None
    step = max(1, len(data.real_train) // n)
    recs = data.real_train[::step][:n]
    tf = PairedTransform(tuple(cfg.data.size_test))
    foggy = torch.stack([tf(read_image(r.path))[1] for r in recs]).to(device)
    _, j_enh = model.restore(foggy)
    rows = [
        restoration_row(f.cpu(), j.float().clamp(0, 1).cpu(), title=r.path.name)
        for f, j, r in zip(foggy, j_enh, recs, strict=True)
    ]
    path = out / "real_restorations.png"
    stack(rows).save(path)
    return path


def run_demo(out: Path, quick: bool = False, extra: list[str] | None = None) -> Path:
    from ..config import load_config, resolve_device
    from ..data import read_dataset
    from ..engine import train
    from ..engine.logger import read_metrics
    from ..evaluation.report import metrics_table, write_report
    from ..models.io import load_model
    from .evaluate import run_eval
    from .train import EpochProgress

    t_start = time.perf_counter()
    rows, figures, runs, info = {}, [], {}, []
    for method in METHODS:
        overrides = [f"method={method}", *(QUICK if quick else []), *(extra or [])]
        cfg = load_config("demo", overrides)
        run = out / method
        console.rule(f"[bold]{method}[/]: training on the demo set")
        t = time.perf_counter()
        train(cfg, run, log=console.print, progress=EpochProgress(), overwrite=True)
        t_train = time.perf_counter() - t
        device = resolve_device(cfg.train.device)
        model, cfg_run, _ = load_model(run, device)
        data = read_dataset(cfg.data, with_real=True)
        result = run_eval(
            model,
            cfg_run,
            data,
            device,
            run / "eval",
            visualize=True,
            title=f"{method} on the foggy demo test set",
        )
        metrics = result.metrics()
        epochs = [r for r in read_metrics(run) if r["kind"] == "epoch"]
        rate = epochs[-1]["images_per_s"] if epochs else float("nan")
        metrics.update({"train_s": t_train, "train_img_s": rate})
        rows["SJDL" if method == "sjdl" else "Baseline"] = metrics
        runs[method] = run
        figures.append(
            (
                f"{method}: rank lists on the foggy test set (query blue, correct "
                "green, wrong red)",
                run / "eval" / "rank_lists" / "rank_lists.png",
            )
        )
        if (run / "eval" / "restoration.png").is_file():
            figures.append(
                (
                    "SJDL restorations of synthetic foggy test images: foggy | "
                    "restored (J_enh) | clear",
                    run / "eval" / "restoration.png",
                )
            )
        real = _restore_real(model, data, cfg_run, device, out)
        if real is not None:
            figures.append(
                ("SJDL on real foggy crops (DAWN, no ground truth): foggy | restored", real)
            )
        info.append(
            f"{method}: {cfg.train.epochs} epoch(s), {t_train:.0f} s of training, "
            f"{rate:.1f} training images/s"
        )
    figures += _curves(runs, out)
    keys = ["mAP", "mINP", "R1", "R5", "R10", "restored_PSNR", "restored_SSIM"]
    header, body = metrics_table(rows, keys)
    total = time.perf_counter() - t_start
    notes = info + [
        f"whole demo: {total:.0f} s on {resolve_device('auto')}"
        + (" (quick mode)" if quick else ""),
        "Metrics in %, PSNR in dB. Both models use the same data, schedule and seed; the demo "
        "config (configs/demo.yaml) trades the paper recipe for speed (ResNet-18 from scratch, "
        "64x64 images, few epochs), so the numbers show the pipeline working, not the paper's "
        "results.",
    ]
    return write_report(
        out / "report.html",
        "sjdl demo: Baseline vs SJDL in fog",
        [("foggy demo test set (60 queries, 60 gallery images)", header, body)],
        figures,
        notes,
    )


def demo_command(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Output folder."),
    quick: bool = typer.Option(False, help="A tiny run (< 1 minute) to check the pipeline."),
    overrides: list[str] | None = typer.Argument(None, help="Extra overrides key=value."),
):
    """Train Baseline and SJDL on the embedded demo data, evaluate both, write a report."""
    from ..data import DatasetError

    try:
        report = run_demo(output, quick, overrides)
    except (DatasetError, FileNotFoundError) as e:
        fail(str(e))
    console.print(f"[bold green]report:[/] {report.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
