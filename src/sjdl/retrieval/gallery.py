"""``sjdl.Gallery``: build, open, extend, save and search a gallery index from Python.

The folder format, fingerprint checks, locking and atomic writes are those of ``sjdl index``
(which calls this class). ``save`` never loses rows: it holds the folder's lock, refuses a
folder that another writer changed since this gallery read it, and refuses to replace a
non-empty folder (or one holding an input) unless ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..storage import folder_lock, sha256_file
from .embed import embed, image_batches, image_records
from .index import KINDS, GalleryIndex, IndexError_, fingerprint, recover_index
from .outputs import check_index_name, check_index_output
from .reid import ReID, as_list

Progress = Callable[[int, int], None]  # (images just embedded, total)


@dataclass
class Match:
    """One ranked gallery image; ``pid``/``camid`` are None when its name does not carry them."""

    rank: int
    path: str
    distance: float
    pid: int | None
    camid: int | None
    row: int


@dataclass
class AddResult:
    """What ``build``/``add`` did: paths added, already present (skipped), unreadable, and
    left out because their embedding was not finite (NaN/inf)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    nonfinite: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why each unreadable one was skipped
    bad_names: list[str] = field(default_factory=list)  # not UTF-8 (escaped): not indexed


def _disk_state(folder: Path):
    """Identity of the index written in ``folder``: the manifest's content hash (every save
    writes a new generation and a random save id into it), not only its inode/mtime/size."""
    try:
        st = (folder / "manifest.json").stat()
        digest = sha256_file(folder / "manifest.json")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size, digest


def _same_folder(a: Path, b: Path) -> bool:
    return a.absolute().resolve() == b.absolute().resolve()


