import pytest

from sjdl.config import load_config
from sjdl.data import DatasetError, demo_root, read_dataset, read_fvrid, read_veri
from sjdl.data.records import parse_name, summary_table

from .conftest import make_fvrid, write_image


def test_parse_name():
    assert parse_name("00012_c003_000123_0.jpg") == (12, 2)
    assert parse_name("-1_c001_x.jpg") == (-1, 0)
    assert parse_name("car_0001_cam1.jpg") is None


def test_fvrid_reader_pairs_relabels_and_counts(fvrid):
    data = read_fvrid(fvrid)
    assert data.num_train_ids == 3 and len(data.train) == 12
    assert sorted({r.pid for r in data.train}) == [0, 1, 2]
    # relabelling follows sorted raw pids: 3 -> 0, 7 -> 1, 9 -> 2
    by_name = {r.path.name[:5]: r.pid for r in data.train}
    assert by_name == {"00003": 0, "00007": 1, "00009": 2}
    assert all(r.clear is not None and r.clear.name == r.path.name for r in data.train)
    assert all(r.clear.parent.name == "train_clear" for r in data.train)
    assert {r.pid for r in data.query} == {100, 101}  # raw pids kept for evaluation
    assert {r.camid for r in data.gallery} == {1, 2}  # c002, c003 -> 0-based
    assert data.real_labelled and data.num_real_ids == 2
    table = data.summary()
    assert "train" in table and "query" in table and "real train" in table
    assert "|     3 |       12 |         2" in table  # ids | images | cameras


def test_real_test_set_and_unlabelled_real(tmp_path):
    root = make_fvrid(tmp_path / "d", real_labelled=False)
    data = read_fvrid(root, test_set="real", real_labelled=False)
    assert data.query[0].path.parent.name == "query_foggy"
    assert data.query[0].path.parent.parent.name == "FVRID_real"
    assert data.num_real_ids == 0 and all(r.pid == -1 for r in data.real_train)
    assert "real train (unlabelled)" in data.summary()


def test_junk_pids_are_skipped(fvrid):
    for kind in ("foggy", "clear"):
        write_image(fvrid / "FVRID_syn" / f"train_{kind}" / "-1_c001_000000_0.jpg")
    assert all(r.pid >= 0 for r in read_fvrid(fvrid).train)


def test_missing_folder_error_names_it(fvrid):
    import shutil

    shutil.rmtree(fvrid / "FVRID_syn" / "gallery_foggy")
    with pytest.raises(DatasetError, match=r"gallery_foggy: folder not found .*Data layout"):
        read_fvrid(fvrid)


def test_unparseable_names_show_examples_and_pattern(fvrid):
    folder = fvrid / "FVRID_syn" / "train_foggy"
    for i in range(7):
        write_image(folder / f"bad_name_{i}.jpg")
    with pytest.raises(DatasetError) as e:
        read_fvrid(fvrid)
    msg = str(e.value)
    assert "7 file name(s) do not parse" in msg and "bad_name_0.jpg" in msg
    assert "(and 2 more)" in msg and "expected PID_cCAM_*.jpg" in msg and "train_foggy" in msg


def test_foggy_without_clear_and_reverse(fvrid):
    syn = fvrid / "FVRID_syn"
    (syn / "train_clear" / "00003_c001_000000_0.jpg").unlink()
    with pytest.raises(
        DatasetError,
        match=r"train_clear: 1 foggy image\(s\) have no clear partner"
        r".*00003_c001_000000_0.jpg",
    ):
        read_fvrid(fvrid)
    (syn / "train_foggy" / "00003_c001_000000_0.jpg").unlink()
    write_image(syn / "train_clear" / "00042_c001_000000_0.jpg")
    with pytest.raises(
        DatasetError,
        match=r"train_foggy: 1 clear image\(s\) in .*train_clear "
        r"have no foggy partner: 00042",
    ):
        read_fvrid(fvrid)


def test_empty_split(fvrid):
    for p in (fvrid / "FVRID_syn" / "query_foggy").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="query_foggy: no images"):
        read_fvrid(fvrid)


def test_query_ids_absent_from_gallery(fvrid):
    for kind in ("foggy", "clear"):
        write_image(fvrid / "FVRID_syn" / f"query_{kind}" / "00555_c001_000000_0.jpg")
    with pytest.raises(DatasetError, match=r"1 query id\(s\) have no image in the gallery: 555"):
        read_fvrid(fvrid)


def test_single_camera_query_gallery_is_explained(tmp_path):
    root = tmp_path / "own"
    for split in ("train", "query", "gallery"):
        for pid in (1, 2):
            write_image(root / split / f"{pid:04d}_c001_{split}.jpg")
    from sjdl.data import read_folder_dataset

    with pytest.raises(DatasetError, match="same-id-same-camera filter removes them all"):
        read_folder_dataset(root)


def test_veri_layout(tmp_path):
    root = tmp_path / "VeRi"
    for split, pids, cams in (
        ("image_train", (2, 5), (1, 2)),
        ("image_query", (9,), (1,)),
        ("image_test", (9,), (2, 3)),
    ):
        for pid in pids:
            for cam in cams:
                write_image(root / split / f"{pid:04d}_c{cam:03d}_00030600_0.jpg")
    data = read_veri(root)
    assert data.num_train_ids == 2 and len(data.gallery) == 2 and data.train[0].clear is None


def test_read_dataset_dispatch_and_empty_root():
    cfg = load_config(overrides=["data.dataset=fvrid"])
    with pytest.raises(DatasetError, match="data.root is empty.*Data layout"):
        read_dataset(cfg.data)


def test_fog_on_the_fly_uses_train_images_as_clear(tmp_path):
    root = tmp_path / "own"
    for split in ("train", "query", "gallery"):
        for pid in (1, 2):
            write_image(root / split / f"{pid:04d}_c00{1 if split != 'gallery' else 2}_x.jpg")
    cfg = load_config(
        overrides=["data.dataset=folder", f"data.root={root}", "data.fog_on_the_fly=true"]
    )
    data = read_dataset(cfg.data)
    assert all(r.clear == r.path for r in data.train)


def test_demo_set_is_found_and_valid():
    root = demo_root()
    cfg = load_config(overrides=["data.dataset=demo", "data.real_labelled=false"])
    data = read_dataset(cfg.data)
    assert data.num_train_ids == 507 and len(data.train) == 1014
    assert len(data.query) == len(data.gallery) == 60
    assert {r.camid for r in data.query} == {0} and {r.camid for r in data.gallery} == {1}
    assert len(data.real_train) > 500 and data.num_real_ids == 0
    assert (root / "NOTICE.md").is_file()
    assert "  train  |   507 |     1014 |         2" in summary_table({"train": data.train})
