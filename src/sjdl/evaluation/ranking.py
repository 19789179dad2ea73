"""ReID ranking metrics: CMC, mAP and mINP, vectorised and chunked over queries.

Protocol (Market-1501 / VeRi style): for each query, gallery entries with the same pid **and**
the same camera are removed; a query with no remaining true match is skipped and counted.
The gallery is ranked by ascending distance; ties keep gallery order (a stable sort), so the
result is deterministic. AP is over the whole filtered ranking; CMC is truncated at
``max_rank`` (padded with its last value when the filtered gallery is shorter); mINP is the
mean of R / (rank of the hardest positive), R = number of positives (Ye et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RankingResult:
    cmc: np.ndarray  # (max_rank,), cmc[k] = rank-(k+1) accuracy over valid queries
    mAP: float
    mINP: float
    num_valid: int
    num_skipped: int

    def rank(self, k: int) -> float:
        return float(self.cmc[k - 1]) if k <= len(self.cmc) else float(self.cmc[-1])

    def as_dict(self) -> dict:
        return {
            "mAP": self.mAP,
            "mINP": self.mINP,
            "R1": self.rank(1),
            "R5": self.rank(5),
            "R10": self.rank(10),
            "num_valid_queries": self.num_valid,
            "num_skipped_queries": self.num_skipped,
        }


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _chunk_stats(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Per-query (first-hit rank, AP, INP, valid) for one chunk of queries."""
    order = np.argsort(dist, axis=1, kind="stable")
    gp, gc = g_pids[order], g_cams[order]
    same_pid = gp == q_pids[:, None]
    keep = ~(same_pid & (gc == q_cams[:, None]))
    hits = same_pid & keep
    num_pos = hits.sum(1)
    valid = num_pos > 0
    frank = np.cumsum(keep, axis=1) - 1  # rank of each kept entry in the filtered list
    cum_hits = np.cumsum(hits, axis=1)
    precision = np.where(hits, cum_hits / np.maximum(frank + 1, 1), 0.0)
    ap = precision.sum(1) / np.maximum(num_pos, 1)
    big = np.iinfo(np.int64).max
    first = np.where(hits, frank, big).min(1)
    last = np.where(hits, frank, -1).max(1)
    inp = num_pos / (last + 1).clip(min=1)
    cmc = (first[:, None] <= np.arange(max_rank)[None, :]) & valid[:, None]
    return cmc.sum(0), ap[valid].sum(), inp[valid].sum(), int(valid.sum())


def evaluate_ranking(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, chunk_size: int | None = None
) -> RankingResult:
    """CMC, mAP, mINP from a (Q, G) distance matrix (numpy or torch), lower = more similar.

    Work is done in chunks of queries (default: about 64 MB of sort indices per chunk), so
    memory stays bounded for large galleries; no Python loop runs per query.
    """
    dist = _as_numpy(distmat)
    q_pids, g_pids = _as_numpy(q_pids).astype(np.int64), _as_numpy(g_pids).astype(np.int64)
    q_cams, g_cams = _as_numpy(q_camids).astype(np.int64), _as_numpy(g_camids).astype(np.int64)
    nq, ng = dist.shape
    if (len(q_pids), len(g_pids)) != (nq, ng) or len(q_cams) != nq or len(g_cams) != ng:
        raise ValueError(
            f"distmat is {nq}x{ng} but got {len(q_pids)} query / {len(g_pids)} "
            f"gallery pids and {len(q_cams)} / {len(g_cams)} camids"
        )
    if chunk_size is None:
        chunk_size = max(1, (64 << 20) // (8 * max(ng, 1)))
    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    valid = 0
    for s in range(0, nq, chunk_size):
        e = min(nq, s + chunk_size)
        c, a, i, v = _chunk_stats(dist[s:e], q_pids[s:e], g_pids, q_cams[s:e], g_cams, max_rank)
        cmc_sum += c
        ap_sum += a
        inp_sum += i
        valid += v
    if valid == 0:
        return RankingResult(np.zeros(max_rank), 0.0, 0.0, 0, nq)
    return RankingResult(cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid, nq - valid)
