"""Before/after table of two hostile-probe results files (scripts/hostile_probe.py --out).

    python scripts/probe_table.py benchmarks/results_probe_375e79f.txt benchmarks/results_probe.txt

Prints, per category, the count of each outcome in both files ("before → after"), and the
cases whose outcome changed. A case re-run alone (a line under "# re-run" at the end of a
file: same table format) replaces that case's earlier line.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

OUTCOMES = ("ok", "clear-error", "traceback", "silent-wrong", "data-loss", "hang", "not-run")


def read(path: Path) -> dict[str, tuple[str, str]]:
    """case -> (category, outcome), from the table lines of a results file."""
    cases = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in OUTCOMES and not line.startswith("#"):
            cases[parts[0]] = (parts[1], parts[2])
    return cases


def table(before: dict, after: dict) -> str:
    cats = sorted({c for c, _ in [*before.values(), *after.values()]})
    count = {
        name: collections.Counter((c, o) for c, o in d.values())
        for name, d in (("b", before), ("a", after))
    }
    head = "| category | cases | " + " | ".join(OUTCOMES[:-1]) + " |"
    lines = [head, "|" + "---|" * (len(OUTCOMES) + 1)]
    for cat in [*cats, "all"]:
        n = sum(1 for c, _ in after.values() if cat in (c, "all"))
        cells = []
        for o in OUTCOMES[:-1]:
            b = sum(v for (c, oo), v in count["b"].items() if oo == o and cat in (c, "all"))
            a = sum(v for (c, oo), v in count["a"].items() if oo == o and cat in (c, "all"))
            cells.append(f"{b} → {a}" if (a or b) else "")
        lines.append(f"| {cat} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    before, after = (read(Path(p)) for p in argv)
    print(table(before, after))
    changed = [
        f"- {k}: {before[k][1]} → {after[k][1]}"
        for k in after
        if k in before and before[k][1] != after[k][1]
    ]
    missing = [k for k in after if k not in before]
    print(f"\n{len(changed)} cases changed outcome; {len(missing)} not in the first file")
    print("\n".join(changed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
