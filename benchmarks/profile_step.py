"""Where a training step spends its time (torch.profiler), per method, on synthetic tensors.

Forward time per module (CFSM, ReIDM, FIRM and FIRM's stages, each stream), the loss terms,
backward, the optimizer step, and the operators with the most self time; one table per
configuration: ``demo`` (configs/demo.yaml: MobileNetV2, 96x96, 16x2 + 16 real, FIRM width 32)
and ``paper128`` (preset paper, ResNet-50 without ImageNet weights, 128x128, 6x6 + 36 real).
Data loading is timed separately (``bench_decode.py``). Usage:
python benchmarks/profile_step.py [--configs demo,paper128] [--methods baseline,jdl,sjdl]
(a method may carry config overrides: ``sjdl@model.firm.output=affine@model.firm.scale=4``)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402

from sjdl.config import load_config  # noqa: E402
from sjdl.engine.optim import build_optimizer  # noqa: E402
from sjdl.engine.trainer import JointForward  # noqa: E402
from sjdl.losses import LossComposer  # noqa: E402
from sjdl.models import build_model  # noqa: E402

CONFIGS = {
    "demo": ("demo", ["model.pretrained="], 96, 16, 2, 16),
    "paper128": (None, ["model.pretrained="], 128, 6, 6, 36),
}
STREAM = {"value": "syn"}  # which stream the forward hooks are timing


def _label_modules(model):
    """Forward pre/post hooks that open and close a profiler range per module and stream."""
    names = {"cfsm": model.cfsm, "reidm": model.reidm}
    if model.firm is not None:
        names["firm"] = model.firm
        for part in ("head", "up1", "up2", "dehaze", "enhance"):
            names[f"firm.{part}"] = getattr(model.firm, part)
    for name, mod in names.items():
        opened = []

        def pre(_m, _a, name=name, opened=opened):
            rf = record_function(f"fwd/{STREAM['value']}/{name}")
            rf.__enter__()
            opened.append(rf)

        def post(_m, _a, _o, opened=opened):
            opened.pop().__exit__(None, None, None)

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)


def build(config: str, method: str):
    """``method`` may carry config overrides: ``sjdl@model.firm.scale=4@...``."""
    name, overrides, size, p, k, n_real = CONFIGS[config]
    method, *extra = method.split("@")
    cfg = load_config(name, [*overrides, f"method={method}", *extra])
    if cfg.train.reuse_freed_memory:  # as the trainer does (engine/setup.py)
        from sjdl.engine.memory import reuse_freed_memory

        reuse_freed_memory()
    torch.manual_seed(0)
    model = build_model(cfg, 100, 0).train()
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    _label_modules(model)
    joint = JointForward(model, False)
    comp = LossComposer(cfg.loss, method, cfg.model.firm.output)
    opt = build_optimizer(model, cfg.train)
    pids = torch.arange(p).repeat_interleave(k)

    def images(n):
        return torch.rand(n, 3, size, size).contiguous(memory_format=fmt)

    x, clear = images(p * k), images(p * k)
    real = images(n_real) if comp.uses_real else None
    return joint, comp, opt, pids, x, clear, real


def step(joint, comp, opt, pids, x, clear, real):
    with record_function("forward (all)"):
        STREAM["value"] = "syn"
        out = joint.model(x, firm_input=x, heads=("syn",))
        out_r = None
        if real is not None:
            STREAM["value"] = "real"
            out_r = joint.model(real, firm_input=real, heads=())
    with record_function("losses"):
        loss = comp.supervised(out, pids, clear)["total"]
        if real is not None:
            loss = loss + comp.unsupervised(out_r, real, None)["total"]
    opt.zero_grad(set_to_none=True)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer"):
        opt.step()


def profile_one(config: str, method: str, steps: int) -> tuple[float, dict, list]:
    parts = build(config, method)
    for _ in range(2):
        step(*parts)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step(*parts)
        wall = (time.perf_counter() - t) / steps
    ranges, ops = defaultdict(float), []
    for ev in prof.key_averages():
        if ev.key.startswith(("fwd/", "forward", "losses", "backward", "optimizer")):
            ranges[ev.key] += ev.cpu_time_total / 1e6 / steps
        else:
            ops.append((ev.self_cpu_time_total / 1e6 / steps, ev.key))
    return wall, dict(ranges), sorted(ops, reverse=True)[:8]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="demo,paper128")
    ap.add_argument("--methods", default="baseline,jdl,sjdl")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    print(header("where a training step spends its time (torch.profiler, CPU)"))
    for config in args.configs.split(","):
        base = None
        for method in args.methods.split(","):
            wall, ranges, ops = profile_one(config, method, args.steps)
            base = base or wall
            print(f"\n## {config}, {method}: {wall:.3f} s/step (x{wall / base:.2f} Baseline)")
            print(f"{'part':28s} {'s/step':>7s} {'share':>6s}")
            for key in sorted(ranges, key=lambda k: (not k.startswith("fwd"), k)):
                print(f"{key:28s} {ranges[key]:7.3f} {ranges[key] / wall:6.1%}")
            print("top operators by self time:")
            for sec, key in ops:
                print(f"  {key[:48]:48s} {sec:7.3f} {sec / wall:6.1%}")


if __name__ == "__main__":
    main()
