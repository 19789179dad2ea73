"""Calibrate the unsupervised restoration losses of Eq. 11 on the embedded demo data.

Trains the demo configuration (configs/demo.yaml) once per variant of the real-batch loss
(colour entropy weight, self-constraint form and weight, dark-channel / TV weights), then
measures:
- PSNR/SSIM of J_enh on the synthetic foggy test images (never trained on), next to the
  foggy input's own;
- on 64 real foggy crops (a fixed sample of the unlabelled DAWN training crops, which only
  the unsupervised losses see; the demo has no held-out real set): mean dark channel, RMS contrast
  and TV per pixel of the input and of J_enh (haze lowers contrast and raises the dark
  channel; noise and checkerboard artefacts raise TV);
- ReID mAP / R1 on the foggy evaluation images.

``--split dev`` (the default) measures on the demo's validation split (the training ids held
out for model selection, train.val_ids) less the study's test ids (160, split seed 0); the
demo's test ids are never among them. So choices made here see no test id. ``--split test``
measures on the demo's test images (how the first tables, benchmarks/calibration*/, were
made: their choices saw test ids).

    python benchmarks/calibrate_eq11.py train.val_ids=100   # benchmarks/calibration-dev/
    python benchmarks/calibrate_eq11.py --only printed "phase 0.01" --out /tmp/cal

Finished variants are not rerun (their row is read back from ``rows.jsonl``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from pathlib import Path

from _common import header

from sjdl.config import load_config, resolve_device
from sjdl.data import demo_root, read_dataset
from sjdl.data.records import split_validation
from sjdl.engine.logger import read_metrics
from sjdl.experiments.runs import (
    evaluate_test,
    input_quality,
    load_run,
    real_statistics,
    restore_real,
    sample_records,
    train_run,
)
from sjdl.experiments.study_data import source_images, split_ids
from sjdl.experiments.study_plan import StudySettings
from sjdl.storage import save_pil, write_atomic

CE_DC_TV = ["loss.lambda_ce=0.01", "loss.lambda_dc=1e-5", "loss.lambda_tv=1e-5"]
VARIANTS: dict[str, list[str]] = {
    "none (jdl)": ["method=jdl"],
    "printed: CE 1, DC/TV 1e-5, SC 300 spectrum": ["preset=printed"],
    "CE 0.01, DC/TV 1e-5, SC phase 0.01": [*CE_DC_TV, "loss.sc_mode=phase", "loss.lambda_sc=0.01"],
    "CE 0.01, DC/TV 1e-5, no SC": ["method=sjdl_wo_sc", *CE_DC_TV],
    "CE 0.01, DC/TV 1e-5, SC phase 0.1": [*CE_DC_TV, "loss.sc_mode=phase", "loss.lambda_sc=0.1"],
    "CE 0.01, DC/TV 1e-5, SC phase 1": [*CE_DC_TV, "loss.sc_mode=phase", "loss.lambda_sc=1"],
    "CE 0.01, DC/TV 1e-4, SC phase 0.01": [
        "loss.lambda_ce=0.01",
        "loss.lambda_dc=1e-4",
        "loss.lambda_tv=1e-4",
        "loss.sc_mode=phase",
        "loss.lambda_sc=0.01",
    ],
    "none (jdl), FIRM output (tanh+1)/2 as in the paper": ["method=jdl", "model.firm.output=unit"],
    "CE 0.001, DC/TV 1e-5, SC phase 0.01": [
        "loss.lambda_ce=0.001",
        "loss.lambda_dc=1e-5",
        "loss.lambda_tv=1e-5",
        "loss.sc_mode=phase",
        "loss.lambda_sc=0.01",
    ],
    "CE 0.001, DC/TV 1e-6, SC phase 0.1": [
        "loss.lambda_ce=0.001",
        "loss.lambda_dc=1e-6",
        "loss.lambda_tv=1e-6",
        "loss.sc_mode=phase",
        "loss.lambda_sc=0.1",
    ],
    "CE 0.001, DC/TV 1e-6, SC phase 0.01": [
        "loss.lambda_ce=0.001",
        "loss.lambda_dc=1e-6",
        "loss.lambda_tv=1e-6",
        "loss.sc_mode=phase",
        "loss.lambda_sc=0.01",
    ],
}
REAL_CROPS = 64


def run_folder(name: str, runs: Path, base: list[str]) -> Path:
    key = name if not base else name + "|" + " ".join(base)  # other settings, other runs
    return runs / hashlib.sha1(key.encode()).hexdigest()[:10]


@functools.cache
def study_test_ids() -> frozenset:
    """The study's test ids (computed once: every variant's evaluation excludes them)."""
    s = StudySettings()
    _, ids = split_ids(source_images(demo_root() / "FVRID_syn"), s.test_ids, s.split_seed)
    return frozenset(ids)


def evaluation_split(data, cfg, split: str):
    """(query, gallery) records: the validation ids less the study's test ids (``dev``), or
    the demo's test set (``test``)."""
    if split == "test":
        return data.query, data.gallery
    _, query, gallery = split_validation(data.train, cfg.train.val_ids)
    keep = set(r.pid for r in query) - study_test_ids()
    return [r for r in query if r.pid in keep], [r for r in gallery if r.pid in keep]


