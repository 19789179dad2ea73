import yaml
from typer.testing import CliRunner

from sjdl.cli import app

runner = CliRunner()


def test_config_command_prints_resolved_yaml():
    result = runner.invoke(app, ["config", "preset=official", "model.split=conv3"])
    assert result.exit_code == 0
    data = yaml.safe_load(result.stdout)
    assert data["model"]["split"] == "conv3" and data["model"]["backbone"] == "resnet50_ibn_a"


def test_info_command_reports_parameter_counts():
    args = ["info", "model.backbone=resnet18", "--syn-ids", "10", "--real-ids", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    # CFSM = ResNet-18 stem + layer1: 9,408 + 128 + 147,968 = 157,504
    assert "157,504" in result.stdout
    assert "5,120" in result.stdout  # one syn head 512 x 10, no real head
    # inference = ResNet-18 without fc (11,176,512) + BNNeck (2 x 512)
    assert "11,177,536" in result.stdout


def test_bad_override_is_a_one_line_error_with_exit_code_2():
    result = runner.invoke(app, ["info", "model.splitt=conv3"])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown key 'model.splitt'" in lines[0]
