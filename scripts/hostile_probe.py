"""Probe the installed ``sjdl`` CLI as a hostile but fair new user would (issue 10).

Each case (``scripts/hostile_cases/``) makes tiny inputs in a temporary folder (32x32 images
in README's FVRID layout, a ResNet-18 trained for two steps), runs ``sjdl`` with a timeout
and classifies what happened:

  ok            did the right thing (checked by the case)
  clear-error   non-zero exit with a short error, no Python traceback
  traceback     a Python traceback was printed
  silent-wrong  exit 0 but the result is wrong (per the case's check)
  data-loss     a file that existed before is gone or changed
  hang          no exit before the timeout (killed by the probe)

For a case whose right answer is a refusal, ``clear-error`` is the good outcome; a detail
starting with UNEXPECTED marks a refusal where success was the right answer.

    nice -n 19 python scripts/hostile_probe.py [--out benchmarks/results_probe.txt]
        [-k SUBSTRING ...] [--list] [--keep] [--timeout 120]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "benchmarks"))

from hostile_cases import CASES, OUTCOMES, Outcome, SetupError, World  # noqa: E402

BAD = ("traceback", "silent-wrong", "data-loss", "hang")


def run_case(world: World, case) -> tuple[Outcome, float]:
    """Run one case; ``cmd`` lists its ``sjdl`` calls (setup of shared inputs excluded)."""
    n_before, t0 = len(world.calls), time.monotonic()
    try:
        result = case.fn(world)
    except SetupError as e:
        result = Outcome("not-run", str(e))
    except Exception as e:  # a bug of the probe itself, not of sjdl
        result = Outcome("not-run", f"probe error: {type(e).__name__}: {e}")
    if not result.cmd:
        result.cmd = "\n    $ ".join(world.calls[n_before:])
    result.detail = result.detail.replace(str(world.root), "$TMP")
    return result, time.monotonic() - t0


ORDER = [
    "data",
    "config",
    "checkpoint",
    "overwrite",
    "concurrency",
    "duplicates",
    "index",
    "interruption",
    "disk-full",
    "eval-conflict",
]


def select(patterns: list[str] | None, fast_only: bool = False):
    """Cases by category (ORDER), then as registered; ``patterns``: category/name parts."""
    ranked = sorted(CASES, key=lambda c: ORDER.index(c.category) if c.category in ORDER else 99)
    chosen = [c for c in ranked if not fast_only or c.fast]
    if patterns:
        chosen = [c for c in chosen if any(p in f"{c.category}/{c.name}" for p in patterns)]
    return chosen


def table(rows) -> str:
    """Fixed-width table: case, category, outcome, seconds, one-line detail."""
    w_case = max([len("case")] + [len(c.name) for c, _, _ in rows])
    w_cat = max([len("category")] + [len(c.category) for c, _, _ in rows])
    lines = [f"{'case':<{w_case}}  {'category':<{w_cat}}  {'outcome':<12}  {'s':>5}  detail"]
    for c, res, secs in rows:
        detail = " ".join(res.detail.split())
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        lines.append(
            f"{c.name:<{w_case}}  {c.category:<{w_cat}}  {res.outcome:<12}  {secs:5.1f}  {detail}"
        )
    return "\n".join(lines)


def summary(rows) -> str:
    counts = collections.Counter(res.outcome for _, res, _ in rows)
    order = [*OUTCOMES, "not-run"]
    parts = [f"{k} {counts[k]}" for k in order if counts[k] or k in OUTCOMES[:5]]
    return f"{len(rows)} cases: " + ", ".join(parts)


def defects(rows) -> str:
    """The commands and outputs of the cases that need attention."""
    out = []
    for c, res, _ in rows:
        unexpected = res.outcome == "clear-error" and res.detail.startswith("UNEXPECTED")
        if res.outcome in BAD or unexpected or res.outcome == "not-run":
            out.append(f"- {c.name} [{res.outcome}]: {res.detail}\n    $ {res.cmd}")
    return "\n".join(out) if out else "(none)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results_probe.txt"))
    ap.add_argument("-k", action="append", help="run only cases whose category/name has this")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per sjdl call")
    args = ap.parse_args(argv)
    cases = select(args.k)
    if args.list:
        print("\n".join(f"{c.category}/{c.name}" for c in cases))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove the folder
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="sjdl-probe-"))
    world = World(tmp, args.timeout)
    rows, t0 = [], time.monotonic()
    try:
        for c in cases:
            res, secs = run_case(world, c)
            rows.append((c, res, secs))
            print(
                f"[{len(rows):3d}/{len(cases)}] {c.category}/{c.name}: {res.outcome} "
                f"({secs:.1f} s)",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = "\n\n".join(
        [
            _header(),
            f"# command: {world.command[-1]} | {len(world.runs)} sjdl calls, "
            f"{time.monotonic() - t0:.0f} s | load average {load_before:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (a busy machine slows every call; 'hang' "
            f"= no exit within {args.timeout:.0f} s)",
            table(rows),
            "summary: " + summary(rows),
            "needing attention (traceback, silent-wrong, data-loss, hang, unexpected "
            "refusals, cases not run):\n" + defects(rows),
        ]
    )
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 1 if any(res.outcome in BAD for _, res, _ in rows) else 0


def _header() -> str:
    try:
        from _common import header

        return header("sjdl hostile-input probe (scripts/hostile_probe.py)")
    except ImportError:
        return f"# sjdl hostile-input probe | {time.strftime('%Y-%m-%d')}"


if __name__ == "__main__":
    sys.exit(main())
