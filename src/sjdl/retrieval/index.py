"""A gallery index on disk: FAISS vectors + a metadata table + the model fingerprint.

Layout of an index folder: ``index.faiss`` (vectors), ``metadata.csv`` (row, path, pid,
camid, added), ``manifest.json`` (fingerprint of the checkpoint and config that made the
embeddings, dimension, kind, metric, count, a save generation, and the SHA-256 of the two other
files and of the manifest itself: any change to them after the save is detected on load) and
the ownership marker. Every write goes to a staged folder published by the storage room
(``storage.publish``: fsynced, one complete copy findable after a crash at any point and put
back by ``recover_index``); writers hold the folder's lock so two of them cannot lose each
other's rows.
"""

from __future__ import annotations

import csv
import datetime
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..storage import (
    LockedError,
    StorageError,
    check_replaceable,
    folder_lock,
    new_stage,
    publish,
    recover,
    sha256_file,
    sha256_json,
    write_marker,
)

KINDS = ("flat", "hnsw", "ivf")
FIELDS = ["row", "path", "pid", "camid", "added"]
FORMAT = "sjdl-index-1"
DATA_FILES = ("index.faiss", "metadata.csv")
OWN_FILES = (*DATA_FILES, "manifest.json")


class IndexError_(ValueError):
    """An index folder is missing, corrupted or was built with another model."""


def fingerprint(checkpoint: str | Path) -> str:
    """SHA-256 of the checkpoint file (weights + the config in its header)."""
    return sha256_file(checkpoint)


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - a dependency
        raise IndexError_("faiss is not installed: pip install faiss-cpu") from e
    return faiss


