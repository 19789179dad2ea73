"""``sjdl defog --continue``: an interrupted defog of a large folder is finished, not redone,
and never mixed with restorations of another method or checkpoint."""

import json

import pytest
from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.retrieval.outputs import DEFOG_RECORD

from .conftest import write_image

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _said(result, text):
    return "".join(text.split()) in "".join(result.output.split())


def _inputs(root, n=4):
    for i in range(n):
        write_image(root / f"img{i}.jpg", seed=i)
    return root


def _images(out):
    return {p.name: p.read_bytes() for p in out.glob("*.jpg")}


def test_continue_restores_only_what_is_missing(tmp_path):
    src, out = _inputs(tmp_path / "in"), tmp_path / "out"
    assert _run("defog", src, "-o", out, "--method", "dcp").exit_code == 0
    assert json.loads((out / DEFOG_RECORD).read_text()) == {"method": "dcp", "checkpoint": None}
    full = _images(out)
    for name in ("img2.jpg", "img3.jpg"):  # as if the run had been stopped after two
        (out / name).unlink()
    (out / "img0.jpg").write_bytes(b"kept as it is")  # proves img0 is not restored again
    r = _run("defog", src, "-o", out, "--method", "dcp")
    assert r.exit_code == 2 and "--overwrite" in r.stderr  # a plain rerun is still refused
    r = _run("defog", src, "-o", out, "--method", "dcp", "--continue")
    assert r.exit_code == 0, r.output
    assert _said(r, "wrote 2 restored image(s)") and _said(r, "from the interrupted run")
    now = _images(out)
    assert now["img0.jpg"] == b"kept as it is"
    assert {k: now[k] for k in ("img1.jpg", "img2.jpg", "img3.jpg")} == {
        k: full[k] for k in ("img1.jpg", "img2.jpg", "img3.jpg")
    }
    r = _run("defog", src, "-o", out, "--method", "dcp", "--continue")
    assert r.exit_code == 0 and _said(r, "nothing left to restore")


@pytest.mark.parametrize(
    "record, needle",
    [
        (None, "no record of an earlier sjdl defog"),
        ({"method": "firm", "checkpoint": "0123456789abcdef"}, "--method firm, checkpoint"),
    ],
)
def test_continue_refuses_to_mix_restorations(tmp_path, record, needle):
    src, out = _inputs(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    write_image(out / "img0.jpg", seed=9)
    if record is not None:
        (out / DEFOG_RECORD).write_text(json.dumps(record))
    before = _images(out)
    r = _run("defog", src, "-o", out, "--method", "dcp", "--continue")
    assert r.exit_code == 2 and needle in r.stderr and "--overwrite" in r.stderr
    assert _images(out) == before


def test_continue_and_overwrite_together_are_refused(tmp_path):
    src = _inputs(tmp_path / "in")
    r = _run("defog", src, "-o", tmp_path / "out", "--method", "dcp", "--continue", "--overwrite")
    assert r.exit_code == 2 and "pick one" in r.stderr


def test_ctrl_c_says_what_was_written_and_how_to_go_on(tmp_path, monkeypatch):
    from sjdl import retrieval

    calls = []

    def stop_at_third(img):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return img

    monkeypatch.setattr(retrieval, "defog_dcp", stop_at_third)
    src, out = _inputs(tmp_path / "in"), tmp_path / "out"
    r = _run("defog", src, "-o", out, "--method", "dcp")
    assert r.exit_code == 130
    assert "2 of 4 restored image(s) written" in " ".join(r.stderr.split())
    assert "--continue" in r.stderr and len(_images(out)) == 2
