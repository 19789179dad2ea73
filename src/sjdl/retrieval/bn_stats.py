"""BatchNorm statistics re-estimated on a gallery's own images (no labels), kept with the index
so that its queries are embedded with the same statistics as its gallery.

The study's "BN re-estimated on gallery" rows (README "The recipe on the test split") measure
what this does: it helped at the paper's fog density and hurt in dense fog, so it is off unless
asked for (``sjdl index build --adapt-bn``, ``Gallery.build(..., adapt_bn=True)``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io

import numpy as np
import torch

from ..evaluation.adapt import BATCHNORMS

BUFFERS = ("running_mean", "running_var")


def _norms(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, BATCHNORMS)}


def encode(model: torch.nn.Module, source: str, images: int) -> dict:
    """The model's BatchNorm running statistics as a JSON-able record: ``source``, ``images``,
    ``sha256`` of the arrays and the arrays themselves (npz, base64)."""
    arrays = {
        f"{name}.{b}": getattr(m, b).detach().cpu().numpy().astype(np.float32)
        for name, m in _norms(model).items()
        for b in BUFFERS
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    return {
        "source": source,
        "images": int(images),
        "sha256": hashlib.sha256(data).hexdigest(),
        "npz_base64": base64.b64encode(data).decode("ascii"),
    }


def apply(model: torch.nn.Module, record: dict, where: str) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are ``record``'s (``encode``);
    statistics that do not fit the model's layers are a ValueError naming ``where``."""
    try:
        data = base64.b64decode(record["npz_base64"], validate=True)
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ValueError("their checksum does not match")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ValueError(f"{where}: its BatchNorm statistics are unreadable ({e})") from None
    adapted = copy.deepcopy(model)
    norms = _norms(adapted)
    expected = {f"{n}.{b}": tuple(getattr(m, b).shape) for n, m in norms.items() for b in BUFFERS}
    got = {k: tuple(v.shape) for k, v in arrays.items()}
    if expected != got:
        raise ValueError(
            f"{where}: its BatchNorm statistics ({len(got)} arrays) do not fit this model's "
            f"layers ({len(expected)} arrays)"
        )
    with torch.no_grad():
        for name, m in norms.items():
            for b in BUFFERS:
                getattr(m, b).copy_(torch.from_numpy(arrays[f"{name}.{b}"]))
    return adapted.eval()
