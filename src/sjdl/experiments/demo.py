"""The demo: ImageNet features vs Baseline vs SJDL vs the recommended recipe on the embedded
data, clear, foggy and unseen-fog tests,
restorations of synthetic and real foggy images, ``report.html`` and ``summary.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import load_config, resolve_device
from ..data import read_dataset
from ..data.fog_kinds import UNSEEN_KINDS
from ..engine.logger import read_metrics
from ..evaluation.plots import line_plot
from ..evaluation.report import write_report
from ..evaluation.visualize import restoration_row, save_rank_lists, save_restoration_grid, stack
from ..losses.composer import USES_REAL
from ..storage import (
    MARKER,
    OwnershipError,
    check_replaceable,
    folder_lock,
    owner,
    remove_stale_temporaries,
    save_pil,
    write_atomic,
    write_marker,
)
from .runs import (
    clear_records,
    evaluate_test,
    finished_run,
    imagenet_model,
    input_quality,
    load_run,
    real_statistics,
    restore_real,
    result_row,
    sample_records,
    train_run,
)
from .study_data import fog_unseen, read_unseen
from .study_plan import DEMO_SJDL

# Speed choices of the demo's rows on top of configs/demo.yaml (which the study runs as it
# is), measured on the development split (benchmarks/study-dev4-speed, study-dev6-every5):
# SJDL's FIRM gain and offset at 1/4 resolution and a real batch every 5th step (as the
# released code schedules it; the study's row sjdl_affine4_every5), the recipe's clear twins
# in their foggy images' batch.
TWINS_IN_BATCH = ["data.twins_in_batch=true", "data.num_ids=8"]  # 8 x 2 foggy + 16 twins
# trained rows: name -> (label, overrides on configs/demo.yaml)
TRAINED = {
    "baseline": ("Baseline", ["method=baseline"]),
    "sjdl": ("SJDL", DEMO_SJDL),
    "recommended": (
        "Recommended recipe (clear twins + consistency)",
        ["preset=recommended", *TWINS_IN_BATCH],
    ),
}
METHODS = {name: label for name, (label, _) in TRAINED.items()}
LABELS = {"imagenet": "ImageNet features, no ReID training", **METHODS}
QUICK = [
    "train.epochs=1",
    "train.max_steps_per_epoch=2",
    "train.val_ids=10",
    "train.log_every=1",
    "data.size_train=[64,32]",
    "data.size_test=[64,32]",
]
SHOWN = {  # test set -> caption of its restoration grid
    "clear": "clear test images (FIRM should leave them alone)",
    "foggy": "synthetic foggy test images (the training fog)",
    f"unseen-{UNSEEN_KINDS[0]}": f"{UNSEEN_KINDS[0]} fog no training saw",
}
REAL_CROPS = 64  # real foggy crops measured (haze statistics); every 8th is pictured


def _curves(runs: dict[str, Path], out: Path) -> list[tuple[str, Path]]:
    loss, val = {}, {}
    for method, run in runs.items():
        rows = read_metrics(run)
        loss[method] = [(r["step"], r["syn/total"]) for r in rows if "syn/total" in r]
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


def _unseen_mean(rows: list[dict], model: str) -> dict:
    """The "unseen" row of ``model``: the mean of its rows over the unseen fog kinds."""
    kinds = [r for r in rows if r["model"] == model and r["test"].startswith("unseen-")]
    mean = {"model": model, "test": "unseen"}
    for key in ("mAP", "R1", "R5", "PSNR", "SSIM", "input_PSNR"):
        vals = [r.get(key) for r in kinds if r.get(key) is not None]
        mean[key] = sum(vals) / len(vals) if len(vals) == len(kinds) and kinds else None
    for key in ("below_input", "restored"):  # counts: summed over the kinds
        vals = [r.get(key) for r in kinds]
        mean[key] = sum(vals) if kinds and None not in vals else None
    return mean


def _fmt(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _input_psnr(row: dict) -> str:
    """The inputs' own PSNR; on clear test images the input is the clear image itself."""
    if row["test"] == "clear" and row.get("input_PSNR") is not None:
        return "identical"
    return _fmt(row.get("input_PSNR"))


def _table(rows: list[dict], inq: dict) -> tuple[str, list[str], list[list[str]]]:
    header = ["model", "test images", "mAP", "R1", "R5", "PSNR of J_enh (dB)", "SSIM of J_enh"]
    header += ["PSNR of the input (dB)", "J_enh below its input"]
    body = [
        [LABELS[r["model"]], r["test"], _fmt(r["mAP"]), _fmt(r["R1"]), _fmt(r["R5"])]
        + [_fmt(r["PSNR"]), _fmt(r["SSIM"], 3), _input_psnr(r)]
        + ["–" if r.get("below_input") is None else f"{r['below_input']} of {r['restored']}"]
        for r in rows
    ]
    body.append(["foggy input itself", "foggy", "", "", "", _fmt(inq.get("PSNR"))])
    body[-1] += [_fmt(inq.get("SSIM"), 3), "", ""]
    return ("ReID and restoration on the demo test set (mAP, R1, R5 in %)", header, body)


