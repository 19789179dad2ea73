"""Training-step time of this checkout against another commit, side by side in one run.

Each round starts one worker process per (code, method), alternating the two versions, so a
machine that gets busier or quieter during the run slows both alike; every worker times the
same synthetic tensors (seeded) through the same joint forward, Eq. 11 losses, backward and
Adam step. Reported: median seconds per step over rounds, this/other ratio per method, the
SJDL/Baseline ratio of each version, and each worker's peak resident memory.

Usage: python benchmarks/bench_against.py [--against 375e79f] [--setting demo|paper128]
           [--methods baseline,sjdl] [--rounds 3] [--steps 4] >> benchmarks/results_against.txt

A method may carry config overrides after "@" (``sjdl@model.firm.output=affine``): a variant
with an option the other commit may not have, so it runs on this checkout only, unless
``--variants-both`` (the other commit has the options too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the work of each setting, as overrides on both versions' defaults (identical work)
SETTINGS = {
    "demo": ("demo", []),  # configs/demo.yaml: MobileNetV2 96x96, P x K 16 x 2, real 16
    "paper128": (
        None,  # preset paper: ResNet-50, FIRM width 64; 128x128, batch 36 = 9 ids x 4
        ["data.size_train=[128,128]", "data.num_ids=9", "data.num_instances=4"],
    ),
}


def worker(setting: str, method: str, steps: int, compiled: str = "") -> dict:
    """Time ``steps`` training steps (after two warm-up steps) in this process; ``compiled``:
    "firm" or "model" runs that part through ``torch.compile`` (bench_compile.py)."""
    import torch

    from sjdl.config import load_config
    from sjdl.engine.optim import build_optimizer
    from sjdl.engine.trainer import JointForward
    from sjdl.losses import LossComposer
    from sjdl.models import build_model

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    name, extra = SETTINGS[setting]
    method, *variant = method.split("@")  # "sjdl@key=value@...": a variant of this checkout
    cfg = load_config(name, overrides=[*extra, f"method={method}", *variant])
    if getattr(cfg.train, "reuse_freed_memory", False):  # as this version's trainer does
        from sjdl.engine.memory import reuse_freed_memory

        reuse_freed_memory()
    torch.manual_seed(0)
    model = build_model(cfg, 100, 0).train()
    fmt = torch.contiguous_format
    if getattr(cfg.train, "channels_last", False):  # as the trainer does (engine/setup.py)
        fmt = torch.channels_last
        model = model.to(memory_format=fmt)
    if compiled:
        (model.firm if compiled == "firm" else model).compile()
    joint = JointForward(model, False, cfg.train.real_bn_stats)
    comp = LossComposer(cfg.loss, method, cfg.model.firm.output)
    opt = build_optimizer(model, cfg.train)
    p, k = cfg.data.num_ids, cfg.data.num_instances
    h, w = cfg.data.size_train
    gen = torch.Generator().manual_seed(1)
    pids = torch.arange(p).repeat_interleave(k)
    foggy = torch.rand(p * k, 3, h, w, generator=gen)
    clear = (foggy * 1.3 - 0.2).clamp(0, 1)
    n_real = cfg.data.real_batch_size or p * k
    real = torch.rand(n_real, 3, h, w, generator=gen) if comp.uses_real else None
    foggy = foggy.contiguous(memory_format=fmt)
    real = real.contiguous(memory_format=fmt) if real is not None else None
    # train.cpu_amp: bfloat16 autocast around forward and losses, as the trainer does
    amp = torch.autocast("cpu", torch.bfloat16, enabled=getattr(cfg.train, "cpu_amp", False))
    # train.real_every = k: a real batch every k-th step, as the trainer schedules it; the two
    # warm-up steps take one, then step i of the timed ones takes one when i % k == 0
    every = cfg.train.real_every
    if steps % every:
        raise SystemExit(f"--steps {steps} is not a multiple of train.real_every={every}")
    times = []
    for i in range(-2, steps):
        with_real = real if i < 0 or i % every == 0 else None
        t = time.perf_counter()
        with amp:
            outs = joint(foggy, foggy, with_real, with_real)
            loss = comp.supervised(outs[0], pids, clear)["total"]
            if with_real is not None:
                loss = loss + comp.unsupervised(outs[1], with_real)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        # the median step, or with real_every > 1 the mean over whole cycles (synthetic images/s)
        "s_per_step": statistics.median(times[2:]) if every == 1 else statistics.mean(times[2:]),
        "first_step_s": times[0],
        "peak_rss_mb": rss_mb,
        "loss": float(loss.detach()),
    }


def export(commit: str, dest: Path) -> Path:
    """``src/`` of ``commit`` under ``dest`` (git archive: no checkout touched)."""
    tar = dest / "src.tar"
    with open(tar, "wb") as f:
        subprocess.run(["git", "archive", commit, "src"], cwd=REPO, stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest / "src"


def run_worker(
    src: Path, setting: str, method: str, steps: int, compiled: str = "", env=None
) -> dict:
    """One worker process on the code under ``src``; ``env``: its environment (default ours)."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(src)}
    argv = [sys.executable, __file__, "--worker", setting, method, str(steps), compiled]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"worker {method} ({src}) failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="375e79f")
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="demo")
    ap.add_argument("--methods", default="baseline,sjdl")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument(
        "--variants-both",
        action="store_true",
        help="run the methods with @ overrides on the other commit too (it has the options)",
    )
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        setting, method, steps, compiled = args.worker
        print(json.dumps(worker(setting, method, int(steps), compiled)))
        return 0
    sys.path.insert(0, str(HERE))
    from _common import header, short_head

    methods = args.methods.split(",")
    head = short_head()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sjdl-against-") as tmp:
        codes = {"this": REPO / "src", "other": export(args.against, Path(tmp))}
        res = {(c, m): [] for c in codes for m in methods}
        for r in range(args.rounds):
            order = list(codes) if r % 2 == 0 else list(codes)[::-1]
            for m in methods:
                for c in order:
                    if c == "other" and "@" in m and not args.variants_both:
                        continue
                    res[c, m].append(run_worker(codes[c], args.setting, m, args.steps))
                    print(
                        f"round {r + 1}/{args.rounds} {m} {c}: "
                        f"{res[c, m][-1]['s_per_step']:.3f} s/step",
                        file=sys.stderr,
                    )
    med = {k: statistics.median(x["s_per_step"] for x in v) for k, v in res.items() if v}
    rss = {k: max(x["peak_rss_mb"] for x in v) for k, v in res.items() if v}
    lines = [
        header(f"training step, setting {args.setting}: this ({head}) vs {args.against}"),
        f"# python benchmarks/bench_against.py --against {args.against} --setting "
        f"{args.setting} --methods {args.methods} --rounds {args.rounds} --steps {args.steps}"
        + (" --variants-both" if args.variants_both else ""),
        f"# {args.rounds} interleaved rounds, median s/step; load average {load0:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end",
        f"{'method':12s} {'this s/step':>12s} {args.against + ' s/step':>16s} {'this/other':>11s}"
        f" {'this MB':>8s} {'other MB':>9s}",
    ]
    for m in methods:
        if ("other", m) not in med:  # a variant: this checkout only
            lines.append(
                f"{m}\n{'':12s} {med['this', m]:12.3f} {'-':>16s} {'-':>11s} "
                f"{rss['this', m]:8.0f} {'-':>9s}"
            )
            continue
        lines.append(
            f"{m:12s} {med['this', m]:12.3f} {med['other', m]:16.3f} "
            f"{med['this', m] / med['other', m]:11.2f} {rss['this', m]:8.0f} "
            f"{rss['other', m]:9.0f}"
        )
    if "baseline" in methods:
        for m in methods:
            if m != "baseline":
                other = ""
                if ("other", m) in med:
                    other = f", {args.against} {med['other', m] / med['other', 'baseline']:.2f}x"
                lines.append(
                    f"# {m} / baseline step: this "
                    f"{med['this', m] / med['this', 'baseline']:.2f}x{other}"
                )
    print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