class Gallery:
    """Gallery images, their embeddings and the model that made them.

    >>> gallery = sjdl.Gallery.build(["gallery/"], reid)      # or Gallery.open("my_index")
    >>> gallery.search("query.jpg", k=5)[0].path
    """

    def __init__(self, index: GalleryIndex, reid: ReID | None, checkpoint: Path | None = None):
        self._index, self._reid = index, reid
        self._checkpoint = reid.checkpoint if reid is not None else checkpoint
        self._device = "auto"
        self._sources: list[Path] = []
        self.folder: Path | None = None
        self._state = None
        self.last_add = AddResult()

    # --- creating and opening -----------------------------------------------------------

    @classmethod
    def build(
        cls,
        paths,
        reid: ReID | str | Path,
        kind: str = "flat",
        *,
        adapt_bn: bool = False,
        progress: Progress | None = None,
    ) -> Gallery:
        """Embed image files and folders of images (recursively) into a new in-memory gallery;
        ``kind``: flat (exact), hnsw or ivf (approximate). Unreadable images are skipped and
        listed in ``last_add``; ``save`` writes it. ``adapt_bn``: first re-estimate the
        model's BatchNorm statistics on these images (no labels); the index keeps them, so
        its queries and later additions are embedded with them too."""
        if kind not in KINDS:
            raise IndexError_(f"unknown index kind {kind!r}, expected one of {', '.join(KINDS)}")
        reid = reid if isinstance(reid, ReID) else ReID.from_checkpoint(reid)
        paths = [Path(p) for p in as_list(paths)]
        bad_names: list[str] = []
        records = image_records(paths, bad_names)
        if not records:
            raise IndexError_(
                f"no image can be indexed: every file name is not UTF-8 ({bad_names[0]})"
            )
        reasons: list[str] = []
        total = len(records) * (2 if adapt_bn else 1)  # two passes with the re-estimation
        if adapt_bn:
            tick = (lambda n: progress(n, total)) if progress else None
            batches = image_batches(records, reid.size, max(2, reid.cfg.test.batch_size), tick)
            reid = reid._adapted(batches, "gallery")
        feats, meta, skipped, nonfinite = _embed_records(reid, records, progress, reasons, total)
        index = GalleryIndex.create(
            reid.dim, reid.fingerprint, kind, reid.cfg.test.metric, reid.cfg.to_yaml(), len(feats)
        )
        index.manifest["checkpoint"] = str(reid.checkpoint.resolve())
        if reid._bn is not None:  # the statistics its embeddings were made with
            index.manifest["bn_statistics"] = reid._bn
        index.add(feats, meta)
        gallery = cls(index, reid)
        gallery._sources = [*paths, reid.checkpoint]
        gallery.last_add = AddResult(
            [m[0] for m in meta], [], skipped, nonfinite, reasons, bad_names
        )
        return gallery

    @classmethod
    def open(
        cls, folder: str | Path, reid: ReID | str | Path | None = None, device: str = "auto"
    ) -> Gallery:
        """Open an index folder. ``reid``: a ``ReID``, a checkpoint, or None for the one the
        index was built with (loaded on first use, on ``device``); a checkpoint other than
        the index's is refused (its embeddings could not be compared)."""
        folder = Path(folder)
        recover_index(folder)
        state = _disk_state(folder)
        index = GalleryIndex.load(folder)
        if isinstance(reid, ReID):
            index.check_fingerprint(reid.fingerprint, reid.checkpoint)
            gallery = cls(index, _with_index_bn(reid, index, folder))
        else:
            from ..models.io import resolve_checkpoint

            if reid is None and not index.manifest.get("checkpoint"):
                raise IndexError_(f"{folder}: the manifest names no checkpoint; pass one")
            ckpt = resolve_checkpoint(reid or index.manifest["checkpoint"])
            index.check_fingerprint(fingerprint(ckpt), ckpt)
            gallery = cls(index, None, ckpt)
            gallery._device = device
        gallery.folder, gallery._state = folder, state
        return gallery

    # --- contents ---------------------------------------------------------------------

    @property
    def reid(self) -> ReID:
        """The model of this gallery (loaded on first use when opened without one)."""
        if self._reid is None:
            reid = ReID.from_checkpoint(self._checkpoint, self._device)
            reid._fingerprint = self._index.manifest["fingerprint"]  # checked at open
            self._reid = _with_index_bn(reid, self._index, self.folder or "this gallery")
        return self._reid

    def __len__(self) -> int:
        return len(self._index.rows)

    def __repr__(self) -> str:
        where = f" at {str(self.folder)!r}" if self.folder else ""
        return f"Gallery({len(self)} images, {self._index.manifest['kind']}{where})"

    def add(self, paths, *, progress: Progress | None = None) -> AddResult:
        """Embed and append images and folders of images; paths already in the gallery are
        skipped, unreadable images too (both listed in the result). Call ``save`` to keep."""
        paths = [Path(p) for p in as_list(paths)]
        bad_names: list[str] = []
        records = image_records(paths, bad_names)
        have = self._index.paths()
        new = [r for r in records if str(r.path) not in have]
        result = AddResult(duplicates=[str(r.path) for r in records if str(r.path) in have])
        result.bad_names = bad_names
        if new:
            feats, meta, result.unreadable, result.nonfinite = _embed_records(
                self.reid, new, progress, result.reasons
            )
            self._index.add(feats, meta)
            result.added = [m[0] for m in meta]
        self._sources += paths
        self.last_add = result
        return result

    def search(self, query, k: int = 10) -> list[Match]:
        """The ``k`` nearest gallery images to one query (a path, PIL image, tensor in [0, 1],
        or an embedding of dimension D), nearest first."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not len(self):
            raise IndexError_("the index is empty (0 images): add images with sjdl index add")
        if isinstance(query, np.ndarray) and query.ndim == 1:
            feats = query[None].astype(np.float32)
            if feats.shape[1] != self._index.manifest["dim"]:
                raise ValueError(
                    f"an embedding of dimension {feats.shape[1]}; this gallery holds "
                    f"{self._index.manifest['dim']}-d embeddings"
                )
        else:
            items = as_list(query)
            if len(items) != 1:
                raise ValueError(f"search takes one query image, got {len(items)}")
            feats = self.reid.embed(items)
        if not np.isfinite(feats).all():
            what = "the query embedding" if len(feats) else "the query"
            raise ValueError(
                f"{what} is not finite (NaN or inf values): the model gives no usable "
                "embedding for this image, so it cannot be searched"
            )
        return [
            Match(
                h.rank,
                h.path,
                h.distance,
                h.pid if h.pid >= 0 else None,
                h.camid if h.camid >= 0 else None,
                h.row,
            )
            for h in self._index.search(feats, int(k))[0]
        ]

    # --- writing ----------------------------------------------------------------------

    def save(self, folder: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Write the gallery atomically to ``folder`` (default: the one it was opened from or
        last saved to), holding the folder's lock. Saving back where it was read is refused
        if another writer changed that folder meanwhile (open it again and redo the add);
        another folder must be new or empty, unless ``overwrite`` (never one holding an
        input image or the checkpoint)."""
        if folder is None and self.folder is None:
            raise ValueError("this gallery was never saved: pass a folder to save it to")
        target = Path(folder) if folder is not None else self.folder
        check_index_name(target)
        with folder_lock(target):
            now = _disk_state(target)
            own = self.folder is not None and _same_folder(target, self.folder)
            if own and now is not None:
                if now != self._state:
                    raise IndexError_(
                        f"{target} was changed by another writer since this gallery read it; "
                        "nothing was written: open it again and repeat the add"
                    )
            else:
                check_index_output(target, [*self._sources, self._checkpoint], overwrite)
            self._index.save(target)
            self.folder, self._state = target, _disk_state(target)
        return target

    # --- internals for the search page ------------------------------------------------

    def _path_of(self, row: int) -> str | None:
        rows = self._index.rows
        return rows[row]["path"] if 0 <= row < len(rows) else None

    def _changed_on_disk(self) -> bool:
        return self.folder is not None and _disk_state(self.folder) != self._state

    @property
    def _manifest(self) -> dict:
        return self._index.manifest


