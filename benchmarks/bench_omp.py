"""Two torch jobs on one small machine: OpenMP's wait policy, alone and beside a busy one.

PyTorch's OpenMP threads spin while they wait for work (``OMP_WAIT_POLICY`` unset = active).
Alone that is the fastest; beside another job that also spins on the same cores it can cost
many times the work. Each variant is one worker process of ``bench_against.py`` (the demo
training step, seeded tensors), median s/step, variants alternated each round:

- alone: the default policy vs ``OMP_WAIT_POLICY=PASSIVE``;
- beside a busy job: the same two, while another process trains Baseline steps without end
  (the shape of a study running while you run tests or a search).

Usage: python benchmarks/bench_omp.py [--method baseline] [--rounds 3] [--steps 4]
           >> benchmarks/results_omp.txt
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import header  # noqa: E402
from bench_against import run_worker  # noqa: E402

SRC = HERE.parent / "src"

POLICIES = ("default", "PASSIVE")


def _env(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return env


def _time(method: str, steps: int, policy: str) -> float:
    return run_worker(SRC, "demo", method, steps, env=_env(policy))["s_per_step"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="baseline")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)
    res = {(s, p): [] for s in ("alone", "beside") for p in POLICIES}
    busy_argv = [sys.executable, str(HERE / "bench_against.py"), "--worker", "demo", "baseline"]
    for situation in ("alone", "beside"):
        busy = None
        if situation == "beside":  # the busy job keeps the default (spinning) policy
            busy = subprocess.Popen([*busy_argv, "100000", ""], stdout=subprocess.DEVNULL)
            time.sleep(20)  # past its start-up
        try:
            for r in range(args.rounds):
                for policy in POLICIES if r % 2 == 0 else POLICIES[::-1]:
                    res[situation, policy].append(_time(args.method, args.steps, policy))
                    took = res[situation, policy][-1]
                    print(f"{situation} {policy}: {took:.3f}", file=sys.stderr)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    med = {k: statistics.median(v) for k, v in res.items()}
    lines = [
        header(f"OpenMP wait policy, demo {args.method} step, alone and beside a busy job"),
        f"# python benchmarks/bench_omp.py --method {args.method} --rounds {args.rounds} "
        f"--steps {args.steps}",
        f"{'situation':10s} {'default s/step':>15s} {'PASSIVE s/step':>15s} "
        f"{'PASSIVE/default':>16s}",
    ]
    for s in ("alone", "beside"):
        d, p = med[s, "default"], med[s, "PASSIVE"]
        lines.append(f"{s:10s} {d:15.3f} {p:15.3f} {p / d:16.2f}")
    print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
