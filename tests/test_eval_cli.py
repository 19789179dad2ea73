import json
import re

from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.config import load_config
from sjdl.models import build_model
from sjdl.models.io import save_weights

SMALL = ["model.backbone=resnet18", "data.size_test=[64,32]", "data.workers=0"]


def test_eval_cli_writes_metrics_pictures_and_report(fvrid, tmp_path):
    out = tmp_path / "ev"
    args = ["eval", f"data.root={fvrid}", *SMALL, "--visualize", "-o", str(out), "--flip"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "metrics.json").read_text())
    m = info["metrics"]
    assert 0 <= m["mAP"] <= 1 and m["num_valid_queries"] == 2 and info["flip"] is True
    assert "restored_PSNR" in m and m["R10"] == 1.0  # 2 gallery images each: all within 10
    # each restoration judged against its own foggy input (an untrained FIRM may lose)
    assert m["input_PSNR"] > 0 and 0 <= m["restored_below_input"] <= m["restored_num_images"]
    html = (out / "report.html").read_text()
    for src in re.findall(r"src='([^']+)'", html):
        assert (out / src).is_file()
    assert (out / "rank_lists" / "rank_lists.png").is_file() and (out / "restoration.png").is_file()


def test_eval_cli_with_checkpoint_and_rerank(fvrid, tmp_path):
    cfg = load_config(overrides=[f"data.root={fvrid}", *SMALL])
    ckpt = save_weights(build_model(cfg, 3), tmp_path / "w.safetensors", cfg, 3, 0)
    out = tmp_path / "ev"
    result = CliRunner().invoke(
        app, ["eval", "--checkpoint", str(ckpt), "--rerank", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["rerank"] is True


def test_eval_refuses_to_replace_an_earlier_evaluation_without_overwrite(fvrid, tmp_path):
    """A second ``eval -o`` into a folder replaced its metrics.json without a word."""
    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text("my earlier results")
    args = ["eval", f"data.root={fvrid}", *SMALL, "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "exists (an earlier evaluation)" in result.output
    assert "--overwrite" in result.output
    assert (out / "metrics.json").read_text() == "my earlier results"
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "metrics" in json.loads((out / "metrics.json").read_text())


def test_eval_cli_errors(tmp_path):
    result = CliRunner().invoke(app, ["eval", f"data.root={tmp_path / 'nowhere'}"])
    assert result.exit_code == 2 and "nowhere: folder not found" in result.stderr
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 2 and "checkpoint not found" in result.stderr
