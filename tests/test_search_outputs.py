"""Issue 17 items 2 and 16: ``sjdl search`` never writes over its inputs or an existing file
(without --overwrite), refuses outputs it cannot write before the search runs, and draws a
gallery image deleted or damaged since indexing as a grey tile with a note."""

import shutil

import pytest

import sjdl
from sjdl.retrieval.gallery import Gallery

from .conftest import cli, make_fvrid, one_line_error
from .test_deploy import _checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_out")
    ckpt, _ = _checkpoint(root)
    syn = make_fvrid(root / "data") / "FVRID_syn"
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    idx = sjdl.Gallery.build([syn / "gallery_foggy"], reid).save(root / "idx")
    return idx, syn


@pytest.fixture
def world(setup, tmp_path, monkeypatch):
    """A private copy of the data and index (some tests damage them); cwd = tmp_path."""
    idx, syn = setup
    data = tmp_path / "syn"
    shutil.copytree(syn, data)
    ckpt = sjdl.Gallery.open(idx)._checkpoint
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    own = sjdl.Gallery.build([data / "gallery_foggy"], reid).save(tmp_path / "idx")
    monkeypatch.chdir(tmp_path)
    query = next((data / "query_foggy").iterdir())
    return own, data, query


def _search(query, idx, *extra):
    return cli("search", query, "--index", idx, "--top-k", "4", *extra)


def test_search_never_writes_over_the_query_or_a_gallery_image(world):
    idx, data, query = world
    before = query.read_bytes()
    one_line_error(_search(query, idx, "--png", query), "--png", "is the query image")
    one_line_error(_search(query, idx, "--defog-out", query), "--defog-out", "is the query")
    gallery_image = sorted((data / "gallery_foggy").iterdir())[0]
    kept = gallery_image.read_bytes()
    err = one_line_error(_search(query, idx, "--png", gallery_image), "index's gallery")
    assert gallery_image.name in err
    err = one_line_error(_search(query, idx, "--defog-out", gallery_image), "index's gallery")
    assert query.read_bytes() == before and gallery_image.read_bytes() == kept
    one_line_error(_search(query, idx, "--png", idx / "x.png"), "inside the index folder")
    same = data / "out.png"
    one_line_error(_search(query, idx, "--png", same, "--defog-out", same), "the same file")
    assert not same.exists()


def test_existing_outputs_are_replaced_only_with_overwrite(world):
    idx, data, query = world
    default = data.parent / f"{query.stem}_ranks.png"
    assert _search(query, idx).exit_code == 0 and default.is_file()
    default.write_bytes(b"mine")
    one_line_error(_search(query, idx), f"{query.stem}_ranks.png exists", "--overwrite")
    assert default.read_bytes() == b"mine"
    restored = data.parent / "restored.png"
    restored.write_bytes(b"mine too")
    result = _search(query, idx, "--png", data.parent / "new.png", "--defog-out", restored)
    one_line_error(result, "restored.png exists")
    assert restored.read_bytes() == b"mine too" and not (data.parent / "new.png").exists()
    result = _search(query, idx, "--defog-out", restored, "--overwrite")
    assert result.exit_code == 0, result.output
    assert default.read_bytes()[:4] == b"\x89PNG" and restored.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("png", "needle"),
    [
        ("out.xyz", "cannot write images of type '.xyz'"),
        ("no/dir/r.png", "does not exist"),
        ("adir", "is a folder"),
    ],
)
def test_unwritable_png_is_refused_before_the_search(world, monkeypatch, png, needle):
    idx, _, query = world
    (idx.parent / "adir").mkdir(exist_ok=True)
    searched = []
    monkeypatch.setattr(Gallery, "search", lambda *a, **k: searched.append(a) or [])
    one_line_error(_search(query, idx, "--png", idx.parent / png), "--png", needle)
    assert not searched


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_gallery_image_gone_since_indexing_is_a_grey_tile_with_a_note(world, damage):
    idx, data, query = world
    victim = sorted((data / "gallery_foggy").iterdir())[0]
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:40])
    out = data.parent / "ranks.jpg"
    result = _search(query, idx, "--png", out)
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())
    assert "1image(s)oftheanswercannolongerberead" in text and victim.name in text
    assert out.read_bytes()[:2] == b"\xff\xd8"  # a JPEG, as the suffix says
