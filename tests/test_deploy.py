import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.config import load_config
from sjdl.data import add_fog
from sjdl.evaluation import psnr
from sjdl.models import build_model
from sjdl.models.io import load_model, save_weights
from sjdl.retrieval import (
    GalleryIndex,
    IndexError_,
    defog_dcp,
    defog_firm,
    embed,
    export_onnx,
    image_records,
)

runner = CliRunner()


def _checkpoint(tmp_path, name="w", seed=0, *extra):
    torch.manual_seed(seed)
    cfg = load_config(
        overrides=["model.backbone=resnet18", "data.size_test=[64,32]", "data.workers=0", *extra]
    )
    model = build_model(cfg, 5)
    return save_weights(model, tmp_path / f"{name}.safetensors", cfg, 5, 0), model


@pytest.mark.parametrize("restoration", [False, True])
def test_onnx_matches_pytorch_at_batch_1_and_8(tmp_path, restoration):
    _, model = _checkpoint(tmp_path)
    path = export_onnx(model, tmp_path / "m.onnx", (64, 32), restoration)
    session = ort.InferenceSession(str(path))
    for batch in (1, 8):
        x = torch.rand(batch, 3, 64, 32)
        ref = model.restore(x)[1] if restoration else model.extract_features(x)
        out = session.run(None, {"images": x.numpy()})[0]
        assert out.shape == tuple(ref.shape)
        assert np.abs(out - ref.numpy()).max() < 1e-4
    # outputs differ across inputs (no constant-output export)
    a, b = session.run(None, {"images": torch.rand(2, 3, 64, 32).numpy()})[0]
    assert np.abs(a - b).max() > 1e-3


def test_export_cli(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    result = runner.invoke(
        app, ["export", "--checkpoint", str(ckpt), "-o", str(tmp_path / "e.onnx")]
    )
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "e.onnx"))
    assert session.get_inputs()[0].shape[1:] == [3, 64, 32]


