"""scripts/compare_studies.py: two runs of one study are the same only if every metric and
per-query array is; training seconds are counted once per run."""

import csv
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["row", "density", "test", "seed", "mAP", "R1", "train_s", "eval_s"]


def _script():
    spec = importlib.util.spec_from_file_location("cmp", ROOT / "scripts/compare_studies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _study(folder: Path, ap: np.ndarray, train_s: str) -> Path:
    (folder / "per_query").mkdir(parents=True)
    rows = []
    for row in ("imagenet", "baseline", "baseline+bn_gallery"):
        np.savez(folder / "per_query" / f"{row}-paper-foggy-s0.npz", AP=ap)
        t = "0.0" if row == "imagenet" else train_s
        values = [row, "paper", "foggy", "0", "50.0", "40.0", t, "2.0"]
        rows.append(dict(zip(FIELDS, values, strict=True)))
    with (folder / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    return folder


def test_identical_studies_pass_and_a_changed_array_fails(tmp_path, capsys):
    mod = _script()
    ap = np.array([0.5, np.nan, 1.0])
    a, b = _study(tmp_path / "a", ap, "80"), _study(tmp_path / "b", ap.copy(), "90")
    assert mod.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 identical" in out and "differ in 0" in out
    assert "baseline-paper-0" in out and "imagenet-paper-0" not in out  # untrained: no run
    assert "baseline+bn_gallery-paper-0" not in out  # reuses baseline's training
    assert out.strip().endswith("80      90")  # "all": each training counted once
    np.savez(b / "per_query" / "baseline-paper-foggy-s0.npz", AP=np.array([0.5, np.nan, 0.9]))
    assert mod.main([str(a), str(b)]) == 1
    assert "2 of 3 identical" in capsys.readouterr().out
    assert mod.main([str(a)]) == 2