def _with_index_bn(reid: ReID, index: GalleryIndex, where) -> ReID:
    """``reid`` with the BatchNorm statistics the index's embeddings were made with: the
    index's re-estimated ones, or the checkpoint's (a ReID re-estimated elsewhere is refused:
    its embeddings would not be comparable with the index's)."""
    record = index.manifest.get("bn_statistics")
    if record is None:
        if reid._bn is not None:
            raise IndexError_(
                f"{where}: the index was built with the checkpoint's BatchNorm statistics, "
                "this ReID has re-estimated ones (adapt_bn); load the checkpoint again"
            )
        return reid
    if reid._bn is not None and reid._bn.get("sha256") == record.get("sha256"):
        return reid
    try:
        return reid.with_bn_statistics(record, str(where))
    except ValueError as e:
        raise IndexError_(str(e)) from None


def _embed_records(
    reid: ReID, records, progress: Progress | None, reasons=None, total: int | None = None
):
    """(features, [(path, pid, camid)], unreadable paths, paths with a non-finite embedding)
    for gallery records; the reasons they could not be read go to ``reasons``; ``progress``
    gets (images done, ``total``, default the number of records)."""
    total = total or len(records)
    nonfinite: list[str] = []
    feats, kept, skipped = embed(
        reid.model,
        records,
        reid.size,
        reid.device,
        reid.cfg.test.batch_size,
        progress=(lambda n: progress(n, total)) if progress else None,
        normalize=reid.cfg.test.normalize,
        nonfinite=nonfinite,
        errors=reasons,
    )
    meta = [(str(r.path), r.pid, r.camid) for r in kept]
    return feats, meta, [str(p) for p in skipped], nonfinite
