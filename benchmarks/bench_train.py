"""Training throughput per method (images/s, synthetic tensors, no data loading), side by side
in one run, plus bf16-autocast and channels_last variants on CPU.

Usage: python benchmarks/bench_train.py [--backbone resnet18] [--size 96] [--steps 6]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402

from sjdl.config import load_config  # noqa: E402
from sjdl.engine.optim import build_optimizer  # noqa: E402
from sjdl.engine.trainer import JointForward  # noqa: E402
from sjdl.losses import LossComposer  # noqa: E402
from sjdl.models import build_model  # noqa: E402


def run(method, backbone, size, steps, p, k, device, autocast=None, channels_last=False):
    cfg = load_config(overrides=[f"method={method}", f"model.backbone={backbone}"])
    torch.manual_seed(0)
    model = build_model(cfg, 100, 0).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    joint, comp = JointForward(model, False), LossComposer(cfg.loss, method)
    opt = build_optimizer(model, cfg.train)
    n = p * k
    pids = torch.arange(p).repeat_interleave(k).to(device)
    x = torch.rand(n, 3, size, size, device=device).contiguous(memory_format=fmt)
    real = torch.rand(n, 3, size, size, device=device).contiguous(memory_format=fmt)
    use_real = comp.uses_real
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        t = time.perf_counter()
        ctx = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
        with ctx:
            out, out_r, _ = joint(x, x, real if use_real else None, real if use_real else None)
            loss = comp.supervised(out, pids, x)["total"]
            if use_real:
                loss = loss + comp.unsupervised(out_r, real, None)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    per_step = sum(times[2:]) / steps
    images = n * (2 if use_real else 1)
    return n / per_step, images / per_step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--p", type=int, default=16)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    print(
        header(
            f"training throughput: {args.backbone}, {args.size}x{args.size}, "
            f"batch {args.p}x{args.k}, {device}"
        )
    )
    print(f"{'variant':34s} {'syn img/s':>10s} {'all img/s':>10s}  ratio")
    base = None
    variants = [(m, None, False) for m in ("baseline", "jdl", "sjdl_wo_sc", "sjdl")]
    low = torch.float16 if device.type == "cuda" else torch.bfloat16
    variants += [("sjdl", low, False), ("sjdl", None, True)]
    for method, ac, cl in variants:
        syn, total = run(
            method, args.backbone, args.size, args.steps, args.p, args.k, device, ac, cl
        )
        base = base or syn
        name = (
            method
            + (f" + autocast {str(ac).split('.')[-1]}" if ac else "")
            + (" + channels_last" if cl else "")
        )
        print(f"{name:34s} {syn:10.1f} {total:10.1f}  x{syn / base:.2f}")


if __name__ == "__main__":
    main()
