"""``torch.compile`` on the training step: eager against FIRM compiled (and optionally the
whole model), this checkout, side by side in one run.

The same worker as ``bench_against.py`` (same seeded tensors, joint forward, Eq. 11 losses,
backward, Adam), one process per variant and round, variants alternated. Reported: median
s/step after two warm-up steps, the first step (compilation included), the ratio to eager and
the last step's loss (compiled code reorders float sums: equal to a few digits, not bitwise).

Usage: python benchmarks/bench_compile.py [--setting demo] [--method sjdl]
           [--variants eager,firm] [--rounds 2] [--steps 6] >> benchmarks/results_compile.txt
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import header  # noqa: E402
from bench_against import SETTINGS, run_worker  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="demo")
    ap.add_argument("--method", default="sjdl")
    ap.add_argument("--variants", default="eager,firm", help="eager, firm, model")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args(argv)
    variants = args.variants.split(",")
    src = HERE.parent / "src"
    res = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            out = run_worker(src, args.setting, args.method, args.steps, "" if v == "eager" else v)
            res[v].append(out)
            print(f"round {r + 1} {v}: {out['s_per_step']:.3f} s/step", file=sys.stderr)
    med = {v: statistics.median(x["s_per_step"] for x in res[v]) for v in variants}
    lines = [
        header(f"torch.compile, setting {args.setting}, method {args.method}"),
        f"# python benchmarks/bench_compile.py --setting {args.setting} --method {args.method}"
        f" --variants {args.variants} --rounds {args.rounds} --steps {args.steps}",
        f"{'variant':8s} {'s/step':>8s} {'vs eager':>9s} {'first step s':>13s} {'loss':>10s}",
    ]
    for v in variants:
        first = statistics.median(x["first_step_s"] for x in res[v])
        lines.append(
            f"{v:8s} {med[v]:8.3f} {med[v] / med[variants[0]]:9.2f} {first:13.1f} "
            f"{res[v][-1]['loss']:10.5f}"
        )
    print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
