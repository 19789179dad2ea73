"""FIRM alone, this checkout against another commit: forward, restoration loss and backward
(gradients into the CFSM features too, as in a joint step) at the demo's shapes.

A whole training step varies by 20-40 % between rounds on a shared VM, which hides a change to
FIRM worth a few percent of the step; FIRM alone takes ~0.17 s, so many short alternating
rounds fit in a minute. Shapes: 32 images of 96x96, MobileNetV2's CFSM features and stride-4
skip (24 channels at 24x24), width 32, gain and offset at 1/4 resolution (the demo's SJDL
row), channels-last. Usage:
python benchmarks/bench_firm.py [--against 2d9888a] [--rounds 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def worker(steps: int) -> dict:
    """Median seconds of ``steps`` FIRM forward + backward passes after three warm-up ones."""
    import torch

    from sjdl.engine.memory import reuse_freed_memory
    from sjdl.losses.restoration import restoration_loss
    from sjdl.models.firm import FIRM

    reuse_freed_memory()
    torch.manual_seed(0)
    cl = torch.channels_last
    firm = FIRM(24, 4, 24, 1, "affine", 32, 4).to(memory_format=cl)
    gen = torch.Generator().manual_seed(1)
    foggy = torch.rand(32, 3, 96, 96, generator=gen).contiguous(memory_format=cl)
    clear = torch.rand(32, 3, 96, 96, generator=gen)
    feats = [torch.randn(32, 24, 24, 24, generator=gen) for _ in range(2)]
    f_c, f1 = (f.contiguous(memory_format=cl).requires_grad_() for f in feats)
    times = []
    for _ in range(steps + 3):
        firm.zero_grad(set_to_none=True)
        f_c.grad = f1.grad = None
        t = time.perf_counter()
        loss = restoration_loss(firm(foggy, f_c, f1), clear)
        loss.backward()
        times.append(time.perf_counter() - t)
    return {"s": statistics.median(times[3:]), "loss": float(loss)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="2d9888a")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return 0
    sys.path.insert(0, str(HERE))
    from _common import header, short_head
    from bench_against import export

    head = short_head()
    res: dict[str, list[dict]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory(prefix="sjdl-firm-") as tmp:
        codes = {"this": REPO / "src", "other": export(args.against, Path(tmp))}
        for r in range(args.rounds):
            for c in list(codes) if r % 2 == 0 else list(codes)[::-1]:
                env = {**os.environ, "PYTHONPATH": str(codes[c])}
                argv = [sys.executable, __file__, "--worker", str(args.steps)]
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                res[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {c: statistics.median(x["s"] for x in v) for c, v in res.items()}
    ratios = [a["s"] / b["s"] for a, b in zip(res["this"], res["other"], strict=True)]
    print(header(f"FIRM forward + backward at the demo's shapes: this ({head}) vs {args.against}"))
    print(f"# python benchmarks/bench_firm.py --against {args.against} --rounds {args.rounds}")
    print(
        f"this {1e3 * med['this']:.1f} ms, {args.against} {1e3 * med['other']:.1f} ms: "
        f"{med['this'] / med['other']:.2f}x (per round {min(ratios):.2f}-{max(ratios):.2f}x)"
    )
    print(
        f"# loss this {res['this'][-1]['loss']:.6f}, {args.against} {res['other'][-1]['loss']:.6f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