def measure(name: str, overrides: list[str], runs: Path, base: list[str], split: str) -> dict:
    cfg = load_config("demo", ["method=sjdl", *base, *overrides])
    run = run_folder(name, runs, base)
    done = [r for r in read_metrics(run) if r["kind"] == "epoch"] if run.is_dir() else []
    if done and done[-1]["epoch"] == cfg.train.epochs:  # trained before: measure again only
        seconds = None
    else:
        seconds = train_run(cfg, run, log=lambda *a, **k: None, overwrite=True)
    device = resolve_device(cfg.train.device)
    model, cfg = load_run(run, device)
    data = read_dataset(cfg.data, with_real=True)
    result = evaluate_test(model, cfg, *evaluation_split(data, cfg, split), device)
    foggy, restored = restore_real(model, cfg, sample_records(data.real_train, REAL_CROPS), device)
    rank = result.ranking.as_dict()
    return {
        "variant": name,
        "overrides": overrides,
        "base": base,
        "split": split,
        "train_s": seconds,
        "mAP": 100 * rank["mAP"],
        "R1": 100 * rank["R1"],
        "syn_PSNR": result.quality.get("PSNR"),
        "syn_SSIM": result.quality.get("SSIM"),
        **real_statistics(foggy, restored),
    }


def table(rows: list[dict], inq: dict, real_in: dict, split: str) -> str:
    where = "dev (val-id)" if split == "dev" else "foggy-test"
    lines = [
        "| real-batch loss | syn. PSNR (dB) | syn. SSIM | real dark channel | real RMS contrast "
        f"| real TV/pixel | {where} mAP | R1 |",
        "|---|---|---|---|---|---|---|---|",
        f"| *foggy input itself* | {inq['PSNR']:.2f} | {inq['SSIM']:.3f} "
        f"| {real_in['input_dark_channel']:.3f} | {real_in['input_rms_contrast']:.3f} "
        f"| {real_in['input_tv_per_pixel']:.4f} | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['syn_PSNR']:.2f} | {r['syn_SSIM']:.3f} "
            f"| {r['restored_dark_channel']:.3f} | {r['restored_rms_contrast']:.3f} "
            f"| {r['restored_tv_per_pixel']:.4f} | {r['mAP']:.2f} | {r['R1']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--out",
        type=Path,
        help="table folder (default benchmarks/calibration-dev, or calibration with --split test)",
    )
    ap.add_argument("--runs", type=Path, default=Path("runs/calibrate_eq11"), help="run folders")
    ap.add_argument("--only", nargs="*", help="substrings of variant names to run")
    ap.add_argument(
        "--split",
        choices=("dev", "test"),
        default="dev",
        help="measure on the held-out validation ids (dev) or the demo's test images",
    )
    ap.add_argument(
        "--sheet",
        action="store_true",
        help="also write real_crops.png: 8 real crops "
        "restored by every variant run here, side by side (to look at artefacts)",
    )
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every variant")
    args = ap.parse_args(argv)
    if args.out is None:
        name = "calibration-dev" if args.split == "dev" else "calibration"
        args.out = Path(__file__).parent / name
    unknown = [x for x in args.only or [] if not any(x in name for name in VARIANTS)]
    if unknown:  # before anything is written: a typo must not replace the table
        print(
            f"error: --only {unknown[0]!r} matches no variant name (names: "
            f"{'; '.join(VARIANTS)}); nothing written",
            file=sys.stderr,
        )
        sys.exit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    done_file = args.out / "rows.jsonl"
    done = {}
    if done_file.is_file():
        rows_read = map(json.loads, done_file.read_text().splitlines())
        done = {
            r["variant"]: r
            for r in rows_read
            if r.get("base", []) == args.overrides and r.get("split", "test") == args.split
        }
    rows = []
    for name, overrides in VARIANTS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        if name not in done:
            row = measure(name, overrides, args.runs, args.overrides, args.split)
            with done_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[name] = row
        rows.append(done[name])
        print(f"{name}: {json.dumps(done[name])}", file=sys.stderr)
    cfg = load_config("demo", args.overrides)
    data = read_dataset(cfg.data, with_real=True)
    query, gallery = evaluation_split(data, cfg, args.split)
    inq = input_quality(cfg, query + gallery)
    crops = sample_records(data.real_train, REAL_CROPS)
    import torch

    from sjdl.data import PairedTransform
    from sjdl.data.io import read_image

    tf = PairedTransform(tuple(cfg.data.size_test))
    real_in = real_statistics(torch.stack([tf(read_image(r.path))[1] for r in crops]), None)
    title = f"Calibration of Eq. 11 on the demo data, {args.split} split"
    text = header(title) + "\n\n" + table(rows, inq, real_in, args.split)
    write_atomic(args.out / "table.md", text + "\n")
    print(text)
    if args.sheet:
        sheet(rows, crops[::8], args)


def sheet(rows: list[dict], crops, args) -> None:
    """real_crops.png: the foggy crops, then each variant's J_enh (columns numbered as rows)."""
    from sjdl.evaluation.visualize import comparison_sheet

    device = resolve_device("auto")
    columns, legend = [], []
    for i, row in enumerate(rows, 1):
        model, cfg = load_run(run_folder(row["variant"], args.runs, args.overrides), device)
        foggy, restored = restore_real(model, cfg, crops, device)
        columns.append((f"{i}", restored))
        legend.append(f"{i}: {row['variant']}")
    sheet_img = comparison_sheet([("foggy", foggy), *columns])
    save_pil(sheet_img, args.out / "real_crops.png")
    write_atomic(args.out / "real_crops.txt", "\n".join(legend) + "\n")


if __name__ == "__main__":
    main()
