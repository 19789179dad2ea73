"""BatchNorm statistics re-estimated on the gallery (issue 16, item 6): ``sjdl index build
--adapt-bn`` / ``Gallery.build(..., adapt_bn=True)`` keep them in the index, and the index's
queries and additions are embedded with them."""

import json

import numpy as np
import pytest

import sjdl
from sjdl.retrieval import GalleryIndex, IndexError_
from sjdl.retrieval.bn_stats import apply, encode

from .conftest import cli, make_fvrid, one_line_error, write_image
from .test_deploy import _checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bn")
    ckpt, _ = _checkpoint(root)
    syn = make_fvrid(root / "data") / "FVRID_syn"
    return ckpt, sorted((syn / "gallery_foggy").iterdir()), sorted((syn / "query_foggy").iterdir())


def test_adapted_index_keeps_its_statistics_for_queries_and_additions(setup, tmp_path):
    ckpt, gallery_paths, queries = setup
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    plain = reid.embed(queries)
    adapted = reid.adapt_bn(gallery_paths)
    assert reid.bn_statistics is None and np.array_equal(reid.embed(queries), plain)  # unchanged
    assert adapted.bn_statistics["images"] == len(gallery_paths)
    expected = adapted.embed(queries)
    assert np.abs(expected - plain).max() > 1e-3  # the statistics change the embedding

    gallery = sjdl.Gallery.build([gallery_paths[0].parent], reid, adapt_bn=True)
    assert gallery.reid.bn_statistics["sha256"] == adapted.bn_statistics["sha256"]
    idx = gallery.save(tmp_path / "idx")
    record = GalleryIndex.load(idx).manifest["bn_statistics"]
    assert (record["source"], record["images"]) == ("gallery", len(gallery_paths))

    for opened in (sjdl.Gallery.open(idx), sjdl.Gallery.open(idx, reid)):  # lazy, or given
        assert np.abs(opened.reid.embed(queries) - expected).max() < 1e-4
        top = opened.search(gallery_paths[2], k=1)[0]
        assert top.path == str(gallery_paths[2].resolve()) and top.distance < 1e-2
    write_image(tmp_path / "new" / "frame_1.jpg", seed=11)
    result = cli("index", "add", idx, tmp_path / "new")
    assert result.exit_code == 0, result.output
    new = tmp_path / "new" / "frame_1.jpg"
    hit = sjdl.Gallery.open(idx).search(adapted.embed(new)[0], k=1)[0]
    assert hit.path.endswith("frame_1.jpg") and hit.distance < 1e-3  # added with the same BN
    assert sjdl.Gallery.open(idx).search(reid.embed(new)[0], k=1)[0].distance > 1e-3
    from starlette.testclient import TestClient

    from sjdl.retrieval.server import create_app

    with TestClient(create_app(sjdl.Gallery.open(idx)), base_url="http://127.0.0.1") as c:
        info = c.get("/api/info").json()
        assert info["bn_images"] == len(gallery_paths) and info["images"] == 5
        r = c.post("/api/search", params={"k": 1}, content=new.read_bytes())
        assert r.status_code == 200 and r.json()["results"][0]["distance"] < 1e-3


def test_plain_index_refuses_an_adapted_reid_and_stats_must_fit(setup, tmp_path):
    ckpt, gallery_paths, _ = setup
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    idx = sjdl.Gallery.build(gallery_paths, reid).save(tmp_path / "plain")
    assert "bn_statistics" not in GalleryIndex.load(idx).manifest
    with pytest.raises(IndexError_, match="load the checkpoint again"):
        sjdl.Gallery.open(idx, reid.adapt_bn(gallery_paths))
    record = encode(reid.model, "gallery", 4)
    with pytest.raises(ValueError, match="do not fit"):
        apply(reid.model.reidm, record, "idx")  # another module's layers
    with pytest.raises(ValueError, match="unreadable"):
        apply(reid.model, {**record, "sha256": "0" * 64}, "idx")
    with pytest.raises(ValueError, match="at least 2 images"):
        reid.adapt_bn(gallery_paths[:1])


def test_cli_adapt_bn_says_so_and_default_stays_off(setup, tmp_path):
    ckpt, gallery_paths, _ = setup
    folder = gallery_paths[0].parent
    out = cli("index", "build", folder, "--checkpoint", ckpt, "-o", tmp_path / "a", "--adapt-bn")
    assert out.exit_code == 0, out.output
    assert "re-estimated on 4 gallery images" in " ".join(out.stdout.split())
    out = cli("index", "build", folder, "--checkpoint", ckpt, "-o", tmp_path / "b")
    assert out.exit_code == 0 and "re-estimated" not in out.stdout
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "bn_statistics" not in manifest
    write_image(tmp_path / "one" / "x.jpg")
    err = cli("index", "build", tmp_path / "one", "--checkpoint", ckpt, "-o", tmp_path / "c",
              "--adapt-bn")  # fmt: skip
    one_line_error(err, "at least 2 images")
    assert not (tmp_path / "c" / "manifest.json").exists()
