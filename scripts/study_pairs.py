"""Paired differences between any two rows of a study folder (the summary pairs every row with
Baseline and ImageNet features only).

    python scripts/study_pairs.py runs/dev2 recommended_2x:clear_cons baseline_4x:baseline_2x \
        [--seeds 0,1] [--densities paper,dense] [--resamples 2000]

For each pair A:B, density and test (foggy, clear, unseen = mean over the unseen fog kinds
present): mean mAP of A and of B over the seeds both have, and A - B with its 95 % interval,
a bootstrap over seeds and one query resample shared by all seeds and unseen kinds (as in
``summary.md``), read from the folder's ``per_query/*.npz`` (no model runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sjdl.data.fog_kinds import UNSEEN_KINDS
from sjdl.evaluation.statistics import paired_difference
from sjdl.experiments.study_plan import query_file
from sjdl.experiments.study_report import per_query


def _have(out: Path, row: str, density: str, tests, seed: int) -> bool:
    return all(query_file(out, row, density, t, seed).is_file() for t in tests)


def pairs_table(out: Path, pairs, seeds, densities, resamples: int = 2000) -> list[str]:
    """Markdown lines: one table row per pair, density and test set."""
    kinds = [k for k in UNSEEN_KINDS if any((out / "per_query").glob(f"*-{k}-s*.npz"))]
    tests = [("foggy", ["foggy"]), ("clear", ["clear"])] + ([("unseen", kinds)] if kinds else [])
    lines = [
        "| A | B | fog | test | seeds | mAP A | mAP B | A − B [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a, b in pairs:
        for density in densities:
            for name, sets in tests:
                common = [s for s in seeds if _have(out, a, density, sets, s)]
                common = [s for s in common if _have(out, b, density, sets, s)]
                if not common:
                    continue
                x = per_query(out, a, density, sets, common, "AP")
                y = per_query(out, b, density, sets, common, "AP")
                d = paired_difference(x, y, resamples).scaled(100)
                lines.append(
                    f"| {a} | {b} | {density} | {name} | "
                    f"{','.join(map(str, common))} | {100 * np.nanmean(x):.2f} | "
                    f"{100 * np.nanmean(y):.2f} | {d.value:+.2f} [{d.low:+.2f}, {d.high:+.2f}] |"
                )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("pairs", nargs="+", help="ROW_A:ROW_B")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--densities", default="paper,dense")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args(argv)
    pairs = [tuple(p.split(":", 1)) for p in args.pairs]
    if any(len(p) != 2 or not all(p) for p in pairs):
        ap.error("pairs are ROW_A:ROW_B")
    if not (args.folder / "per_query").is_dir():
        ap.error(f"{args.folder}: no per_query/ folder (not a study folder)")
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = pairs_table(args.folder, pairs, seeds, args.densities.split(","), args.resamples)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
