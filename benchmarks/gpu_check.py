"""CUDA checks in one script (run on a GPU machine): AMP training steps at 384x384 per method,
fp32 vs fp16 autocast vs channels_last throughput, peak memory, the real engine with AMP on
the demo data, DDP over NCCL via torchrun, and evaluation speed.

Usage: PYTHONPATH=src python benchmarks/gpu_check.py [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402
from bench_train import run  # noqa: E402


def section(title):
    print(f"\n## {title}", flush=True)


def throughput(steps: int):
    section("training throughput, ResNet-50, 384x384, batch 6x6 (+ real 6x6 for sjdl)")
    dev = torch.device("cuda")
    print(f"{'variant':40s} {'syn img/s':>10s} {'all img/s':>10s} {'peak GiB':>9s}")
    for method, ac, cl in [
        ("baseline", None, False),
        ("baseline", torch.float16, False),
        ("jdl", torch.float16, False),
        ("sjdl", None, False),
        ("sjdl", torch.float16, False),
        ("sjdl", torch.float16, True),
        ("sjdl", torch.bfloat16, False),
    ]:
        torch.cuda.reset_peak_memory_stats()
        syn, total = run(method, "resnet50", 384, steps, 6, 6, dev, ac, cl)
        peak = torch.cuda.max_memory_allocated() / 2**30
        name = (
            method
            + (f" + {str(ac).split('.')[-1]} autocast" if ac else " fp32")
            + (" + channels_last" if cl else "")
        )
        print(f"{name:40s} {syn:10.1f} {total:10.1f} {peak:9.1f}", flush=True)


def engine_amp(tmp: Path):
    section("real engine on CUDA: sjdl, AMP + GradScaler, demo data at 384x384, 8 steps")
    from sjdl.config import load_config
    from sjdl.engine import train

    cfg = load_config(
        "demo",
        [
            "model.backbone=resnet50",
            "data.size_train=[384,384]",
            "data.size_test=[384,384]",
            "train.epochs=1",
            "train.max_steps_per_epoch=8",
            "train.amp=true",
            "data.workers=4",
            "data.num_ids=6",
            "data.num_instances=2",
            "train.val_ids=20",
        ],
    )
    t = time.perf_counter()
    train(cfg, tmp / "engine", log=print)
    print(f"engine run: {time.perf_counter() - t:.1f} s (incl. validation on 20 ids)")
    print((tmp / "engine" / "train.log").read_text()[-600:])


def ddp_nccl(tmp: Path):
    section("DistributedDataParallel over NCCL: torchrun --nproc_per_node=1, 4 steps")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=1",
        "-m",
        "sjdl",
        "train",
        "--config",
        "demo",
        "-o",
        str(tmp / "ddp"),
        "train.epochs=1",
        "train.max_steps_per_epoch=4",
        "train.sync_bn=true",
        "train.val_ids=10",
        "model.backbone=resnet50",
        "data.size_train=[256,256]",
        "data.size_test=[256,256]",
    ]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    print(f"exit code {res.returncode} in {time.perf_counter() - t:.1f} s")
    print(res.stdout[-800:] + res.stderr[-1500:])
    log = tmp / "ddp" / "train.log"
    if log.is_file():
        print("train.log tail:", log.read_text()[-400:])


def eval_speed():
    section("evaluation: 1000 x 13000 x 2048-d distances on GPU + ranking")
    from sjdl.evaluation import evaluate_ranking, pairwise_distance

    q, g = torch.randn(1000, 2048, device="cuda"), torch.randn(13000, 2048, device="cuda")
    qp, gp = torch.randint(0, 1000, (1000,)), torch.randint(0, 1000, (13000,))
    torch.cuda.synchronize()
    t = time.perf_counter()
    d = pairwise_distance(q, g)
    torch.cuda.synchronize()
    t_d = time.perf_counter() - t
    t = time.perf_counter()
    r = evaluate_ranking(d.cpu(), qp, gp, torch.zeros(1000), torch.ones(13000))
    print(f"distances {t_d:.3f} s, ranking {time.perf_counter() - t:.3f} s, mAP {r.mAP:.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    print(header("sjdl GPU check"))
    assert torch.cuda.is_available(), "no CUDA device"
    with tempfile.TemporaryDirectory() as tmp:
        for fn in (
            lambda: throughput(args.steps),
            lambda: engine_amp(Path(tmp)),
            lambda: ddp_nccl(Path(tmp)),
            eval_speed,
        ):
            try:
                fn()
            except Exception as e:  # keep going: every section reports on its own
                print(f"FAILED: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
