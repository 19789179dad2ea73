import json
import re

import pytest
from typer.testing import CliRunner

from sjdl.cli import app


def test_demo_quick_writes_report_and_summary(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seconds"] > 0 and summary["quick"] is True
    rows = {(r["model"], r["test"]): r for r in summary["rows"]}
    tests = ("clear", "foggy", "unseen-patchy", "unseen-scatter", "unseen")
    assert set(rows) == {
        (m, t) for m in ("imagenet", "baseline", "sjdl", "recommended") for t in tests
    }
    for (model, _test), row in rows.items():
        assert 0 <= row["mAP"] <= 100 and 0 <= row["R1"] <= row["R5"] <= 100
        restores = model == "sjdl"  # FIRM restores every test set that has clear targets
        assert (row["PSNR"] is not None) == restores and (row["SSIM"] is not None) == restores
        if restores and _test != "clear":  # each restoration compared with its own input
            assert 0 <= row["below_input"] <= row["restored"] and row["input_PSNR"] > 5
    # "unseen": the mean over the unseen kinds
    for model in ("imagenet", "baseline", "sjdl", "recommended"):
        kinds = [rows[(model, f"unseen-{k}")]["mAP"] for k in ("patchy", "scatter")]
        assert rows[(model, "unseen")]["mAP"] == sum(kinds) / 2
    # the unseen fog is a different fog: its images differ from the training fog's
    assert rows[("imagenet", "unseen-patchy")]["mAP"] != rows[("imagenet", "foggy")]["mAP"]
    assert 0 < summary["input_quality"]["SSIM"] < 1 and summary["input_quality"]["PSNR"] > 5
    # ImageNet features are the same whichever method is trained next: clear beats foggy
    assert rows[("imagenet", "clear")]["mAP"] != rows[("imagenet", "foggy")]["mAP"]
    stats = summary["real_crops"]["sjdl"]
    assert {"input_dark_channel", "restored_dark_channel", "restored_tv_per_pixel"} <= set(stats)
    html = (out / "report.html").read_text()
    assert "imagenet" in html and "Baseline" in html and "SJDL" in html
    assert "Recommended recipe" in html
    assert "foggy input itself" in html
    assert "identical" in html  # clear test images: the input is the clear image itself
    images = re.findall(r"src='([^']+)'", html)
    # rank lists x2, restorations of clear / foggy / unseen test images, real crops, curves x2
    assert len(images) >= 8
    for test in ("clear", "unseen-patchy"):
        assert (out / "sjdl" / f"restoration_{test}.png").is_file()
    for src in images:
        assert (out / src).is_file(), src
    for method in ("baseline", "sjdl", "recommended"):
        assert (out / method / "checkpoints" / "last.safetensors").is_file()
    # the demo's speed choices: FIRM's gain and offset at 1/4, a real batch every 5th step, the
    # recipe's twins in the batch
    from sjdl.config import load_config

    sjdl, recipe = (load_config(out / m / "config.yaml") for m in ("sjdl", "recommended"))
    assert (sjdl.model.firm.output, sjdl.model.firm.scale) == ("affine", 4)
    assert sjdl.train.real_every == 5 and recipe.train.real_every == 1
    assert recipe.data.twins_in_batch and recipe.data.clear_twins and recipe.data.num_ids == 8
    assert "summary.json" in result.output.replace("\n", "")


def test_demo_notes_describe_each_row_from_its_own_config():
    from sjdl.config import load_config
    from sjdl.experiments.demo import TRAINED, _row_note

    notes = {m: _row_note(m, load_config("demo", o)) for m, (_, o) in TRAINED.items()}
    assert notes["baseline"].endswith("the ReID network alone")
    assert "at 1/4 resolution" in notes["sjdl"] and "clear twin" not in notes["sjdl"]
    assert "a real foggy batch every 5th step (train.real_every=5, as the released" in notes["sjdl"]
    assert "real foggy batch" not in notes["recommended"] + notes["baseline"]
    assert "in the same batch (8 ids x 2 foggy images" in notes["recommended"]
    # a user's override shows in the note instead of the demo's own choice
    published = load_config("demo", ["method=sjdl", "model.firm.output=residual"])
    assert "FIRM's output is residual" in _row_note("sjdl", published)
    records = load_config("demo", ["preset=recommended"])
    assert "as further training images" in _row_note("recommended", records)


def test_demo_rows_choose_what_trains_and_unknown_rows_are_refused(tmp_path):
    out = tmp_path / "demo"
    bad = CliRunner().invoke(app, ["demo", "--quick", "--rows", "baseline,sjdl_x", "-o", str(out)])
    assert bad.exit_code != 0 and "unknown demo row 'sjdl_x'" in bad.output
    assert "Traceback" not in bad.output and not out.exists()  # refused before any work
    result = CliRunner().invoke(app, ["demo", "--quick", "--rows", "baseline", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert {r["model"] for r in summary["rows"]} == {"imagenet", "baseline"}
    assert not (out / "sjdl").exists() and not (out / "recommended").exists()
    assert "ImageNet features vs Baseline in fog" in (out / "report.html").read_text()
    # a rerun (after an interruption, say) reuses a row it finished: same config and code
    weights = out / "baseline" / "checkpoints" / "best.safetensors"
    before = (weights.stat().st_mtime_ns, weights.read_bytes())
    again = CliRunner().invoke(app, ["demo", "--quick", "--rows", "baseline", "-o", str(out)])
    assert again.exit_code == 0 and "Baseline: reusing the finished training" in again.output
    assert (weights.stat().st_mtime_ns, weights.read_bytes()) == before
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert rows == summary["rows"]  # the same model evaluated again: the same numbers
    assert "reused: same config and code" in (out / "report.html").read_text()
    args = ["demo", "--quick", "--rows", "baseline", "--retrain", "-o", str(out)]
    retrained = CliRunner().invoke(app, args)
    assert retrained.exit_code == 0 and "reusing" not in retrained.output
    assert weights.stat().st_mtime_ns != before[0]


def test_a_finished_run_is_reused_only_with_its_config_and_code(tmp_path):
    from sjdl.config import load_config
    from sjdl.experiments.runs import FINISHED, code_fingerprint, finished_run

    cfg = load_config("demo", ["method=baseline"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    assert finished_run(run, cfg) == (None, "no finished training there")  # interrupted
    (run / FINISHED).write_text(json.dumps({"seconds": 12.5, "code": code_fingerprint()}))
    assert finished_run(run, cfg) == (None, "its checkpoint is gone")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.safetensors").write_bytes(b"")
    assert finished_run(run, cfg) == (12.5, "")
    other = load_config("demo", ["method=baseline", "train.lr=1e-4"])
    seconds, why = finished_run(run, other)
    assert seconds is None and why == "its config differs (train.lr=0.00035 -> 0.0001)"
    (run / FINISHED).write_text(json.dumps({"seconds": 12.5, "code": "0" * 64}))
    assert finished_run(run, cfg) == (None, "it was trained by other code")
    # a damaged record means "train again", never a crash (a probe found a traceback)
    for text in ("[1, 2]", '{"seconds": "x"}', '{"seconds": -1}', '{"seconds": 1e999}', "\x00"):
        (run / FINISHED).write_text(text)
        assert finished_run(run, cfg) == (None, "its finished.json is damaged"), text


def test_demo_refuses_a_folder_of_other_files_and_keeps_them(tmp_path):
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "report.html").write_text("my own report")
    (out / "data" / "keep.txt").write_text("keep")
    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(out)])
    assert result.exit_code != 0 and "not the folder of an earlier sjdl demo" in result.output
    assert "Traceback" not in result.output
    assert (out / "report.html").read_text() == "my own report"
    assert (out / "data" / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in out.iterdir()) == ["data", "report.html"]  # no marker either
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(afile)])
    assert result.exit_code != 0 and "a file, not a folder" in result.output


def test_demo_output_check_accepts_its_own_folders_only(tmp_path):
    from sjdl.experiments.demo import check_output
    from sjdl.storage import OwnershipError, write_marker

    check_output(tmp_path / "new")  # absent or empty: fine
    old = tmp_path / "old"  # an earlier version's demo folder (no marker) with a killed run's lock
    (old / "baseline").mkdir(parents=True)
    (old / "baseline.lock").write_text("123")
    summary = {"rows": [], "quick": False, "input_quality": {}}
    (old / "summary.json").write_text(json.dumps(summary))
    check_output(old)
    (old / "notes.txt").write_text("mine")
    with pytest.raises(OwnershipError, match=r"notes\.txt"):
        check_output(old)
    other = tmp_path / "index"
    write_marker(other, "index", "sjdl index build")
    (other / "vectors.npy").write_text("")
    with pytest.raises(OwnershipError, match="another sjdl command"):
        check_output(other)
