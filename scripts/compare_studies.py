"""Two runs of the same study command, compared: are the metrics and every per-query array
identical, and where did the time go (evaluation seconds per row, training seconds per run)?

    python scripts/compare_studies.py NEW_STUDY_FOLDER OLD_STUDY_FOLDER
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def _table(folder: Path) -> dict[tuple, dict]:
    with (folder / "metrics.csv").open(newline="") as f:
        return {(r["row"], r["density"], r["test"], r["seed"]): r for r in csv.DictReader(f)}


def _trainings(table: dict) -> dict[tuple, float]:
    """Training seconds per (row, density, seed) of the rows that train (a "+bn_*" row reuses
    its base row's training; untrained rows record 0)."""
    return {
        (k[0], k[1], k[3]): float(r["train_s"])
        for k, r in table.items()
        if r["train_s"] and float(r["train_s"]) > 0 and "+" not in k[0]
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    new, old = (Path(a) for a in argv)
    a, b = _table(new), _table(old)
    common = sorted(set(a) & set(b))
    differ = [k for k in common if a[k]["mAP"] != b[k]["mAP"] or a[k]["R1"] != b[k]["R1"]]
    arrays = same = 0
    for f in sorted((new / "per_query").glob("*.npz")):
        g = old / "per_query" / f.name
        if g.is_file():
            x, y = np.load(f), np.load(g)
            arrays += 1
            same += x.files == y.files and all(
                np.array_equal(x[k], y[k], equal_nan=True) for k in x.files
            )
    print(
        f"evaluations: {len(a)} new, {len(b)} old, {len(common)} in both; mAP or R1 differ "
        f"in {len(differ)}{': ' + str(differ[:3]) if differ else ''}"
    )
    print(f"per-query arrays: {same} of {arrays} identical")
    print("evaluation seconds per row (new vs old):")
    for row in sorted({k[0] for k in common}):
        ea = sum(float(a[k]["eval_s"]) for k in common if k[0] == row)
        eb = sum(float(b[k]["eval_s"]) for k in common if k[0] == row)
        print(f"  {row:28s} {ea:7.0f} {eb:7.0f}")
    ta, tb = _trainings(a), _trainings(b)
    print("training seconds per run (new vs old):")
    for k in sorted(set(ta) & set(tb)):
        print(f"  {'-'.join(k):28s} {ta[k]:7.0f} {tb[k]:7.0f}")
    both = set(ta) & set(tb)
    print(f"  {'all':28s} {sum(ta[k] for k in both):7.0f} {sum(tb[k] for k in both):7.0f}")
    return 0 if not differ and same == arrays else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
