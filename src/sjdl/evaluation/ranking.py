"""ReID ranking metrics: CMC, mAP and mINP, vectorised and chunked over queries.

Protocol (Market-1501 / VeRi style): for each query, gallery entries with the same pid **and**
the same camera are removed; a query with no remaining true match is skipped and counted.
The gallery is ranked by ascending distance; ties keep gallery order (as a stable sort would),
so the result is deterministic. Rows are never fully sorted: a query's metrics depend only on
the ranks of its same-id gallery entries, which are counted (see ``_stats_by_counting``).
AP is over the whole filtered ranking; CMC is truncated at
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


def _stats_by_sort(dist, q_pids, g_pids, q_cams, g_cams):
    """Per-query (first-hit rank, AP, INP, valid) via a full stable sort (exact reference)."""
    order = np.argsort(dist, axis=1, kind="stable")
    gp, gc = g_pids[order], g_cams[order]
    same_pid = gp == q_pids[:, None]
    keep = ~(same_pid & (gc == q_cams[:, None]))
    hits = same_pid & keep
    num_pos = hits.sum(1)
    frank = np.cumsum(keep, axis=1, dtype=np.int32) - 1  # rank in the filtered list
    cum_hits = np.cumsum(hits, axis=1, dtype=np.int32)
    ap = np.where(hits, cum_hits / np.maximum(frank + 1, 1), 0.0).sum(1) / np.maximum(num_pos, 1)
    first = np.where(hits, frank, np.iinfo(np.int32).max).min(1)
    last = np.where(hits, frank, -1).max(1)
    return first, ap, num_pos / (last + 1).clip(min=1), num_pos > 0


def _match_pairs(q_pids, g_pids, g_sorted):
    """Flat (query row, gallery index) pairs with equal pid, grouped by query."""
    sorted_pids = g_pids[g_sorted]
    lo = np.searchsorted(sorted_pids, q_pids, "left")
    hi = np.searchsorted(sorted_pids, q_pids, "right")
    counts = hi - lo
    rows = np.repeat(np.arange(len(q_pids)), counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return rows, g_sorted[np.arange(len(rows)) + starts], counts


def _float_keys(x: torch.Tensor) -> torch.Tensor:
    """int64 keys in the order of the float32 values (-0.0 and 0.0 equal; no NaN)."""
    b = (x + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    return torch.where(b < 0, b ^ 0x7FFFFFFF, b).to(torch.int64)


def _count_below(dist: np.ndarray, t: np.ndarray, present: np.ndarray):
    """(less, less_eq): ``#{x in the row : x < t_m}`` and ``#{x <= t_m}`` for each row's
    thresholds ``t`` (sorted, +inf where not ``present``).

    Entries above a row's largest threshold change no count, so when most entries are (a
    trained model: the hardest positive comes early) only the others are searched, in one
    flat table keyed by (row, value); otherwise each row is sorted (a SIMD sort of values,
    no indices) and its few thresholds are looked up in it.
    """
    nq, w = t.shape
    full = torch.from_numpy(dist)
    top = np.where(present, t, -np.inf).max(1)  # each row's largest threshold
    mask = full <= torch.from_numpy(top.astype(dist.dtype))[:, None]
    if dist.dtype == np.float32 and int(torch.count_nonzero(mask)) < full.numel() // 4:
        r, c = mask.nonzero(as_tuple=True)
        keys = _float_keys(full[r, c]) + (r << 32)
        offsets = torch.arange(nq)[:, None] << 32
        out = []
        for bound in (t, np.nextafter(t, np.float32(np.inf))):  # x < t, x < next(t) = x <= t
            t_keys = (_float_keys(torch.from_numpy(bound)) + offsets).view(-1)
            bins = torch.searchsorted(t_keys, keys, right=True) + r  # row r: r * (w + 1) + k
            counts = torch.bincount(bins, minlength=nq * (w + 1)).view(nq, w + 1)
            out.append(counts.cumsum(1)[:, :w].numpy())
        return out[0], out[1]
    less, less_eq = np.empty(t.shape, np.int64), np.empty(t.shape, np.int64)
    for i, row in enumerate(np.sort(dist, axis=1)):
        less[i] = np.searchsorted(row, t[i], "left")
        less_eq[i] = np.searchsorted(row, t[i], "right")
    return less, less_eq


MAX_TIED = 8  # rows with more same-id entries tied with other entries are sorted whole


def _stats_by_counting(dist, q_pids, g_pids, q_cams, g_cams, g_sorted):
    """Same result without sorting rows by index: only the ranks of the same-id entries are
    needed. Each same-id entry's rank is the number of entries closer than it, plus (ties,
    as a stable sort orders them) the entries at the same distance earlier in the gallery.
    Rows with many ties go to ``_stats_by_sort``.
    """
    nq = len(q_pids)
    rows, cols, counts = _match_pairs(q_pids, g_pids, g_sorted)
    first = np.zeros(nq, np.int64)
    ap, inp, valid = np.zeros(nq), np.zeros(nq), np.zeros(nq, bool)
    width = int(counts.max()) if len(counts) else 0
    if width == 0:
        return first, ap, inp, valid
    dtype = np.float32 if dist.dtype == np.float32 else np.float64
    dist = np.ascontiguousarray(dist, dtype=dtype)
    d = dist[rows, cols]
    removed = g_cams[cols] == q_cams[rows]
    # each query's matches in stable order (distance, then gallery index) as a padded table
    order = np.lexsort((cols, d, rows))
    rows, cols, d, removed = rows[order], cols[order], d[order], removed[order]
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((nq, width), np.inf, dtype=dtype)
    table[rows, slot] = d
    gidx = np.zeros((nq, width), np.int64)
    gidx[rows, slot] = cols
    is_removed = np.zeros((nq, width), bool)
    is_removed[rows, slot] = removed
    present = np.zeros((nq, width), bool)
    present[rows, slot] = True
    less, less_eq = _count_below(dist, table, present)
    tied = present & (less_eq - less > 1)  # another entry at exactly this distance
    n_tied = tied.sum(1)
    many = n_tied > MAX_TIED
    for i, m in zip(*np.nonzero(tied & ~many[:, None]), strict=True):
        less[i, m] += np.count_nonzero(dist[i, : gidx[i, m]] == table[i, m])
    removed_before = np.cumsum(is_removed, 1) - is_removed
    rank = less - removed_before  # 0-based rank in the filtered list
    hits = present & ~is_removed
    num_pos = hits.sum(1)
    k = np.cumsum(hits, 1)
    ap = np.where(hits, k / np.maximum(rank + 1, 1), 0.0).sum(1) / np.maximum(num_pos, 1)
    first = np.where(hits, rank, np.iinfo(np.int64).max).min(1)
    inp = num_pos / (np.where(hits, rank, -1).max(1) + 1).clip(min=1)
    valid = num_pos > 0
    if many.any():
        idx = np.nonzero(many)[0]
        f, a, i, v = _stats_by_sort(dist[idx], q_pids[idx], g_pids, q_cams[idx], g_cams)
        first[idx], ap[idx], inp[idx], valid[idx] = f, a, i, v
    return first, ap, inp, valid


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
        chunk_size = max(1, (128 << 20) // (24 * max(ng, 1)))
    g_sorted = np.argsort(g_pids, kind="stable")
    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    valid = 0
    for s in range(0, nq, chunk_size):
        e = min(nq, s + chunk_size)
        first, ap, inp, ok = _stats_by_counting(
            dist[s:e], q_pids[s:e], g_pids, q_cams[s:e], g_cams, g_sorted
        )
        cmc_sum += (first[ok, None] <= np.arange(max_rank)[None, :]).sum(0)
        ap_sum += ap[ok].sum()
        inp_sum += inp[ok].sum()
        valid += int(ok.sum())
    if valid == 0:
        return RankingResult(np.zeros(max_rank), 0.0, 0.0, 0, nq)
    return RankingResult(cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid, nq - valid)


def per_query_metrics(distmat, q_pids, g_pids, q_camids, g_camids) -> dict[str, np.ndarray]:
    """Per-query ``AP`` and ``R1`` (1.0 when the first filtered entry is a true match), in
    query order, with the protocol of ``evaluate_ranking``; NaN for a query without a true
    match. Their means over the finite entries are that function's mAP and R1."""
    dist = _as_numpy(distmat)
    q_pids, g_pids = _as_numpy(q_pids).astype(np.int64), _as_numpy(g_pids).astype(np.int64)
    q_cams, g_cams = _as_numpy(q_camids).astype(np.int64), _as_numpy(g_camids).astype(np.int64)
    nq, ng = dist.shape
    if (len(q_pids), len(g_pids), len(q_cams), len(g_cams)) != (nq, ng, nq, ng):
        raise ValueError(f"distmat is {nq}x{ng} but the pid/camid lengths differ")
    chunk = max(1, (128 << 20) // (24 * max(ng, 1)))
    g_sorted = np.argsort(g_pids, kind="stable")
    ap, r1 = np.full(nq, np.nan), np.full(nq, np.nan)
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        first, a, _, ok = _stats_by_counting(
            dist[s:e], q_pids[s:e], g_pids, q_cams[s:e], g_cams, g_sorted
        )
        ap[s:e] = np.where(ok, a, np.nan)
        r1[s:e] = np.where(ok, (first == 0).astype(np.float64), np.nan)
    return {"AP": ap, "R1": r1}
