import re

from typer.testing import CliRunner

from sjdl.cli import app


def test_demo_quick_writes_report_with_both_methods(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert "Baseline" in html and "SJDL" in html and "restored_PSNR" in html
    images = re.findall(r"src='([^']+)'", html)
    assert len(images) >= 6  # rank lists x2, restorations, real restorations, two curves
    for src in images:
        assert (out / src).is_file(), src
    for method in ("baseline", "sjdl"):
        assert (out / method / "checkpoints" / "last.safetensors").is_file()
        assert (out / method / "eval" / "metrics.json").is_file()
    assert str(out / "report.html") in result.output.replace("\n", "")
