"""scripts/hostile_probe.py keeps working: its classification, and two of its fastest
cases against the installed CLI (each a config/data error that stops before training)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hostile_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("hostile_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_probe"] = module
    spec.loader.exec_module(module)
    return module


def _run(rc, out="", err=""):
    from hostile_cases.world import Run

    return Run(["x"], rc, out, err, 0.1)


def test_classification(probe, tmp_path):
    from hostile_cases.world import Snapshot, refused, succeeded

    ok_err = _run(2, err="error: train.lr: got -1.0, expected a number > 0\n")
    assert refused(ok_err, names=("train.lr",)).outcome == "clear-error"
    assert "does not name" in refused(ok_err, names=("data.root",)).detail
    assert refused(_run(0, out="done")).outcome == "silent-wrong"
    tb = _run(1, err="Traceback (most recent call last):\n  ...\nValueError: boom\n")
    assert refused(tb).outcome == "traceback" and "boom" in refused(tb).detail
    assert refused(_run(None)).outcome == "hang"
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    snap = Snapshot(tmp_path)
    keep.unlink()
    assert refused(ok_err, intact=snap).outcome == "data-loss"
    assert succeeded(_run(0, out="wrote it"), lambda: "3 rows, expected 4").outcome == (
        "silent-wrong"
    )
    assert succeeded(_run(2, err="error: no")).detail.startswith("UNEXPECTED")


def test_fastest_cases_against_the_cli(probe, tmp_path):
    from hostile_cases import World

    world = World(tmp_path, timeout=60)
    chosen = probe.select(None, fast_only=True)
    assert [c.name for c in chosen] == ["train_root_missing", "unknown_key_typo"]
    rows = []
    for c in chosen:
        res, secs = probe.run_case(world, c)
        rows.append((c, res, secs))
        assert res.outcome == "clear-error", (c.name, res)
        assert "does not name" not in res.detail and "left behind" not in res.detail
        assert res.cmd.startswith("sjdl train data.root=$TMP/")
    text = probe.table(rows) + "\n" + probe.summary(rows)
    assert "2 cases: ok 0, clear-error 2" in text and "unknown_key_typo" in text