def test_export_prints_only_its_own_line(tmp_path):
    """The exporter's notices ("torchvision is not installed. Skipping torchvision::nms", a
    FutureWarning from inside torch) alarmed users of a package that needs no torchvision.
    In a fresh process, since torch logs them once per process."""
    import subprocess
    import sys

    ckpt, _ = _checkpoint(tmp_path)
    out = tmp_path / "e.onnx"
    cmd = [sys.executable, "-m", "sjdl", "export", "--checkpoint", str(ckpt), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = " ".join((done.stdout + done.stderr).split())  # the console wraps long lines
    assert said.startswith(f"wrote {out}: embedding (512-d)") and said.endswith("in [0, 1]"), said
    assert "torchvision" not in said and "Warning" not in said


def test_index_round_trip_build_add_search(fvrid, tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    gallery, queries = fvrid / "FVRID_syn" / "gallery_foggy", fvrid / "FVRID_syn" / "query_foggy"
    idx = tmp_path / "idx"
    r = runner.invoke(
        app, ["index", "build", str(gallery), "--checkpoint", str(ckpt), "-o", str(idx)]
    )
    assert r.exit_code == 0, r.output
    assert GalleryIndex.load(idx).manifest["count"] == 4
    r = runner.invoke(app, ["index", "add", str(idx), str(queries)])
    assert r.exit_code == 0, r.output
    index = GalleryIndex.load(idx)
    assert index.manifest["count"] == 6 and len(index.rows) == 6
    assert not list(tmp_path.glob("idx.*"))  # no temporary folders left
    model, _, _ = load_model(ckpt)
    for image in sorted(gallery.iterdir()):  # a gallery image used as query comes back first
        png = tmp_path / "ranks.png"
        r = runner.invoke(
            app,
            ["search", str(image), "--index", str(idx), "--top-k", "3", "--png", str(png)]
            + ["--overwrite"],  # the same --png for every query
        )
        assert r.exit_code == 0, r.output
        assert png.is_file() and "distance" in r.output
        # the table names each hit's file (a long path was cut before its file name)
        assert image.name in "".join(r.output.split()) and "paths under" in r.output
        feats, _, _ = embed(model, image_records([image]), (64, 32), "cpu")
        top = index.search(feats, 3)[0][0]
        assert top.path == str(image.resolve()) and top.distance < 1e-2


def test_approximate_index_kinds(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((500, 16)).astype(np.float32)
    meta = [(f"img{i}.jpg", i, 0) for i in range(500)]
    for kind in ("hnsw", "ivf"):
        index = GalleryIndex.create(16, "fp", kind, n_train=500)
        index.add(vecs, meta)
        hits = index.search(vecs[:20], 5)
        assert [h[0].pid for h in hits] == list(range(20))
    small = GalleryIndex.create(16, "fp", "ivf", n_train=10_000)
    with pytest.raises(IndexError_, match="needs at least"):
        small.add(vecs[:10], meta[:10])


def test_index_mismatch_and_corruption_errors(fvrid, tmp_path):
    ckpt_a, _ = _checkpoint(tmp_path, "a", 0)
    ckpt_b, _ = _checkpoint(tmp_path, "b", 1)
    idx = tmp_path / "idx"
    gallery = fvrid / "FVRID_syn" / "gallery_foggy"
    assert (
        runner.invoke(
            app, ["index", "build", str(gallery), "--checkpoint", str(ckpt_a), "-o", str(idx)]
        ).exit_code
        == 0
    )
    image = next(gallery.iterdir())
    r = runner.invoke(app, ["index", "add", str(idx), str(image), "--checkpoint", str(ckpt_b)])
    assert r.exit_code == 2 and "is not the checkpoint this index was built with" in r.stderr
    r = runner.invoke(app, ["search", str(image), "--index", str(idx), "--checkpoint", str(ckpt_b)])
    assert r.exit_code == 2 and "cannot be mixed" in r.stderr
    (idx / "metadata.csv").write_text((idx / "metadata.csv").read_text().rsplit("\n", 2)[0])
    with pytest.raises(IndexError_, match="inconsistent index"):
        GalleryIndex.load(idx)
    (idx / "index.faiss").write_bytes(b"garbage")
    r = runner.invoke(app, ["search", str(image), "--index", str(idx)])
    assert r.exit_code == 2 and "cannot read the FAISS index" in r.stderr
    r = runner.invoke(app, ["search", str(image), "--index", str(tmp_path / "none")])
    assert r.exit_code == 2 and "not an index folder" in r.stderr


def test_firm_defog_any_size(tmp_path):
    _, model = _checkpoint(tmp_path)
    out = defog_firm(model, torch.rand(1, 3, 50, 37))
    assert out.shape == (1, 3, 50, 37) and out.min() >= 0 and out.max() <= 1


def test_dark_channel_prior_recovers_fog_that_fits_the_prior():
    gen = torch.Generator().manual_seed(0)
    clear = torch.rand(1, 3, 64, 64, generator=gen)
    clear[:, torch.randint(0, 3, (1,), generator=gen).item()] = 0  # a dark channel of 0
    clear[:, :, :8] = 1.0  # a white "sky" band, where the airlight is estimated
    foggy = add_fog(clear, torch.ones(1, 64, 64), 0.7, 1.0)
    restored = defog_dcp(foggy)
    assert restored.shape == foggy.shape
    assert psnr(restored[0], clear[0]) > psnr(foggy[0], clear[0]) + 5


def test_defog_cli_dcp_with_reference(fvrid, tmp_path):
    syn = fvrid / "FVRID_syn"
    r = runner.invoke(
        app,
        [
            "defog",
            str(syn / "query_foggy"),
            "-o",
            str(tmp_path / "out"),
            "--method",
            "dcp",
            "--reference",
            str(syn / "query_clear"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 2 and "restored PSNR" in r.output
    # a restoration further from the reference than its input is named: here the reference
    # is the foggy folder itself, so any change at all is a loss
    r = runner.invoke(
        app,
        ["defog", str(syn / "query_foggy"), "-o", str(tmp_path / "o3"), "--method", "dcp"]
        + ["--reference", str(syn / "query_foggy")],
    )
    assert r.exit_code == 0, r.output
    assert "2 of 2 restored image(s) are further from the reference" in " ".join(r.output.split())
    r = runner.invoke(app, ["defog", str(syn / "query_foggy"), "-o", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "needs --checkpoint" in r.stderr


def test_a_second_defog_into_the_same_folder_stops_at_once(fvrid, tmp_path):
    """Two runs into one -o replaced each other's images, each saying "wrote"; now -o is
    locked while a run writes it (the second stops with one line, nothing written)."""
    from .conftest import lock_held_elsewhere

    out = tmp_path / "out"
    cmd = ["defog", str(fvrid / "FVRID_syn" / "query_foggy"), "-o", str(out), "--method", "dcp"]
    with lock_held_elsewhere(out, "defog output") as pid:
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2, r.output
        assert f"defog output is being written by PID {pid}" in " ".join(r.output.split())
        assert not out.exists()
    r = runner.invoke(app, cmd)
    assert r.exit_code == 0 and len(list(out.glob("*.jpg"))) == 2, r.output
    assert not (tmp_path / "out.lock").exists()


def test_defog_reference_problems_are_named_not_silent(fvrid, tmp_path):
    from PIL import Image

    syn = fvrid / "FVRID_syn"
    dcp = ["defog", str(syn / "query_foggy"), "--method", "dcp", "-o"]
    for ref, why in ((tmp_path / "nowhere", "folder not found"), (fvrid / "x.jpg", "not a")):
        if why == "not a":
            ref.write_bytes(b"x")
        r = runner.invoke(app, [*dcp, str(tmp_path / "o1"), "--reference", str(ref)])
        assert r.exit_code == 2 and f"--reference {ref}: {why}" in " ".join(r.output.split())
        assert not (tmp_path / "o1").exists()  # refused before any work
    # one reference of another size, one input without a reference: both named, both left out
    names = sorted(p.name for p in (syn / "query_clear").iterdir())
    ref = tmp_path / "ref"
    ref.mkdir()
    Image.open(syn / "query_clear" / names[0]).resize((10, 12)).save(ref / names[0])
    r = runner.invoke(app, [*dcp, str(tmp_path / "o2"), "--reference", str(ref)])
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and len(list((tmp_path / "o2").glob("*.jpg"))) == 2, r.output
    assert f"{ref / names[0]}:10x12,itsfoggyimageis" in "".join(r.output.split())
    assert "1 of 2 input(s) have no reference image of the same relative path or name" in text
    assert "restored PSNR" not in text  # nothing left to compare


def test_firm_defog_tanh_output_is_the_image_as_in_evaluation(tmp_path):
    _, model = _checkpoint(tmp_path, "t", 0, "model.firm.output=tanh")
    x = torch.rand(1, 3, 64, 32)
    assert torch.allclose(defog_firm(model, x), model.restore(x)[1].clamp(0, 1))
