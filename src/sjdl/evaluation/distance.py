"""Pairwise distances between query and gallery features, computed in chunks."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distance(
    query: torch.Tensor,
    gallery: torch.Tensor,
    metric: str = "euclidean",
    normalize: bool = False,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """(Q, G) distances: ``euclidean`` sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0)) or ``cosine``
    1 - cos(q, g). ``normalize`` L2-normalises the features first. Query rows are processed
    ``chunk_size`` at a time (in float32)."""
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    q, g = query.float(), gallery.float()
    if normalize or metric == "cosine":
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    g_sq = g.pow(2).sum(1)
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float32, device=q.device)
    for s in range(0, q.shape[0], chunk_size):
        qc = q[s : s + chunk_size]
        dot = qc @ g.t()
        if metric == "cosine":
            out[s : s + chunk_size] = 1 - dot
        else:
            d2 = qc.pow(2).sum(1, keepdim=True) + g_sq.unsqueeze(0) - 2 * dot
            out[s : s + chunk_size] = d2.clamp_(min=0).sqrt_()
    return out
