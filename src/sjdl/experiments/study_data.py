"""The study's data: the embedded source's identities re-split into train and test parts,
written as FVRID-style folders, fogged by the library's synthesis at each density.

Layout under ``<study>/data/``: ``split.json`` (which ids went where), ``source/`` (links to
the clear images, ``train|query|gallery/``), ``<density>/FVRID_syn`` (``sjdl fog`` output of
``source/``: copied clear images and their fogged partners, with ``fog_manifest.csv``) and
``<density>/FVRID_real`` (a link to the source's real foggy crops), and ``clear/FVRID_syn``
whose "foggy" images are the clear ones (links), for ReID trained on clear images.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..data import demo_root
from ..data.fog import fog_ranges
from ..data.records import (
    DatasetError,
    list_images,
    pair_with_clear,
    parse_name,
    read_labelled_folder,
)
from ..data.synthesis import MANIFEST, fog_folder
from ..storage import new_stage, publish, write_atomic

# density name -> the fog preset of data/fog.py (beta range, airlight range)
DENSITIES = {"paper": "paper", "dense": "official"}
# fog kinds no training uses, made from the test ids' clear images: beta spans both densities'
UNSEEN_BETA, UNSEEN_AIRLIGHT = (0.6, 2.4), (0.5, 1.0)
SPLITS = ("train", "query", "gallery")


def source_images(syn: Path) -> dict[int, dict[int, Path]]:
    """pid -> camid -> clear image, over the ``*_clear`` folders of an FVRID_syn set."""
    out: dict[int, dict[int, Path]] = {}
    for split in SPLITS:
        for path in list_images(syn / f"{split}_clear"):
            parsed = parse_name(path.name)
            if parsed is None:
                raise DatasetError(f"{path}: file name does not parse as PID_cCAM_*")
            pid, cam = parsed
            if cam in out.setdefault(pid, {}):
                raise DatasetError(f"{path}: a second image of id {pid} on camera {cam + 1}")
            out[pid][cam] = path
    return out


def split_ids(pids, n_test: int, seed: int) -> tuple[list[int], list[int]]:
    """(train ids, test ids), both sorted: ``n_test`` ids drawn at random with ``seed``."""
    pids = sorted(pids)
    if not 0 < n_test < len(pids) - 1:
        raise DatasetError(f"test ids: got {n_test}, expected 1 .. {len(pids) - 2} of {len(pids)}")
    rng = np.random.default_rng(seed)
    test = {pids[i] for i in rng.permutation(len(pids))[:n_test]}
    return [p for p in pids if p not in test], sorted(test)


def _assign(images, train_ids, test_ids) -> dict[str, list[Path]]:
    """Train: every image of the train ids; query = camera 1, gallery = camera 2 of test ids."""
    out = {"train": [p for pid in train_ids for _, p in sorted(images[pid].items())]}
    for split, cam in (("query", 0), ("gallery", 1)):
        missing = [pid for pid in test_ids if cam not in images[pid]]
        if missing:
            raise DatasetError(f"test id {missing[0]} has no camera-{cam + 1} image")
        out[split] = [images[pid][cam] for pid in test_ids]
    return out


def _link_tree(folder: Path, files: dict[str, list[Path]], kinds: tuple[str, ...]) -> None:
    """``folder/<split><kind>/NAME`` -> the source image, built beside and renamed in place."""
    tmp = new_stage(folder)
    try:
        for split, paths in files.items():
            for kind in kinds:
                (tmp / f"{split}{kind}").mkdir(parents=True)
                for p in paths:
                    os.symlink(p.resolve(), tmp / f"{split}{kind}" / p.name)
        publish(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def demo_test_ids(source: Path | None = None) -> list[int]:
    """The ids of the demo's own query set (``sjdl demo`` reports on them)."""
    root = (Path(source) if source else demo_root()) / "FVRID_syn" / "query_foggy"
    return sorted({parse_name(p.name)[0] for p in list_images(root)})


def choose_ids(images, n_test: int, seed: int, dev_ids: int = 0, source=None):
    """(train ids, test ids, excluded ids). ``dev_ids`` = 0: the study's test split.
    Otherwise a development split: ``dev_ids`` test ids drawn from the study's train ids
    minus the demo's test ids, which are left out (as are the study's test ids), so no
    choice made on it has seen a test id."""
    train, test = split_ids(images, n_test, seed)
    if not dev_ids:
        return train, test, []
    demo = set(demo_test_ids(source))
    pool = [p for p in train if p not in demo]
    dev_train, dev_test = split_ids(pool, dev_ids, seed)
    return dev_train, dev_test, sorted(set(images) - set(pool))


def check_split(n_test: int, seed: int, source: Path | None = None, dev_ids: int = 0) -> None:
    """Raise (writing nothing) when ``n_test`` test ids cannot be split off the source."""
    root = Path(source) if source else demo_root()
    choose_ids(source_images(root / "FVRID_syn"), n_test, seed, dev_ids, source)


def _embedded(path) -> bool:
    """Whether a recorded source is the package's embedded demo data (wherever installed)."""
    return isinstance(path, str) and Path(path).parts[-2:] == ("sjdl", "demo_data")


