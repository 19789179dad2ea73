"""Dataset readers: FVRID (syn + real), VeRi-776 folders, a generic folder layout, the demo set.

Each returns a ``ReIDData`` of plain ``ImageRecord`` lists; train pids are relabelled to
0..N-1 in sorted order, query/gallery pids keep their raw values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .records import (
    DatasetError,
    ImageRecord,
    check_query_gallery,
    pair_with_clear,
    read_labelled_folder,
    read_unlabelled_folder,
    relabel,
    summary_table,
)

LAYOUT_HELP = "see README.md, section 'Data layout'"


@dataclass
class ReIDData:
    """Train (synthetic, relabelled), query, gallery and real-foggy train records."""

    name: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    real_train: list[ImageRecord] = field(default_factory=list)
    real_labelled: bool = False

    @property
    def num_train_ids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_real_ids(self) -> int:
        return len({r.pid for r in self.real_train}) if self.real_labelled else 0

    def summary(self) -> str:
        splits = {"train": self.train, "query": self.query, "gallery": self.gallery}
        if self.real_train:
            splits["real train" + ("" if self.real_labelled else " (unlabelled)")] = self.real_train
        return summary_table(splits, self.name)


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found ({what}; {LAYOUT_HELP})")
    return path


def _paired_split(syn: Path, split: str, paired: bool) -> list[ImageRecord]:
    foggy = _need_dir(syn / f"{split}_foggy", f"{split} foggy images")
    records = read_labelled_folder(foggy)
    return pair_with_clear(records, syn / f"{split}_clear") if paired else records


def read_real_train(real: Path, labelled: bool) -> list[ImageRecord]:
    folder = _need_dir(real / "train_foggy", "real foggy training images")
    if labelled:
        return relabel(read_labelled_folder(folder))[0]
    return read_unlabelled_folder(folder)


def read_fvrid(
    root: str | Path,
    syn_dir: str = "FVRID_syn",
    real_dir: str = "FVRID_real",
    test_set: str = "syn",
    real_labelled: bool = True,
    with_real: bool = True,
    name: str = "FVRID",
) -> ReIDData:
    """FVRID: ``FVRID_syn/{train,query,gallery}_{foggy,clear}``, ``FVRID_real/*_foggy``."""
    root = _need_dir(Path(root), "dataset root")
    syn = _need_dir(root / syn_dir, "synthetic foggy set")
    train = relabel(_paired_split(syn, "train", paired=True))[0]
    if test_set == "syn":
        query = _paired_split(syn, "query", paired=True)
        gallery = _paired_split(syn, "gallery", paired=True)
    else:
        real = _need_dir(root / real_dir, "real foggy set")
        query = read_labelled_folder(_need_dir(real / "query_foggy", "real query"))
        gallery = read_labelled_folder(_need_dir(real / "gallery_foggy", "real gallery"))
    check_query_gallery(query, gallery, f"{root} ({test_set} query/gallery)")
    real_train: list[ImageRecord] = []
    if with_real:
        real_train = read_real_train(_need_dir(root / real_dir, "real foggy set"), real_labelled)
    return ReIDData(name, train, query, gallery, real_train, real_labelled and with_real)


def _labelled_splits(root: Path, folders: tuple[str, str, str], name: str) -> ReIDData:
    """Train / query / gallery folders of ``PID_cCAM_*`` images under ``root``."""
    root = _need_dir(Path(root), "dataset root")
    train, query, gallery = (
        read_labelled_folder(_need_dir(root / f, f"{split} images"))
        for f, split in zip(folders, ("train", "query", "gallery"), strict=True)
    )
    check_query_gallery(query, gallery, str(root))
    return ReIDData(name, relabel(train)[0], query, gallery)


def read_veri(root: str | Path) -> ReIDData:
    """VeRi-776: ``image_train/``, ``image_query/``, ``image_test/`` with ``0002_c002_*.jpg``."""
    return _labelled_splits(Path(root), ("image_train", "image_query", "image_test"), "VeRi-776")


def read_folder_dataset(root: str | Path) -> ReIDData:
    """Generic layout: ``train/``, ``query/``, ``gallery/`` folders of ``PID_cCAM_*`` images."""
    return _labelled_splits(Path(root), ("train", "query", "gallery"), Path(root).name)


def read_dataset(data_cfg, with_real: bool = True) -> ReIDData:
    """Dispatch on ``data.dataset``; ``fog_on_the_fly`` makes each train image its own clear."""
    kind = data_cfg.dataset
    if kind in ("fvrid", "demo"):
        root = data_cfg.root
        if kind == "demo" and not root:
            from .demo import demo_root

            root = demo_root()
        if not root:
            raise DatasetError(
                f"data.root is empty: set it to the folder holding "
                f"{data_cfg.syn_dir}/ and {data_cfg.real_dir}/ ({LAYOUT_HELP})"
            )
        data = read_fvrid(
            root,
            data_cfg.syn_dir,
            data_cfg.real_dir,
            data_cfg.test_set,
            data_cfg.real_labelled,
            with_real,
            "demo" if kind == "demo" else "FVRID",
        )
    elif kind == "veri":
        data = read_veri(data_cfg.root)
    else:
        data = read_folder_dataset(data_cfg.root)
    if data_cfg.fog_on_the_fly:
        data.train = [replace(r, clear=r.clear or r.path) for r in data.train]
    return data