# what a demo folder holds (a rerun replaces these; anything else there stops it): its files,
# data, run folders and their locks (a killed run can leave one; the kernel has released it)
OWN_FILES = ("report.html", "summary.json", "loss_curves.png", "val_map.png")
OWN = (*OWN_FILES, "data", *TRAINED, *(f"{m}.lock" for m in TRAINED))


def _earlier_demo(out: Path) -> bool:
    """A folder written by a version of ``sjdl demo`` from before the ownership marker."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"rows", "quick", "input_quality"} <= summary.keys()


def check_output(out: Path) -> None:
    """Refuse an output that is a file, or a non-empty folder that is not an earlier demo's
    or holds files the demo did not write (a rerun replaces only the demo's own files)."""
    if out.exists() and not out.is_dir():
        raise OwnershipError(f"{out}: a file, not a folder; choose another output folder (-o)")
    if not out.is_dir():
        return
    remove_stale_temporaries(out, [*OWN_FILES, MARKER])  # of a demo killed while writing
    if not any(out.iterdir()):
        return
    if owner(out) is None and not _earlier_demo(out):
        raise OwnershipError(
            f"{out}: not empty and not the folder of an earlier sjdl demo; the demo writes "
            "report.html, summary.json and run folders there: choose a new or empty folder (-o)"
        )
    check_replaceable(out, "demo", OWN, "sjdl demo")


def check_rows(rows: list[str] | None) -> list[str]:
    """The trained rows to run, in the demo's order (None: all); one-line error otherwise."""
    if rows is None:
        return list(TRAINED)
    bad = [r for r in rows if r not in TRAINED]
    if bad or not rows:
        what = f"unknown demo row {bad[0]!r}" if bad else "no demo row given"
        raise ValueError(f"{what} (allowed: {', '.join(TRAINED)}; imagenet always runs)")
    return [r for r in TRAINED if r in rows]


def run_demo(
    out: Path,
    quick: bool = False,
    extra: list[str] | None = None,
    log=print,
    progress=None,
    rows: list[str] | None = None,
    retrain: bool = False,
):
    """Run the whole demo into ``out`` (``rows``: the trained rows, default all); returns the
    path of ``report.html``. A row whose training an earlier run of the demo finished there
    with the same config and code is reused, unless ``retrain``."""
    chosen = check_rows(rows)
    check_output(out)
    with folder_lock(out, "the demo"):
        check_output(out)  # as it is now that no other demo can write it
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "demo", "sjdl demo")
        return _run(out, quick, extra, log, progress, chosen, retrain)


