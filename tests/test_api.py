"""The Python API (issue 12): ``sjdl.ReID`` and ``sjdl.Gallery``."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import sjdl
from sjdl.cli import app
from sjdl.data.io import ImageReadError, read_image
from sjdl.retrieval import GalleryIndex, IndexError_, defog_firm, embed, folder_lock, image_records
from sjdl.retrieval.outputs import OutputError

from .conftest import make_fvrid, write_image
from .test_deploy import _checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint (ResNet-18, 64x32, random weights) and the make_fvrid tree."""
    root = tmp_path_factory.mktemp("api")
    ckpt, _ = _checkpoint(root)
    data = make_fvrid(root / "data")
    return ckpt, data / "FVRID_syn"


@pytest.fixture(scope="module")
def reid(setup):
    return sjdl.ReID.from_checkpoint(setup[0], device="cpu")


def test_import_sjdl_is_light_and_exports_the_api():
    code = "import sys, sjdl; assert 'torch' not in sys.modules; print(sjdl.ReID.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ReID"
    assert {"ReID", "Gallery"} <= set(dir(sjdl))
    with pytest.raises(AttributeError):
        sjdl.NoSuchThing  # noqa: B018


def test_embed_paths_pil_and_tensors_as_in_evaluation(setup, reid):
    _, syn = setup
    paths = sorted((syn / "gallery_foggy").iterdir())
    out = reid.embed(paths, batch_size=3)
    assert out.shape == (4, reid.dim) and out.dtype == np.float32
    ref, _, _ = embed(reid.model, image_records(paths), reid.size, "cpu")
    assert np.abs(out - ref).max() < 1e-4  # the evaluation/index pipeline
    pil = reid.embed([Image.open(p) for p in paths])
    tensors = reid.embed(torch.stack([read_image(p) for p in paths]))
    assert np.abs(pil - out).max() < 1e-4 and np.abs(tensors - out).max() < 1e-4
    one = reid.embed(str(paths[2]))
    assert one.shape == (1, reid.dim) and np.abs(one[0] - out[2]).max() < 1e-4
    assert np.abs(out[0] - out[1]).max() > 1e-3  # different images, different vectors


def test_embed_errors_name_the_problem(setup, reid, tmp_path):
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        reid.embed(torch.full((3, 16, 16), 255.0))
    with pytest.raises(ValueError, match="expected a \\(3, H, W\\) RGB tensor"):
        reid.embed([torch.rand(1, 16, 16)])
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.jpg: cannot read image"):
        reid.embed([next((setup[1] / "query_foggy").iterdir()), bad])


def test_defog_returns_firm_restorations_of_the_same_kind(setup, reid, tmp_path):
    src = write_image(tmp_path / "odd.png", size=(50, 37), seed=4)
    restored = reid.defog(src)
    assert isinstance(restored, Image.Image) and restored.size == (37, 50)
    x = read_image(src)
    expected = defog_firm(reid.model, x[None])[0]
    assert torch.allclose(reid.defog(x), expected, atol=1e-5)  # sjdl defog's FIRM pass
    got = torch.from_numpy(np.array(restored)).permute(2, 0, 1).float() / 255
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6
    batch = reid.defog(torch.stack([x, x]))
    assert batch.shape == (2, 3, 50, 37)
    assert len(reid.defog([src, Image.open(src)])) == 2


def test_defog_without_firm_is_a_clear_error(tmp_path):
    ckpt, _ = _checkpoint(tmp_path, "b", 0, "method=baseline")
    base = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    assert not base.has_firm
    with pytest.raises(ValueError, match="has no FIRM"):
        base.defog(torch.rand(3, 32, 32))


def test_gallery_build_save_open_search_equals_the_cli_index(setup, reid, tmp_path):
    ckpt, syn = setup
    gallery = sjdl.Gallery.build([syn / "gallery_foggy"], reid)
    assert len(gallery) == 4 and len(gallery.last_add.added) == 4
    gallery.save(tmp_path / "api_idx")
    cli_idx = tmp_path / "cli_idx"
    args = ["index", "build", syn / "gallery_foggy", "--checkpoint", ckpt, "-o", cli_idx]
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    a, b = GalleryIndex.load(tmp_path / "api_idx"), GalleryIndex.load(cli_idx)
    assert [x["path"] for x in a.rows] == [x["path"] for x in b.rows]
    assert a.manifest["fingerprint"] == b.manifest["fingerprint"] == reid.fingerprint
    opened = sjdl.Gallery.open(cli_idx)  # the model is loaded on first use
    for query in sorted((syn / "query_foggy").iterdir()):
        rows = opened.search(query, k=3)
        assert [m.rank for m in rows] == [1, 2, 3]
        assert [m.path for m in rows] == [m.path for m in gallery.search(query, k=3)]
        assert rows[0].distance <= rows[1].distance <= rows[2].distance
        assert rows[0].pid in (100, 101) and rows[0].camid in (1, 2)  # from the names
    top = opened.search(next((syn / "gallery_foggy").iterdir()), k=99)
    assert len(top) == 4 and top[0].distance < 1e-2  # a gallery image finds itself first
    vector = reid.embed(top[0].path)[0]
    assert opened.search(vector, k=1)[0].path == top[0].path
    with pytest.raises(ValueError, match="k must be a positive integer"):
        opened.search(vector, k=0)