def prepare_split(
    data_dir: Path, n_test: int, seed: int, source: Path | None = None, dev_ids: int = 0
) -> dict:
    """Write (or check) ``split.json`` and ``source/``; returns the split."""
    root = Path(source) if source else demo_root()
    images = source_images(root / "FVRID_syn")
    train, test, excluded = choose_ids(images, n_test, seed, dev_ids, source)
    split = {"seed": seed, "source": str(root.resolve()), "train_ids": train, "test_ids": test}
    if dev_ids:
        split.update({"split": "dev", "excluded_ids": excluded})
    path = data_dir / "split.json"
    if path.is_file():
        old = json.loads(path.read_text())
        moved = source is None and _embedded(old.get("source")) and old["source"] != split["source"]
        if {**old, "source": split["source"]} != split or (old != split and not moved):
            raise DatasetError(
                f"{path}: this study folder was split differently (seed {old.get('seed')}, "
                f"{len(old.get('test_ids', []))} test ids); use another output folder"
            )
        if moved:  # the package was reinstalled elsewhere: the same ids, new links
            _link_tree(data_dir / "source", _assign(images, train, test), ("",))
            for real in data_dir.glob("*/FVRID_real"):
                if real.is_symlink():
                    real.unlink()
                    _link_real(real.parent, split["source"])
            write_atomic(path, json.dumps(split, indent=1).encode())
        return split
    data_dir.mkdir(parents=True, exist_ok=True)
    _link_tree(data_dir / "source", _assign(images, train, test), ("",))
    write_atomic(path, json.dumps(split, indent=1).encode())  # last: the split is complete
    return split


def prepare_unseen(data_dir: Path, kind: str, fog_seed: int) -> Path:
    """``data/unseen-<kind>/``: the test ids' query and gallery images fogged with ``kind``
    (a fog kind no training uses, beta in UNSEEN_BETA); returns that folder (a data.root)."""
    files = {s: list_images(data_dir / "source" / s) for s in ("query", "gallery")}
    return fog_unseen(files, data_dir / f"unseen-{kind}", kind, fog_seed)


def fog_unseen(files: dict[str, list[Path]], root: Path, kind: str, fog_seed: int) -> Path:
    """``root/FVRID_syn``: the clear images ``files`` (split -> paths) fogged with ``kind``
    (made once; a finished set has its manifest); returns ``root`` (a data.root)."""
    syn = root / "FVRID_syn"
    if not (syn / MANIFEST).is_file():
        src = root / "source"
        _link_tree(src, files, ("",))
        _fog(src, syn, fog_seed, UNSEEN_BETA, UNSEEN_AIRLIGHT, kind)
        shutil.rmtree(src)
    return root


def read_unseen(root: Path) -> tuple[list, list]:
    """(query, gallery) records of a ``fog_unseen`` folder, each paired with its clear image."""
    syn = root / "FVRID_syn"
    return tuple(
        pair_with_clear(read_labelled_folder(syn / f"{x}_foggy"), syn / f"{x}_clear")
        for x in ("query", "gallery")
    )


def _fog(src: Path, syn: Path, fog_seed: int, beta, airlight, kind="uniform", progress=None):
    threads = torch.get_num_threads()  # fog_folder's in-process worker sets 1 thread
    try:
        fog_folder(
            src,
            syn,
            seed=fog_seed,
            beta_range=beta,
            airlight_range=airlight,
            overwrite=True,  # only an unfinished set of our own can be there
            workers=1,
            progress=progress,
            kind=kind,
        )
    finally:
        torch.set_num_threads(threads)


def prepare_density(data_dir: Path, density: str, fog_seed: int, progress=None) -> Path:
    """``data/<density>/`` with the fogged split (made once; a finished one has its manifest)
    and a link to the real foggy crops; returns that folder (a ``data.root``)."""
    if density not in DENSITIES:
        raise DatasetError(f"density must be one of {', '.join(DENSITIES)}, got {density!r}")
    root = data_dir / density
    syn = root / "FVRID_syn"
    if not (syn / MANIFEST).is_file():
        beta, airlight = fog_ranges(DENSITIES[density])
        _fog(data_dir / "source", syn, fog_seed, beta, airlight, progress=progress)
    _link_real(root, json.loads((data_dir / "split.json").read_text())["source"])
    return root


def _link_real(root: Path, source: str) -> None:
    real = root / "FVRID_real"
    if not real.exists():
        tmp = root / "FVRID_real.partial"
        tmp.unlink(missing_ok=True)
        os.symlink(Path(source) / "FVRID_real", tmp)
        os.replace(tmp, real)


def prepare_clear(data_dir: Path) -> Path:
    """``data/clear/FVRID_syn``: every split's foggy AND clear images are the clear images."""
    root = data_dir / "clear"
    syn = root / "FVRID_syn"
    if not syn.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        files = {s: list_images(data_dir / "source" / s) for s in SPLITS}
        _link_tree(syn, files, ("_foggy", "_clear"))
    return root
