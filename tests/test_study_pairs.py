"""scripts/study_pairs.py: paired differences between any two rows of a study folder, checked
against the committed test-split study (values stated in its README and summary.md)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("study_pairs", ROOT / "scripts/study_pairs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pairs_reproduce_the_committed_intervals(capsys):
    mod = _script()
    folder = ROOT / "benchmarks/study-recipe"
    assert mod.main([str(folder), "recommended:baseline_2x", "recommended:baseline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {tuple(c.strip() for c in x.split("|")[1:5]): x for x in lines[2:]}
    # the README's recipe vs the length control, and summary.md's recipe vs Baseline
    assert row["recommended", "baseline_2x", "paper", "unseen"].endswith("+1.33 [-3.49, +5.85] |")
    assert row["recommended", "baseline_2x", "dense", "unseen"].endswith("+4.32 [-0.14, +9.10] |")
    assert row["recommended", "baseline", "paper", "unseen"].endswith("+9.98 [+3.16, +16.08] |")
    assert "| 0,1,2 | 77.11 | 67.14 |" in row["recommended", "baseline", "paper", "unseen"]
    assert len(row) == 12  # 2 pairs x 2 densities x (foggy, clear, unseen)


def test_pairs_refuse_a_folder_without_per_query_arrays(tmp_path):
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path), "a:b"])
    assert e.value.code == 2