def test_gallery_add_skips_duplicates_and_names_without_ids(setup, reid, tmp_path):
    _, syn = setup
    gallery = sjdl.Gallery.build([syn / "gallery_foggy"], reid)
    write_image(tmp_path / "new" / "frame_17.jpg", seed=9)
    result = gallery.add([syn / "gallery_foggy", tmp_path / "new"])
    assert len(result.duplicates) == 4 and len(result.added) == 1 and len(gallery) == 5
    hit = gallery.search(tmp_path / "new" / "frame_17.jpg", k=1)[0]
    assert hit.path.endswith("frame_17.jpg") and hit.pid is None and hit.camid is None


def test_save_refuses_inputs_non_empty_folders_and_lost_updates(setup, reid, tmp_path):
    _, syn = setup
    gallery = sjdl.Gallery.build([syn / "gallery_foggy"], reid)
    with pytest.raises(OutputError, match="an input of this command"):
        gallery.save(syn / "gallery_foggy", overwrite=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("keep")
    with pytest.raises(OutputError, match="not empty"):
        gallery.save(tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="pass a folder"):
        gallery.save()
    idx = gallery.save(tmp_path / "idx")
    with pytest.raises(OutputError, match="existing index of 4 images"):
        sjdl.Gallery.build([syn / "query_foggy"], reid).save(idx)
    # two writers who both read the index: the second save would drop the first one's rows
    first, second = sjdl.Gallery.open(idx, reid), sjdl.Gallery.open(idx, reid)
    first.add(syn / "query_foggy")
    first.save()
    second.add(syn / "train_foggy")
    with pytest.raises(IndexError_, match="changed by another writer"):
        second.save()
    assert GalleryIndex.load(idx).manifest["count"] == 6  # the first writer's rows kept
    with folder_lock(idx):  # a save inside the caller's own lock (sjdl index build)
        again = sjdl.Gallery.open(idx, reid)
        again.add(syn / "train_foggy")
        again.save()
    assert GalleryIndex.load(idx).manifest["count"] == 18
    assert not list(tmp_path.glob("idx.*"))  # no lock or temporary folder left


def test_open_refuses_another_checkpoint(setup, reid, tmp_path):
    _, syn = setup
    idx = sjdl.Gallery.build([syn / "gallery_foggy"], reid).save(tmp_path / "idx")
    other, _ = _checkpoint(tmp_path, "other", 1)
    with pytest.raises(IndexError_, match="cannot be mixed"):
        sjdl.Gallery.open(idx, other)
    with pytest.raises(IndexError_, match="not an index folder"):
        sjdl.Gallery.open(tmp_path / "nothing")


def test_embeddings_follow_the_checkpoints_normalisation(tmp_path):
    """Search ranks like evaluation: test.normalize=true gives unit-length vectors for
    queries (ReID.embed) and gallery (Gallery.build) alike."""
    from sjdl.config import load_config
    from sjdl.models import build_model
    from sjdl.models.io import save_weights

    cfg = load_config(
        overrides=["model.backbone=resnet18", "data.size_test=[32,32]", "test.normalize=true"]
    )
    ckpt = save_weights(build_model(cfg, 3), tmp_path / "n.safetensors", cfg, 3, 0)
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    images = [torch.rand(3, 40, 30) for _ in range(3)]
    assert np.allclose(np.linalg.norm(reid.embed(images), axis=1), 1, atol=1e-5)
    gallery_dir = tmp_path / "g"
    gallery_dir.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 30, 3)) * 255).astype("uint8")).save(
            gallery_dir / f"{i:05d}_c001_x.jpg"
        )
    gallery = sjdl.Gallery.build([gallery_dir], reid)
    hits = gallery.search(str(gallery_dir / "00001_c001_x.jpg"), k=3)
    assert hits[0].path.endswith("00001_c001_x.jpg") and abs(hits[0].distance) < 1e-4
    assert max(h.distance for h in hits) <= 4.0  # unit vectors: at most 2 apart (4 squared)
