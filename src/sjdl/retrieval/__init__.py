"""Deployment: ONNX export, the FAISS gallery index and search, defogging of image files."""

from .defog import defog_dcp, defog_firm, pad_to_multiple
from .embed import embed, image_records
from .export import export_onnx
from .index import GalleryIndex, IndexError_, fingerprint
from .lock import LockedError, folder_lock

__all__ = [
    "GalleryIndex",
    "IndexError_",
    "LockedError",
    "defog_dcp",
    "defog_firm",
    "embed",
    "export_onnx",
    "fingerprint",
    "folder_lock",
    "image_records",
    "pad_to_multiple",
]
