"""Issue 17 item 13: non-finite or wrongly typed weights are refused on load; images whose
embedding is not finite are skipped (and named) by index build/add; a non-finite query is an
error, never an empty answer with exit 0."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sjdl
from sjdl.models import ResNet
from sjdl.models.io import CheckpointError, load_model, read_checkpoint
from sjdl.models.resnet import load_pretrained
from sjdl.models.sjdl import SJDL
from sjdl.retrieval import GalleryIndex, IndexError_

from .conftest import cli, make_fvrid, one_line_error
from .test_deploy import _checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finite")
    ckpt, _ = _checkpoint(root)
    syn = make_fvrid(root / "data") / "FVRID_syn"
    return ckpt, syn


def _damaged(ckpt, tmp_path, key_part, change):
    """A copy of ``ckpt`` with the first tensor whose name holds ``key_part`` changed."""
    state, meta = read_checkpoint(ckpt)
    key = next(k for k in state if key_part in k)
    state[key] = change(state[key])
    path = tmp_path / "damaged.safetensors"
    save_file(state, str(path), metadata=meta)
    return path, key


def test_nan_and_inf_weights_are_refused_naming_file_and_tensor(setup, tmp_path):
    ckpt, syn = setup
    for value in (float("nan"), float("inf")):
        path, key = _damaged(
            ckpt, tmp_path, "conv1.weight", lambda t, v=value: t.index_fill(0, torch.tensor([0]), v)
        )
        with pytest.raises(CheckpointError, match=f"damaged.safetensors: tensor {key} holds"):
            load_model(path)
    idx = tmp_path / "idx"
    result = cli("index", "build", syn / "gallery_foggy", "--checkpoint", path, "-o", idx)
    one_line_error(result, "damaged.safetensors", key, "non-finite")
    assert not idx.exists()


def test_integer_weights_for_a_float_layer_are_refused(setup, tmp_path):
    ckpt, _ = setup
    path, key = _damaged(ckpt, tmp_path, "conv1.weight", lambda t: t.to(torch.int32))
    with pytest.raises(CheckpointError, match=f"tensor {key} is int32, the model needs floating"):
        load_model(path)
    path, key = _damaged(ckpt, tmp_path, "num_batches_tracked", lambda t: t.float())
    with pytest.raises(CheckpointError, match=f"tensor {key} is float32, the model needs integer"):
        load_model(path)


def test_pretrained_files_with_nan_or_integer_tensors_are_refused(tmp_path):
    net = ResNet("resnet18")
    state = dict(net.state_dict())
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"].clone().fill_(float("nan"))
    save_file(state, str(tmp_path / "nan.safetensors"))
    with pytest.raises(
        CheckpointError, match="nan.safetensors: tensor layer1.0.conv1.weight holds"
    ):
        load_pretrained(ResNet("resnet18"), tmp_path / "nan.safetensors")
    state["layer1.0.conv1.weight"] = torch.ones(64, 64, 3, 3, dtype=torch.int32)
    torch.save(state, tmp_path / "int.pth")
    with pytest.raises(CheckpointError, match="int.pth: tensor layer1.0.conv1.weight is int32"):
        load_pretrained(ResNet("resnet18"), tmp_path / "int.pth")


def _nan_for(names):
    """An ``extract_features`` that gives NaN rows for images whose mean is in ``names``."""
    real = SJDL.extract_features

    def fake(self, images):
        f = real(self, images)
        bad = torch.tensor([round(float(x.mean()), 4) in names for x in images])
        return torch.where(bad[:, None], torch.full_like(f, float("nan")), f)

    return fake


def _means(files):
    from sjdl.data.io import read_image
    from sjdl.data.transforms import resize

    return {round(float(resize(read_image(f), (64, 32)).mean()), 4) for f in files}


def test_index_build_and_add_skip_and_name_non_finite_embeddings(setup, tmp_path, monkeypatch):
    ckpt, syn = setup
    files = sorted((syn / "gallery_foggy").iterdir())
    monkeypatch.setattr(SJDL, "extract_features", _nan_for(_means(files[:1])))
    idx = tmp_path / "idx"
    result = cli("index", "build", syn / "gallery_foggy", "--checkpoint", ckpt, "-o", idx)
    assert result.exit_code == 0, result.output
    assert "skipped 1 image(s) whose embedding is not finite" in result.output
    assert files[0].name in result.output.replace("\n", "")
    index = GalleryIndex.load(idx)
    assert len(index.rows) == 3 and files[0].name not in {r["path"] for r in index.rows}
    assert np.isfinite(index.index.reconstruct_n(0, 3)).all()
    queries = sorted((syn / "query_foggy").iterdir())
    monkeypatch.setattr(SJDL, "extract_features", _nan_for(_means(queries)))
    result = cli("index", "add", idx, syn / "query_foggy")
    one_line_error(result, "none of the 2 image(s) gave a finite embedding")
    assert len(GalleryIndex.load(idx).rows) == 3


def test_search_with_a_non_finite_query_is_an_error_not_an_empty_answer(
    setup, monkeypatch, tmp_path
):
    ckpt, syn = setup
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    gallery = sjdl.Gallery.build([syn / "gallery_foggy"], reid)
    idx = gallery.save(tmp_path / "idx")
    with pytest.raises(ValueError, match="NaN or inf"):
        reid.embed(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="query embedding is not finite"):
        gallery.search(np.full(reid.dim, np.nan, np.float32))
    with pytest.raises(IndexError_, match="NaN or inf"):
        gallery._index.search(np.full((1, reid.dim), np.inf, np.float32))
    query = next((syn / "query_foggy").iterdir())
    monkeypatch.setattr(SJDL, "extract_features", _nan_for(_means([query])))
    monkeypatch.chdir(tmp_path)
    result = cli("search", query, "--index", idx)
    one_line_error(result, "not finite")
    assert not list(tmp_path.glob("*_ranks.png"))
