"""Tensors read from a weights file are checked before they reach a model: floating where
the model is floating (an int32 conv weight would be cast silently), and finite (NaN or inf
weights give NaN embeddings, an index of NaN rows and empty search answers)."""

from __future__ import annotations

import torch

from .io import CheckpointError


def _kind(t: torch.Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    if t.is_complex():
        return "complex"
    return "floating" if t.is_floating_point() else "integer"


def check_tensors(state: dict[str, torch.Tensor], path, own: dict[str, torch.Tensor]) -> None:
    """Refuse, naming ``path`` and the first bad tensor, a tensor of ``state`` whose kind
    (floating / integer) differs from the model's (``own``) or that holds NaN/inf values.
    Only the keys the model has are checked."""
    for key, value in state.items():
        want = own.get(key)
        if want is None:
            continue
        if _kind(value) != _kind(want):
            raise CheckpointError(
                f"{path}: tensor {key} is {str(value.dtype).removeprefix('torch.')}, the "
                f"model needs {_kind(want)} values ({str(want.dtype).removeprefix('torch.')}); "
                "the weights file is damaged or not for this model"
            )
        if value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise CheckpointError(
                    f"{path}: tensor {key} holds {bad} non-finite value(s) (NaN or inf) of "
                    f"{value.numel()}; the weights are damaged (a diverged run?), refusing them"
                )