def new_faiss_index(dim: int, kind: str = "flat", metric: str = "euclidean", n_train: int = 0):
    """Exact (flat) or approximate (HNSW, IVF) index; cosine = inner product of unit vectors."""
    faiss = _faiss()
    ip = metric == "cosine"
    space = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
    if kind == "flat":
        return faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, space)
        index.hnsw.efSearch = 128
        return index
    if kind == "ivf":
        nlist = max(1, min(4096, int(4 * np.sqrt(max(n_train, 1)))))
        quantizer = faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, space)
        index.nprobe = min(nlist, max(8, nlist // 125))  # 0.8 % of the lists per query
        return index
    raise IndexError_(f"unknown index kind {kind!r}, expected one of {', '.join(KINDS)}")


@dataclass
class Hit:
    rank: int
    distance: float
    path: str
    pid: int
    camid: int
    row: int = -1  # the gallery row (metadata.csv ``row``)


class GalleryIndex:
    """Vectors, their metadata rows and the manifest; ``save`` writes them atomically."""

    def __init__(self, index, rows: list[dict], manifest: dict):
        self.index, self.rows, self.manifest = index, rows, manifest

    @classmethod
    def create(
        cls,
        dim: int,
        fp: str,
        kind: str = "flat",
        metric: str = "euclidean",
        config_yaml: str = "",
        n_train: int = 0,
    ) -> GalleryIndex:
        manifest = {
            "format": FORMAT,
            "fingerprint": fp,
            "dim": dim,
            "kind": kind,
            "metric": metric,
            "count": 0,
            "config": config_yaml,
        }
        return cls(new_faiss_index(dim, kind, metric, n_train), [], manifest)

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.manifest["metric"] == "cosine":
            v = v / np.linalg.norm(v, axis=1, keepdims=True).clip(min=1e-12)
        return v

    def paths(self) -> set[str]:
        """The image paths already in the index."""
        return {r["path"] for r in self.rows}

    def add(self, vectors: np.ndarray, records: list[tuple[str, int, int]]) -> None:
        """Append vectors and their (path, pid, camid); a path already present is an error."""
        if len(vectors) != len(records):
            raise ValueError("one metadata record per vector is needed")
        seen = self.paths()
        for p, _, _ in records:
            if p in seen:
                raise IndexError_(f"{p} is already in the index (or twice in this batch)")
            seen.add(p)
        v = self._prepare(vectors)
        if not np.isfinite(v).all():
            bad = int((~np.isfinite(v).all(1)).sum())
            raise IndexError_(f"{bad} embedding(s) hold NaN or inf values; nothing was added")
        if not self.index.is_trained:
            if len(v) < self.index.nlist:
                raise IndexError_(
                    f"an IVF index with {self.index.nlist} lists needs at least "
                    f"that many vectors to train; use --kind flat or hnsw"
                )
            self.index.train(v)
        now = datetime.datetime.now().isoformat(timespec="seconds")
        start = len(self.rows)
        self.index.add(v)
        self.rows += [
            {"row": start + i, "path": p, "pid": pid, "camid": cam, "added": now}
            for i, (p, pid, cam) in enumerate(records)
        ]
        self.manifest["count"] = len(self.rows)

    def search(self, queries: np.ndarray, top_k: int = 10) -> list[list[Hit]]:
        """Nearest gallery items per query; distances are Euclidean (or 1 - cosine)."""
        if not self.rows:
            raise IndexError_("the index is empty (0 images): add images with sjdl index add")
        k = min(top_k, len(self.rows))
        q = self._prepare(queries)
        if not np.isfinite(q).all():
            raise IndexError_("the query embedding holds NaN or inf values; it cannot be searched")
        scores, ids = self.index.search(q, k)
        out = []
        for srow, irow in zip(scores, ids, strict=True):
            hits = []
            for r, (s, i) in enumerate(zip(srow, irow, strict=True)):
                if i < 0:
                    continue
                meta = self.rows[int(i)]
                d = (
                    1 - float(s)
                    if self.manifest["metric"] == "cosine"
                    else float(np.sqrt(max(float(s), 0.0)))
                )
                hits.append(
                    Hit(r + 1, d, meta["path"], int(meta["pid"]), int(meta["camid"]), int(i))
                )
            out.append(hits)
        return out

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` through a staged folder (see the module text); a
        folder holding anything but an index's own files is refused, never emptied."""
        faiss = _faiss()
        folder = Path(folder)
        with folder_lock(folder):
            recover_index(folder)
            check_replaceable(folder, "index", OWN_FILES, "saving an index")
            stage = new_stage(folder)
            try:
                faiss.write_index(self.index, str(stage / "index.faiss"))
                with (stage / "metadata.csv").open("w", newline="") as f:
                    w = csv.DictWriter(f, FIELDS)
                    w.writeheader()
                    w.writerows(self.rows)
                manifest = {
                    k: v for k, v in self.manifest.items() if k not in ("files", "manifest_sha256")
                }
                manifest["generation"] = int(manifest.get("generation", 0)) + 1
                manifest["save_id"] = uuid.uuid4().hex
                manifest["files"] = {n: sha256_file(stage / n) for n in DATA_FILES}
                manifest["manifest_sha256"] = sha256_json(manifest)
                (stage / "manifest.json").write_text(json.dumps(manifest, indent=2))
                write_marker(stage, "index", "sjdl index")
                publish(stage, folder)
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                raise
            self.manifest = manifest
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> GalleryIndex:
        faiss = _faiss()
        folder = Path(folder)
        recover_index(folder)
        files = [folder / n for n in OWN_FILES]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise IndexError_(f"{folder}: not an index folder (missing {', '.join(missing)})")
        try:
            manifest = json.loads(files[2].read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise IndexError_(f"{files[2]}: corrupted ({e})") from None
        check_manifest(manifest, files[2])
        try:
            index = faiss.read_index(str(files[0]))
        except RuntimeError as e:
            raise IndexError_(
                f"{files[0]}: cannot read the FAISS index ({str(e).splitlines()[0]})"
            ) from None
        rows = _read_rows(files[1])
        if not (index.ntotal == len(rows) == manifest.get("count")) or index.d != manifest.get(
            "dim"
        ):
            raise IndexError_(
                f"{folder}: inconsistent index ({index.ntotal} vectors of dimension {index.d}, "
                f"{len(rows)} metadata rows, manifest says {manifest.get('count')} x "
                f"{manifest.get('dim')}); rebuild it with sjdl index build"
            )
        problem = integrity_problem(folder, manifest)  # last: the specific errors come first
        if problem:
            raise IndexError_(f"{problem}; rebuild it with sjdl index build")
        return cls(index, rows, manifest)

    def check_fingerprint(self, fp: str, checkpoint) -> None:
        if fp != self.manifest["fingerprint"]:
            raise IndexError_(
                f"{checkpoint} is not the checkpoint this index was built with (fingerprint "
                f"{fp[:12]} vs {self.manifest['fingerprint'][:12]}); embeddings from different "
                "models cannot be mixed: rebuild the index or pass the original checkpoint"
            )


def integrity_problem(folder: Path, manifest: dict) -> str | None:
    """What does not match the checksums the manifest recorded at its save (None: all
    match; an index saved before checksums existed is not checked)."""
    if "manifest_sha256" not in manifest:
        return None
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    if sha256_json(rest) != manifest["manifest_sha256"]:
        return (
            f"{folder / 'manifest.json'}: changed after the index was saved (its checksum "
            "does not match its content)"
        )
    files = manifest.get("files")
    for name in DATA_FILES:
        want = files.get(name) if isinstance(files, dict) else None
        try:
            ok = want is not None and sha256_file(folder / name) == want
        except OSError:
            ok = False
        if not ok:
            return (
                f"{folder / name}: does not match the index's checksum (changed, reordered "
                "or damaged after the index was saved)"
            )
    return None


def _complete(stage: Path) -> bool:
    """Whether a staged index folder was written to the end (its checksums match)."""
    try:
        manifest = json.loads((stage / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and "manifest_sha256" in manifest
        and integrity_problem(stage, manifest) is None
    )


def recover_index(folder: str | Path) -> str | None:
    """After a crash during a save, put the one complete copy back under ``folder`` (holding
    the folder's lock; skipped while another process writes it and ``folder`` exists)."""
    from ..storage.publish import old_path, stage_path

    folder = Path(folder)
    if not stage_path(folder).exists() and not old_path(folder).exists():
        return None
    try:
        with folder_lock(folder):
            return recover(folder, _complete)
    except LockedError as e:
        if folder.exists():
            return None  # its writer will clean up; the folder itself is complete
        raise IndexError_(str(e)) from None
    except (OSError, StorageError) as e:
        raise IndexError_(f"{folder}: cannot recover an interrupted save ({e})") from None


MANIFEST_TYPES = {"fingerprint": str, "dim": int, "kind": str, "metric": str, "count": int}


def check_manifest(manifest, path: Path) -> None:
    """A manifest is a JSON object with its keys of the right types and values."""
    if not isinstance(manifest, dict):
        raise IndexError_(
            f"{path}: corrupted (a JSON {type(manifest).__name__}, expected an object)"
        )
    for key, tp in MANIFEST_TYPES.items():
        value = manifest.get(key)
        if not isinstance(value, tp) or isinstance(value, bool):
            raise IndexError_(f"{path}: corrupted ({key} is {value!r}, expected {tp.__name__})")
    if manifest["kind"] not in KINDS or manifest["metric"] not in ("euclidean", "cosine"):
        raise IndexError_(
            f"{path}: corrupted (kind {manifest['kind']!r}, metric {manifest['metric']!r})"
        )


def _read_rows(path: Path) -> list[dict]:
    """metadata.csv rows, checked: the columns are there and row/pid/camid are integers."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in FIELDS if c not in (reader.fieldnames or [])]
            if missing:
                raise IndexError_(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise IndexError_(f"{path}: corrupted ({e})") from None
    for line, row in enumerate(rows, start=2):
        for key in ("row", "pid", "camid"):
            try:
                row[key] = int(row[key])
            except (TypeError, ValueError):
                raise IndexError_(
                    f"{path} line {line}: {key} {row[key]!r} is not an integer"
                ) from None
    return rows


def is_index(folder: str | Path) -> bool:
    """Whether ``folder`` holds an sjdl index (its manifest names the format)."""
    try:
        return json.loads((Path(folder) / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False