def _run(out: Path, quick: bool, extra, log, progress, chosen: list[str], retrain) -> Path:
    t0 = time.perf_counter()
    base = [*(QUICK if quick else []), *(extra or [])]
    cfg = load_config("demo", ["method=baseline", *base])
    device = resolve_device(cfg.train.device)
    data = read_dataset(cfg.data, with_real=True)
    tests = {"foggy": (data.query, data.gallery)}
    tests["clear"] = (clear_records(data.query), clear_records(data.gallery))
    clear = {"query": [r.clear for r in data.query], "gallery": [r.clear for r in data.gallery]}
    for kind in UNSEEN_KINDS:  # fog kinds no training uses (README "Generalisation")
        root = fog_unseen(clear, out / "data" / f"unseen-{kind}", kind, cfg.train.seed)
        tests[f"unseen-{kind}"] = read_unseen(root)
    rows, figures, runs, notes, real, cfgs = [], [], {}, [], {}, {}

    model = imagenet_model(cfg, device)
    for test, (q, g) in tests.items():
        rows.append(result_row("imagenet", test, evaluate_test(model, cfg, q, g, device)))
    rows.append(_unseen_mean(rows, "imagenet"))
    crops = sample_records(data.real_train, REAL_CROPS)
    for method in chosen:
        label, overrides = TRAINED[method]
        run_cfg = load_config("demo", [*overrides, *base])
        seconds, why = (None, "") if retrain else finished_run(out / method, run_cfg)
        reused = seconds is not None  # an earlier (interrupted) demo trained it: same config, code
        if reused:
            log(f"{label}: reusing the finished training in {out / method} (--retrain: again)")
        else:
            earlier = why and (out / method / "config.yaml").is_file()
            log(f"{label}: training on the demo set" + (f" (not reused: {why})" if earlier else ""))
            seconds = train_run(run_cfg, out / method, log, progress, overwrite=True)
        model, run_cfg = load_run(out / method, device)
        cfgs[method] = run_cfg
        for test, (q, g) in tests.items():
            result = evaluate_test(model, run_cfg, q, g, device)
            rows.append(result_row(method, test, result))
            if test == "foggy":
                pics = save_rank_lists(result, q, g, out / method / "rank_lists")
                if pics:
                    figures.append((f"{label}: rank lists on the foggy test set", pics[-1]))
            if test in SHOWN:  # FIRM on clear, training-fog and unseen-fog test images
                name = "restoration.png" if test == "foggy" else f"restoration_{test}.png"
                grid = save_restoration_grid(result.samples, out / method / name)
                if grid:
                    figures.append((f"{label} on {SHOWN[test]}: foggy | J_enh | clear", grid))
        rows.append(_unseen_mean(rows, method))
        if model.firm is not None:
            foggy, restored = restore_real(model, run_cfg, crops, device)
            real[method] = real_statistics(foggy, restored)
            pic = out / method / "real_restorations.png"
            shown = zip(foggy[::8], restored[::8], strict=True)
            save_pil(stack([restoration_row(f, j) for f, j in shown]), pic)
            figures.append(
                (f"{label} on real foggy crops (DAWN, no ground truth): foggy | J_enh", pic)
            )
        epochs = [r for r in read_metrics(out / method) if r["kind"] == "epoch"]
        rate = epochs[-1]["images_per_s"] if epochs else float("nan")
        again = f" (by an earlier run of the demo in {out}, reused: same config and code)"
        notes.append(
            f"{label}: {seconds:.0f} s of training, {rate:.1f} synthetic images/s"
            + (again if reused else "")
        )
        runs[method] = out / method
    figures += _curves(runs, out)
    inq = input_quality(cfg, data.query + data.gallery)
    seconds = time.perf_counter() - t0
    summary = {
        "seconds": seconds,
        "input_quality": {"PSNR": inq.get("PSNR"), "SSIM": inq.get("SSIM")},
        "rows": rows,
        "real_crops": real,
        "device": str(device),
        "quick": quick,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    notes += _notes(cfg, seconds, quick, real, cfgs)
    return write_report(
        out / "report.html",
        "sjdl demo: ImageNet features vs "
        + " vs ".join(TRAINED[m][0].split(" (")[0] for m in chosen)
        + " in fog",
        [_table(rows, inq)],
        figures,
        notes,
    )


def _row_note(method: str, cfg) -> str:
    """What a trained row does beyond Baseline, read from the config it was trained with."""
    d, firm = cfg.data, cfg.model.firm
    parts = []
    if d.clear_twins:
        how = (
            f"in the same batch ({d.num_ids} ids x {d.num_instances} foggy images + their "
            "twins a step)"
            if d.twins_in_batch
            else "as further training images of its id"
        )
        parts.append(f"also trains on each foggy image's clear twin, {how}")
    if cfg.loss.lambda_consistency > 0:
        parts.append("pulls a foggy image's embedding to its clear twin's")
    if cfg.method != "baseline":
        if firm.output == "affine":
            res = "full" if firm.scale == 1 else f"1/{firm.scale}"
            parts.append(
                f"FIRM predicts a per-pixel gain and offset for the foggy image at {res} "
                f"resolution (model.firm.output=affine, scale {firm.scale})"
            )
        else:
            parts.append(f"FIRM's output is {firm.output} (model.firm.output)")
        k = cfg.train.real_every
        if cfg.method in USES_REAL and k > 1:
            parts.append(
                f"a real foggy batch every {k}th step (train.real_every={k}"
                + (", as the released code schedules it)" if k == 5 else ")")
            )
    return f"{METHODS[method]}: " + ("; ".join(parts) if parts else "the ReID network alone")


def _notes(cfg, seconds: float, quick: bool, real: dict, cfgs: dict) -> list[str]:
    size = "x".join(map(str, cfg.data.size_test))
    out = [
        f"whole demo: {seconds:.0f} s" + (" (quick mode: a pipeline check only)" if quick else ""),
        f"All rows: {cfg.model.backbone} from its ImageNet weights, {size} images, features "
        "L2-normalised, Euclidean distance. 'imagenet' = those weights with no ReID training "
        "(GAP feature, last stride 2 as trained on ImageNet); the trained rows are trained "
        f"with the same epochs, schedule and seed (configs/demo.yaml, last stride "
        f"{cfg.model.last_stride}).",
        *(_row_note(method, c) for method, c in cfgs.items()),
        f"Unseen fog: the test images fogged with {' and '.join(UNSEEN_KINDS)} fog (sjdl fog "
        "--kind), which no training uses; 'unseen' is the mean over those kinds.",
    ]
    for method, s in real.items():
        out.append(
            f"{METHODS[method]} on {REAL_CROPS} real foggy crops: mean dark channel "
            f"{s['input_dark_channel']:.3f} -> {s['restored_dark_channel']:.3f}, RMS contrast "
            f"{s['input_rms_contrast']:.3f} -> {s['restored_rms_contrast']:.3f}, TV per pixel "
            f"{s['input_tv_per_pixel']:.4f} -> {s['restored_tv_per_pixel']:.4f}"
        )
    return out
