"""Which of a finished demo's SJDL restorations are further from the clear image than their
foggy input, and are they foggier or over-corrected? Per test set with clear targets:

    python scripts/demo_restorations.py runs/demo [--row sjdl] \
        > benchmarks/results_demo_restorations.txt

For each image: PSNR of the input and of J_enh against the clear image, and the mean dark
channel (haze raises it; ``haze_statistics``) of the input, of J_enh and of the clear image.
A restoration below its input with a dark channel under the clear image's removed more haze
than there was (over-correction); one with a dark channel above its input's is foggier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from sjdl.data import eval_loader, read_dataset
from sjdl.evaluation.quality import haze_statistics, psnr
from sjdl.experiments.runs import load_run
from sjdl.experiments.study_data import read_unseen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import header  # noqa: E402


def _dark(img: torch.Tensor) -> float:
    return haze_statistics(img[None])["dark_channel"]


@torch.no_grad()
def measure(model, cfg, records) -> np.ndarray:
    """(N, 5): input PSNR, J_enh PSNR, dark channel of input, of J_enh, of the clear image."""
    rows = []
    for batch in eval_loader(records, cfg.data, cfg.test.batch_size, with_clear=True):
        j_enh = model.restore(batch["img"])[1].float().clamp(0, 1)
        for f, j, c in zip(batch["img"], j_enh, batch["clear"], strict=True):
            rows.append((psnr(f, c), psnr(j, c), _dark(f), _dark(j), _dark(c)))
    return np.array(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo", type=Path, help="a finished `sjdl demo` output folder")
    ap.add_argument("--row", default="sjdl", help="a demo row with FIRM")
    ap.add_argument("--run", type=Path, help="another run folder with FIRM, on the demo's tests")
    args = ap.parse_args(argv)
    run = args.run or args.demo / args.row
    model, cfg = load_run(run, torch.device("cpu"))
    data = read_dataset(cfg.data, with_real=False)
    tests = {"foggy": data.query + data.gallery}
    for root in sorted((args.demo / "data").glob("unseen-*")):
        q, g = read_unseen(root)
        tests[root.name] = q + g
    print(header(f"restorations against their own input, {run} ({cfg.method})"))
    given = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# python scripts/demo_restorations.py {given}")
    cols = "test images  n  below  input dB (below / rest)  loss dB mean/max  dark: in -> J_enh"
    print(cols + " (clear)  foggier")
    for test, records in tests.items():
        a = measure(model, cfg, records)
        below = a[:, 1] < a[:, 0]
        loss = a[below, 0] - a[below, 1] if below.any() else np.zeros(1)
        rest = a[~below, 0].mean() if (~below).any() else float("nan")
        inp = a[below, 0].mean() if below.any() else float("nan")
        foggier = int((a[:, 3] > a[:, 2]).sum())
        dark = f"{a[below, 2].mean():.3f} -> {a[below, 3].mean():.3f} ({a[below, 4].mean():.3f})"
        print(
            f"{test:14s} {len(a):3d} {below.sum():5d}  {inp:8.1f} / {rest:5.1f}"
            f"          {loss.mean():5.2f} / {loss.max():5.2f}   {dark}  {foggier:5d}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
