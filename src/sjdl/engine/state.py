"""Training state: model weights, optimiser, scheduler, scaler, epoch, sampler and RNG.

One file, so weights and state can never disagree (``last.safetensors`` is an export of
the same weights for evaluation). Saved with ``torch.save`` of plain Python containers,
numbers and tensors only, loaded with ``weights_only=True`` (nothing arbitrary is
unpickled); written atomically.
"""

from __future__ import annotations

import io
import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from ..models.io import CheckpointError, first_line
from ..storage import write_atomic


def rng_state() -> dict:
    np_state = np.random.get_state()  # noqa: NPY002 (global RNG state is what we restore)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(_to_lists(random.getstate())),
    }


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple | list) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))  # noqa: NPY002
    random.setstate(_to_tuples(state["python"]))


def plain(x):
    """``x`` with numpy scalars/arrays turned into Python numbers/tensors, recursively (a
    weights-only load refuses numpy types)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(plain(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy())
    return x


def save_state(path: str | Path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save(plain(state), buf)
    return write_atomic(path, buf.getbuffer())


def load_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training state not found (cannot resume)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: it holds pickled Python objects a weights-only load does not "
            f"run ({first_line(e)})"
        ) from None
    except Exception as e:  # truncated or not a torch file
        raise CheckpointError(
            f"{path}: cannot read the training state ({first_line(e)}); it is damaged"
        ) from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path}: not an sjdl training state")
    problem = state_problem(state)
    if problem:
        raise CheckpointError(f"{path}: damaged training state ({problem}); cannot resume")
    return state


_INT, _NUM, _T = (int,), (int, float), (torch.Tensor,)
# key -> (allowed types, required); "model" is absent in states of older versions
STATE_SCHEMA = {
    "epoch": (_INT, True),
    "step_in_epoch": (_INT, True),
    "global_step": (_INT, True),
    "best_map": (_NUM, True),
    "model": ((dict,), False),
    "optimizer": ((dict,), True),
    "scheduler": ((dict,), True),
    "scaler": ((dict, type(None)), False),
    "rng": ((dict,), True),
    "syn_loader_gen": (_T, True),
    "real_loader_gen": ((torch.Tensor, type(None)), False),
    "epoch_sums": ((dict, type(None)), False),
    "epoch_counts": ((dict, type(None)), False),
    "data": ((dict,), False),  # records_summary per stream; states of older versions lack it
}


def _kind(x) -> str:
    return type(x).__name__


def state_problem(st: dict) -> str | None:
    """What is wrong with a loaded training state (a missing key, a wrong type), or None."""
    for key, (types, required) in STATE_SCHEMA.items():
        if key not in st:
            if required:
                return f"'{key}' is missing"
            continue
        if not isinstance(st[key], types) or isinstance(st[key], bool):
            return f"'{key}' is a {_kind(st[key])}"
    for key in ("epoch", "step_in_epoch", "global_step"):
        if st[key] < 0:
            return f"'{key}' is negative ({st[key]})"
    if "model" in st and not all(isinstance(v, torch.Tensor) for v in st["model"].values()):
        return "'model' holds values that are not tensors"
    opt = st["optimizer"]
    if not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list):
        return "'optimizer' lacks its state and param_groups"
    rng = st["rng"]
    if not isinstance(rng.get("torch"), torch.Tensor) or not isinstance(
        rng.get("numpy"), list | tuple
    ):
        return "'rng' lacks the torch and numpy generator states"
    if not isinstance(rng.get("python"), list | tuple):
        return "'rng' lacks the Python generator state"
    if "data" in st and not _is_data_summary(st["data"]):
        return "'data' is not a summary of the training data"
    return None


def _is_data_summary(d: dict) -> bool:
    """{"synthetic": s, "real": s}, each s {"images": int, "ids": int, "digest": str}."""
    kinds = {"images": int, "ids": int, "digest": str}
    return set(d) == {"synthetic", "real"} and all(
        isinstance(s, dict)
        and set(s) == set(kinds)
        and all(isinstance(s[k], t) and not isinstance(s[k], bool) for k, t in kinds.items())
        for s in d.values()
    )
