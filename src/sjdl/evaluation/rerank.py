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
import torch.nn.functional as F
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


def _reciprocal(nn: np.ndarray, k: int) -> sparse.csr_matrix:
    """R(i, k) as a 0/1 sparse matrix: row i marks the items among i's k + 1 nearest that
    also have i among their k + 1 nearest."""
    n = len(nn)
    fwd = nn[:, : k + 1]
    back = (fwd[fwd] == np.arange(n)[:, None, None]).any(2)
    rows = np.nonzero(back)[0]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, fwd[back])), shape=(n, n))


def _expanded_sets(nn: np.ndarray, k1: int) -> sparse.coo_matrix:
    """R*(i): R(i, k1) plus every R(c, k1/2), c in R(i, k1), that shares more than 2/3 of its
    members with R(i, k1). Sparse products replace per-item set loops."""
    m = _reciprocal(nn, k1)
    h = _reciprocal(nn, int(round(k1 / 2)))
    pairs = m.tocoo()  # (i, c) with c in R(i, k1)
    shared = h @ m.T  # [c, i] = |R(c, k1/2) & R(i, k1)|
    inter = np.asarray(shared[pairs.col, pairs.row]).ravel()
    size = np.asarray(h.sum(1)).ravel()[pairs.col]
    ok = inter > 2 / 3 * size
    accepted = sparse.csr_matrix((np.ones(ok.sum()), (pairs.row[ok], pairs.col[ok])), shape=m.shape)
    expanded = (m + accepted @ h).tocsr()
    expanded.sum_duplicates()
    return expanded.tocoo()


def _pair_sq_dist(feats: torch.Tensor, rows, cols, metric: str, chunk: int = 16384):
    """Squared Euclidean (or cosine) distance of listed (row, col) pairs, in chunks."""
    out = np.empty(len(rows), dtype=np.float64)
    x = F.normalize(feats, dim=1) if metric == "cosine" else feats
    sq = x.pow(2).sum(1)
    for s in range(0, len(rows), chunk):
        r = torch.from_numpy(rows[s : s + chunk])
        c = torch.from_numpy(cols[s : s + chunk])
        dot = (x[r] * x[c]).sum(1)
        if metric == "cosine":
            out[s : s + chunk] = (1 - dot).numpy()
        else:
            out[s : s + chunk] = (sq[r] + sq[c] - 2 * dot).clamp(min=0).numpy()
    return out


def _jaccard(vq: sparse.csr_matrix, vg: sparse.csc_matrix, chunk: int = 256) -> np.ndarray:
    """1 - sum_k min(Vq_ik, Vg_jk) / sum_k max(...) for all (i, j), by joining the nonzeros
    of each column k (rows of V sum to 1, so sum max = 2 - sum min)."""
    nq, ng = vq.shape[0], vg.shape[0]
    gcount = np.diff(vg.indptr)
    out = np.empty((nq, ng), dtype=np.float32)
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        qc = vq[s:e].tocsc()
        col = np.repeat(np.arange(qc.shape[1]), np.diff(qc.indptr))  # column of each entry
        reps = gcount[col]
        entry = np.repeat(np.arange(len(col)), reps)
        local = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        gidx = vg.indptr[col][entry] + local
        mins = np.minimum(qc.data[entry], vg.data[gidx])
        flat = qc.indices[entry] * ng + vg.indices[gidx]
        m = np.bincount(flat, mins, minlength=(e - s) * ng).reshape(e - s, ng)
        out[s:e] = 1 - m / (2 - m)
    return out


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
    sets = _expanded_sets(nn, k1)
    d = _pair_sq_dist(feats, sets.row, sets.col, metric) / row_max.double().numpy()[sets.row]
    w = np.exp(-d)
    w /= np.bincount(sets.row, w, minlength=n)[sets.row]
    v = sparse.csr_matrix((w, (sets.row, sets.col)), shape=(n, n))
    if k2 > 1:  # local query expansion: average V over the k2 nearest neighbours
        avg = sparse.csr_matrix(
            (np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2), nn[:, :k2].ravel())),
            shape=(n, n),
        )
        v = avg @ v
    jaccard = _jaccard(v[:nq].tocsr(), v[nq:].tocsc())
    final = torch.empty(nq, n - nq)
    for s in range(0, nq, chunk_size):
        e = min(nq, s + chunk_size)
        orig = _sq_dist(q[s:e], g, metric) / row_max[s:e, None]
        final[s:e] = (1 - lambda_value) * torch.from_numpy(jaccard[s:e]) + lambda_value * orig
    return final
