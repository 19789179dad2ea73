"""Deployment: ONNX export, the FAISS gallery index and search, defogging of image files,
the Python API (``ReID``, ``Gallery``) and the search page's web app (``server``, imported
on demand)."""

from ..storage import LockedError, folder_lock
from .defog import defog_dcp, defog_firm, pad_to_multiple
from .embed import embed, image_records
from .export import export_onnx
from .gallery import Gallery, Match
from .index import GalleryIndex, IndexError_, fingerprint
from .reid import ReID

__all__ = [
    "Gallery",
    "GalleryIndex",
    "IndexError_",
    "LockedError",
    "Match",
    "ReID",
    "defog_dcp",
    "defog_firm",
    "embed",
    "export_onnx",
    "fingerprint",
    "folder_lock",
    "image_records",
    "pad_to_multiple",
]
