"""Each trained row of a finished ``sjdl demo`` folder on its foggy and clear test images, as
trained and with BatchNorm statistics re-estimated (no labels) on the test gallery or on 256
synthetic foggy training images, each with its paired difference to untrained ImageNet
features (bootstrap over the demo's queries: one seed, so no seed resampling).

    python scripts/demo_bn_probe.py runs/demo > benchmarks/results_demo_bn.txt

The question it answers: is a trained row below ImageNet features on some test set because
its BN statistics are those of the foggy training images (re-estimation on the test gallery
closes the gap), or because its weights lost something (it does not)?
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from sjdl.config import load_config
from sjdl.data import eval_loader, read_dataset
from sjdl.evaluation.adapt import reestimate_bn
from sjdl.evaluation.ranking import per_query_metrics
from sjdl.evaluation.statistics import paired_difference
from sjdl.experiments.runs import (
    clear_records,
    evaluate_test,
    imagenet_model,
    load_run,
    sample_records,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import header  # noqa: E402

TRAIN_IMAGES = 256


def _ap(model, cfg, query, gallery, device) -> np.ndarray:
    r = evaluate_test(model, cfg, query, gallery, device)
    q, g = r.query, r.gallery
    return per_query_metrics(r.distmat, q.pids, g.pids, q.camids, g.camids)["AP"]


def _adapted(model, cfg, records, device):
    loader = eval_loader(records, cfg.data, cfg.test.batch_size, device)
    return reestimate_bn(model, loader, device)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo", type=Path, help="a finished `sjdl demo` output folder")
    ap.add_argument("--rows", default="baseline,recommended,sjdl")
    args = ap.parse_args(argv)
    device = torch.device("cpu")
    cfg = load_config("demo", ["method=baseline"])
    data = read_dataset(cfg.data, with_real=False)
    tests = {
        "foggy": (data.query, data.gallery),
        "clear": (clear_records(data.query), clear_records(data.gallery)),
    }
    inet = imagenet_model(cfg, device)
    ref = {t: _ap(inet, cfg, q, g, device) for t, (q, g) in tests.items()}
    train = sample_records(data.train, TRAIN_IMAGES)
    print(header(f"demo rows with BN statistics re-estimated, {args.demo}"))
    print(f"# python scripts/demo_bn_probe.py {args.demo}")
    print(f"{'row':28s} {'test':6s} {'mAP':>7s}  minus ImageNet [95 % interval]")
    for t, v in ref.items():
        print(f"{'imagenet':28s} {t:6s} {100 * np.nanmean(v):7.2f}")
    for name in args.rows.split(","):
        model, run_cfg = load_run(args.demo / name, device)
        on_train = _adapted(model, run_cfg, train, device)
        for t, (q, g) in tests.items():
            variants = {
                name: model,
                f"{name}+bn_gallery": _adapted(model, run_cfg, g, device),
                f"{name}+bn_train": on_train,
            }
            for label, m in variants.items():
                v = _ap(m, run_cfg, q, g, device)
                d = paired_difference(100 * v, 100 * ref[t])
                print(
                    f"{label:28s} {t:6s} {100 * np.nanmean(v):7.2f}  "
                    f"{d.value:+6.2f} [{d.low:+6.2f}, {d.high:+6.2f}]"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
