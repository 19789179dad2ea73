"""Evaluation speed: vectorised ranking vs per-query loops, same inputs, one run.

1000 queries x 13 000 gallery x 2048-d (the FVRID gallery size): distance + ranking time of
sjdl vs a numpy per-query loop (torchreid-style) and vs the straightforward reference loop of
tests/test_ranking.py (printed as ratios); then k-reciprocal re-ranking time and memory;
then 10 000 x 100 000 ranking memory (peak RSS growth) with chunking.
Usage: python benchmarks/bench_eval.py [--skip-large]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402

from sjdl.evaluation import (  # noqa: E402
    evaluate_ranking,
    k_reciprocal_rerank,
    pairwise_distance,
)


def loop_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Per-query loop (what most ReID toolkits ship, without Cython)."""
    cmc_sum, aps = np.zeros(max_rank), []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        matches = g_pids[order] == q_pids[i]
        keep = ~(matches & (g_cams[order] == q_cams[i]))
        hits = matches[keep]
        if not hits.any():
            continue
        cmc = hits.cumsum()
        cmc[cmc > 1] = 1
        cmc_sum += (
            cmc[:max_rank]
            if len(cmc) >= max_rank
            else np.pad(cmc, (0, max_rank - len(cmc)), "edge")
        )
        pos = np.nonzero(hits)[0]
        aps.append(np.mean(np.arange(1, len(pos) + 1) / (pos + 1)))
    return cmc_sum / len(aps), float(np.mean(aps))


def data(nq, ng, dim, ids, seed=0, noise=2.5):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, dim, generator=gen)
    g_pids = torch.randint(0, ids, (ng,), generator=gen)
    q_pids = torch.randint(0, ids, (nq,), generator=gen)
    g = centres[g_pids] + noise * torch.randn(ng, dim, generator=gen)
    q = centres[q_pids] + noise * torch.randn(nq, dim, generator=gen)
    return q, g, q_pids.numpy(), g_pids.numpy(), np.zeros(nq, int), np.ones(ng, int)


def both_rankings(dist, qp, gp, qc, gc):
    """(sjdl result, its seconds, the loop's mAP, the loop's seconds); both must agree."""
    t = time.perf_counter()
    res = evaluate_ranking(dist, qp, gp, qc, gc)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    cmc, m_ap = loop_ranking(dist.numpy(), qp, gp, qc, gc)
    t_loop = time.perf_counter() - t
    assert abs(m_ap - res.mAP) < 1e-6 and np.allclose(cmc, res.cmc)
    return res, t_fast, m_ap, t_loop


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    print(header("evaluation speed: 1000 x 13000 x 2048-d"))
    q, g, qp, gp, qc, gc = data(1000, 13000, 2048, 1000)
    t = time.perf_counter()
    dist = pairwise_distance(q, g)
    t_dist = time.perf_counter() - t
    res, t_fast, m_ap, t_loop = both_rankings(dist, qp, gp, qc, gc)
    print(f"distances (chunked torch matmul)   {t_dist:7.2f} s")
    print(f"ranking, sjdl vectorised           {t_fast:7.2f} s   mAP {res.mAP:.4f}")
    print(f"ranking, per-query loop            {t_loop:7.2f} s   mAP {m_ap:.4f}")
    print(f"speed-up vs numpy loop             {t_loop / t_fast:7.1f} x")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_ranking import reference_ranking

    n_ref = 100
    t = time.perf_counter()
    _, ref_map, _, _ = reference_ranking(dist.numpy()[:n_ref], qp[:n_ref], gp, qc[:n_ref], gc)
    t_ref = (time.perf_counter() - t) * len(qp) / n_ref
    print(
        f"ranking, tests' reference loop     {t_ref:7.2f} s   "
        f"(timed on {n_ref} queries, x{len(qp) // n_ref})"
    )
    print(f"speed-up vs reference loop         {t_ref / t_fast:7.1f} x")
    print(f"distance + ranking total           {t_dist + t_fast:7.2f} s")
    # harder galleries: true matches deeper in the ranking (noise 5: random features)
    for noise in (3.0, 3.5, 5.0):
        q, g, qp, gp, qc, gc = data(1000, 13000, 2048, 1000, noise=noise)
        res, t_fast, _, t_loop = both_rankings(pairwise_distance(q, g), qp, gp, qc, gc)
        print(
            f"gallery noise {noise}: mAP {res.mAP:.4f}, sjdl {t_fast:.2f} s, "
            f"loop {t_loop:.2f} s, speed-up {t_loop / t_fast:.1f} x"
        )
    print("\n# k-reciprocal re-ranking, 1000 x 13000 x 256-d (k1 20, k2 6, lambda 0.3)")
    q, g, qp, gp, qc, gc = data(1000, 13000, 256, 1000, seed=2)
    before = rss_mb()
    t = time.perf_counter()
    rr = k_reciprocal_rerank(q, g)
    t_rr = time.perf_counter() - t
    base = evaluate_ranking(pairwise_distance(q, g), qp, gp, qc, gc).mAP
    after = evaluate_ranking(rr, qp, gp, qc, gc).mAP
    print(
        f"time {t_rr:.1f} s, peak RSS growth {rss_mb() - before:.0f} MB, "
        f"mAP {base:.4f} -> {after:.4f}"
    )
    if args.skip_large:
        return
    print("\n# 10 000 queries x 100 000 gallery (distances in 1000-query blocks, 512-d)")
    q, g, qp, gp, qc, gc = data(10000, 100000, 512, 5000, seed=1)
    before = rss_mb()
    t = time.perf_counter()
    cmc_sum, ap_sum, valid = np.zeros(50), 0.0, 0
    for s in range(0, 10000, 1000):
        d = pairwise_distance(q[s : s + 1000], g)
        r = evaluate_ranking(d, qp[s : s + 1000], gp, qc[s : s + 1000], gc)
        cmc_sum += r.cmc * r.num_valid
        ap_sum += r.mAP * r.num_valid
        valid += r.num_valid
    print(
        f"time {time.perf_counter() - t:.1f} s, mAP {ap_sum / valid:.4f}, "
        f"peak RSS growth {rss_mb() - before:.0f} MB "
        f"(features {(q.numel() + g.numel()) * 4 / 2**20:.0f} MB)"
    )


if __name__ == "__main__":
    main()
