"""sjdl: foggy vehicle re-identification with semi-supervised joint defogging learning.

``sjdl.ReID`` (a trained checkpoint: embeddings, defogging) and ``sjdl.Gallery`` (a searchable
gallery index) are imported on first use, so ``import sjdl`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["Gallery", "ReID", "__version__"]


def __getattr__(name: str):
    if name in ("ReID", "Gallery"):
        from . import retrieval

        return getattr(retrieval, name)
    raise AttributeError(f"module 'sjdl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
