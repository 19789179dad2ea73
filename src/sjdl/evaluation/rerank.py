"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-bounded.

Distances among all N = Q + G items are never held as an N x N matrix: each item keeps its
k1 + 1 nearest neighbours (found chunk by chunk), the k-reciprocal feature vectors V are sparse
(N x N with about k1..2 k1 entries a row), and the Jaccard distance uses an inverted index.

Steps: squared distances normalised by each row's maximum -> k-reciprocal sets R(i, k1),
expanded by R(c, k1/2) of members c that share more than 2/3 of it -> V_i = softmax-like
weights exp(-d) on R*(i) -> local query expansion (mean of V over the k2 nearest) ->
Jaccard distance 1 - sum min(V_q, V_g) / sum max(V_q, V_g) -> final =
(1 - lambda) Jaccard + lambda * normalised original distance.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from .distance import pairwise_distance


def _sq_dist(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    d = pairwise_distance(a, b, metric)
    return d * d if metric == "euclidean" else d


def _neighbours(feats: torch.Tensor, k: int, metric: str, chunk: int):
    """k nearest neighbours (self included) and each row's max distance, chunked."""
    n = feats.shape[0]
    idx = torch.empty(n, k, dtype=torch.long)
    row_max = torch.empty(n)
    for s in range(0, n, chunk):
        d = _sq_dist(feats[s : s + chunk], feats, metric)
        row_max[s : s + chunk] = d.amax(1).clamp(min=1e-12)
        order = torch.sort(d, dim=1, stable=True).indices[:, :k]
        idx[s : s + chunk] = order
    return idx.numpy(), row_max


def _reciprocal(nn: np.ndarray, k: int) -> list[np.ndarray]:
    """R(i, k): the i-th item's k + 1 nearest that also have i among their k + 1 nearest."""
    fwd = nn[:, : k + 1]
    back = (fwd[fwd] == np.arange(len(nn))[:, None, None]).any(2)
    return [fwd[i][back[i]] for i in range(len(nn))]


def k_reciprocal_rerank(
    query: torch.Tensor,
    gallery: torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Re-ranked (Q, G) distance matrix from query and gallery features."""
    q, g = query.float().cpu(), gallery.float().cpu()
    feats = torch.cat([q, g])
    n, nq = feats.shape[0], q.shape[0]
    k1 = min(k1, n - 1)
    k2 = max(1, min(k2, n))
    nn, row_max = _neighbours(feats, k1 + 1, metric, chunk_size)
    recip = _reciprocal(nn, k1)
    recip_half = _reciprocal(nn, int(round(k1 / 2)))
    rows, cols, vals = [], [], []
    for i in range(n):
        members = recip[i]
        expanded = [members]
        for c in members:
            cand = recip_half[c]
            if len(np.intersect1d(cand, members)) > 2 / 3 * len(cand):
                expanded.append(cand)
        members = np.unique(np.concatenate(expanded))
        d = _sq_dist(feats[i : i + 1], feats[members], metric)[0] / row_max[i]
        w = torch.exp(-d).numpy()
        rows.append(np.full(len(members), i))
        cols.append(members)
        vals.append(w / w.sum())
    v = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    if k2 > 1:  # local query expansion: average V over the k2 nearest neighbours
        avg = sparse.csr_matrix(
            (np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2), nn[:, :k2].ravel())),
            shape=(n, n),
        )
        v = avg @ v
    vq, vg = v[:nq].tocsr(), v[nq:].tocsc()
    ng = n - nq
    jaccard = np.empty((nq, ng), dtype=np.float32)
    for i in range(nq):
        lo, hi = vq.indptr[i], vq.indptr[i + 1]
        ks, a = vq.indices[lo:hi], vq.data[lo:hi]
        sub = vg[:, ks].tocoo()
        m = np.bincount(sub.row, np.minimum(sub.data, a[sub.col]), minlength=ng)
        jaccard[i] = 1 - m / (2 - m)
    final = torch.empty(nq, ng)
    for s in range(0, nq, chunk_size):
        e = min(nq, s + chunk_size)
        orig = _sq_dist(q[s:e], g, metric) / row_max[s:e, None]
        final[s:e] = (1 - lambda_value) * torch.from_numpy(jaccard[s:e]) + lambda_value * orig
    return final
