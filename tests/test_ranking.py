import math

import numpy as np
import pytest
import torch

from sjdl.evaluation import evaluate_ranking, k_reciprocal_rerank, pairwise_distance


def reference_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Plain per-query loop: the textbook Market-1501 protocol."""
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hits = [g_pids[j] == q_pids[i] for j in keep]
        if not any(hits):
            continue
        first = hits.index(True)
        cmc = [1.0 if k >= first else 0.0 for k in range(max_rank)]
        n_pos, found, ap, last = sum(hits), 0, 0.0, 0
        for rank, h in enumerate(hits):
            if h:
                found += 1
                ap += found / (rank + 1)
                last = rank
        cmcs.append(cmc)
        aps.append(ap / n_pos)
        inps.append(n_pos / (last + 1))
    return np.mean(cmcs, 0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


@pytest.mark.parametrize("seed", range(6))
def test_fast_ranking_equals_reference_loop(seed):
    rng = np.random.default_rng(seed)
    nq, ng = rng.integers(1, 30), rng.integers(1, 80)
    dist = rng.integers(0, 6, (nq, ng)).astype(np.float64)  # many ties
    q_pids, g_pids = rng.integers(0, 5, nq), rng.integers(0, 5, ng)
    q_cams, g_cams = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    ref_cmc, ref_map, ref_minp, ref_valid = reference_ranking(
        dist, q_pids, g_pids, q_cams, g_cams, 10
    )
    res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, chunk_size=7)
    assert res.num_valid == ref_valid and res.num_valid + res.num_skipped == nq
    if ref_valid:
        assert np.allclose(res.cmc, ref_cmc, atol=1e-6)
        assert res.mAP == pytest.approx(ref_map, abs=1e-6)
        assert res.mINP == pytest.approx(ref_minp, abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["separated", "ties", "signed_zeros"])
def test_float32_search_of_the_closest_entries_equals_reference_loop(seed, kind):
    """float32 rows where few entries come before the hardest true match take the search of
    only those entries (flat table keyed by row and value); it must agree exactly."""
    rng = np.random.default_rng(seed)
    nq, ng, ids = int(rng.integers(1, 25)), int(rng.integers(30, 200)), 6
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    q_cams, g_cams = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    # true matches near, the rest far, a few impostors in between
    dist = np.where(
        q_pids[:, None] == g_pids[None, :], rng.random((nq, ng)), 5 + rng.random((nq, ng))
    )
    dist[rng.random((nq, ng)) < 0.03] = rng.random()
    if kind == "ties":
        dist = np.round(dist * 4) / 4  # equal distances among matches and impostors
    if kind == "signed_zeros":
        dist = np.where(rng.random((nq, ng)) < 0.5, -0.0, 0.0) * (dist < 1) + dist * (dist >= 1)
        dist -= 0.5 * (rng.random((nq, ng)) < 0.1)  # and some negative distances
    dist = dist.astype(np.float32)
    ref_cmc, ref_map, ref_minp, ref_valid = reference_ranking(
        dist, q_pids, g_pids, q_cams, g_cams, 10
    )
    res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, chunk_size=5)
    assert res.num_valid == ref_valid
    if ref_valid:
        assert np.allclose(res.cmc, ref_cmc, atol=1e-6)
        assert res.mAP == pytest.approx(ref_map, abs=1e-6)
        assert res.mINP == pytest.approx(ref_minp, abs=1e-6)


def test_negative_zero_ties_with_zero_in_the_closest_entries_search():
    # g0 (true match) at 0.0 ties with g1 (wrong id) at -0.0: gallery order puts g0 first
    dist = np.full((1, 40), 9.0, np.float32)
    dist[0, :3] = [0.0, -0.0, 0.5]
    g_pids = np.array([1, 2, 1] + [3] * 37)
    res = evaluate_ranking(dist, [1], g_pids, [0], np.ones(40, int), max_rank=3)
    assert res.mAP == pytest.approx((1 / 1 + 2 / 3) / 2) and res.cmc.tolist() == [1, 1, 1]


def test_hand_computed_ranking():
    # gallery order by distance: g0 (pid 1, other cam) g1 (pid 2) g2 (pid 1) g3 (pid 1, same cam)
    dist = np.array([[0.1, 0.2, 0.3, 0.05]])
    res = evaluate_ranking(dist, [1], [1, 2, 1, 1], [0], [1, 1, 1, 0], max_rank=3)
    # g3 is removed (same pid and camera); hits at filtered ranks 1 and 3
    assert res.mAP == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert res.mINP == pytest.approx(2 / 3)
    assert res.cmc.tolist() == [1.0, 1.0, 1.0]


def test_skipped_queries_counted_and_single_gallery_item():
    res = evaluate_ranking(np.array([[1.0], [2.0]]), [5, 6], [5], [0, 0], [0])
    assert res.num_valid == 0 and res.num_skipped == 2 and res.mAP == 0.0
    res = evaluate_ranking(np.array([[1.0], [2.0]]), [5, 6], [5], [0, 0], [1])
    assert res.num_valid == 1 and res.num_skipped == 1 and res.mAP == 1.0
    assert res.rank(1) == 1.0 and res.rank(100) == 1.0


def test_ties_keep_gallery_order():
    # all distances equal: stable order puts g0 (wrong) before g1 (right)
    res = evaluate_ranking(np.zeros((1, 2)), [1], [2, 1], [0], [1, 1])
    assert res.rank(1) == 0.0 and res.mAP == pytest.approx(0.5)


def test_shape_mismatch_error():
    with pytest.raises(ValueError, match="distmat is 1x2 but got 1 query / 3 gallery pids"):
        evaluate_ranking(np.zeros((1, 2)), [1], [1, 2, 3], [0], [0, 0, 0])


def test_torch_input_and_chunking_agree():
    rng = np.random.default_rng(0)
    dist = rng.random((50, 40))
    args = (
        rng.integers(0, 8, 50),
        rng.integers(0, 8, 40),
        rng.integers(0, 3, 50),
        rng.integers(0, 3, 40),
    )
    a = evaluate_ranking(torch.from_numpy(dist), *args, chunk_size=3)
    b = evaluate_ranking(dist, *args)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-12) and np.allclose(a.cmc, b.cmc)


def test_pairwise_distances():
    q, g = torch.randn(5, 8), torch.randn(7, 8)
    assert torch.allclose(pairwise_distance(q, g, chunk_size=2), torch.cdist(q, g), atol=1e-4)
    cos = pairwise_distance(q, g, "cosine")
    ref = 1 - torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).t()
    assert torch.allclose(cos, ref, atol=1e-6)
    normed = pairwise_distance(q, g, normalize=True)
    assert torch.allclose(normed, (2 * cos).clamp(min=0).sqrt(), atol=1e-4)
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(q, g, "manhattan")


def test_rerank_symmetry_and_identical_rows():
    x = torch.randn(12, 4)
    jac = k_reciprocal_rerank(x, x, k1=4, k2=2, lambda_value=0.0)
    assert torch.allclose(jac, jac.t(), atol=1e-6)  # Jaccard distance is symmetric
    assert torch.all(jac.diagonal() <= jac.min(1).values + 1e-6)  # each item closest to itself
    q = torch.cat([x[:1], x[:1]])
    d = k_reciprocal_rerank(q, x[1:], k1=4, k2=2)
    assert torch.allclose(d[0], d[1])
    assert d.min() >= 0 and d.max() <= 1 + 1e-6


def test_rerank_improves_map_on_manifold_example():
    """Identities lie on curved 1-D manifolds: distant positives are reachable only through
    chains of mutual neighbours, which re-ranking exploits."""
    gen = torch.Generator().manual_seed(0)
    feats, pids = [], []
    for pid in range(8):
        centre = torch.randn(2, generator=gen) * 5
        phase = torch.rand(1, generator=gen) * 2 * math.pi
        t = torch.linspace(0, 2.5, 12)
        arc = torch.stack([torch.cos(t + phase), torch.sin(t + phase)], 1) * 2.0
        feats.append(centre + arc + 0.05 * torch.randn(12, 2, generator=gen))
        pids += [pid] * 12
    feats, pids = torch.cat(feats), torch.tensor(pids)
    qi = torch.arange(0, len(pids), 12)  # one end of each arc is the query
    gi = torch.tensor([i for i in range(len(pids)) if i not in set(qi.tolist())])
    q, g = feats[qi], feats[gi]
    cams_q, cams_g = torch.zeros(len(qi)), torch.ones(len(gi))
    base = evaluate_ranking(pairwise_distance(q, g), pids[qi], pids[gi], cams_q, cams_g)
    rr = evaluate_ranking(k_reciprocal_rerank(q, g, k1=6, k2=3), pids[qi], pids[gi], cams_q, cams_g)
    assert rr.mAP > base.mAP + 0.05


@pytest.mark.parametrize(
    ("metric", "k1", "k2"), [("euclidean", 6, 3), ("cosine", 5, 1), ("euclidean", 20, 6)]
)
def test_vectorised_rerank_equals_reference_loops(metric, k1, k2):
    from .reference_rerank import reference_rerank

    gen = torch.Generator().manual_seed(k1)
    centres = torch.randn(6, 8, generator=gen)
    feats = centres[torch.randint(0, 6, (40,), generator=gen)] + 0.5 * torch.randn(
        40, 8, generator=gen
    )
    q, g = feats[:9], feats[9:]
    fast = k_reciprocal_rerank(q, g, k1, k2, 0.3, metric)
    ref = reference_rerank(q, g, k1, k2, 0.3, metric)
    assert torch.allclose(fast, ref, atol=1e-5)


@pytest.mark.parametrize("max_tied", [0, 10**9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_counted_by_gallery_order_equal_the_stable_sort(monkeypatch, max_tied, dtype):
    """Ties resolved by counting earlier equal entries (max_tied large) or by sorting the
    row (max_tied 0) give the reference loop's stable-sort result."""
    import sjdl.evaluation.ranking as ranking

    monkeypatch.setattr(ranking, "MAX_TIED", max_tied)
    rng = np.random.default_rng(7)
    for _ in range(8):
        nq, ng = int(rng.integers(1, 20)), int(rng.integers(20, 150))
        dist = (rng.integers(0, 8, (nq, ng)) * 0.5).astype(dtype)
        q_pids, g_pids = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
        q_cams, g_cams = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
        ref_cmc, ref_map, ref_minp, _ = reference_ranking(dist, q_pids, g_pids, q_cams, g_cams, 10)
        res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, chunk_size=6)
        assert np.allclose(res.cmc, ref_cmc, atol=1e-6)
        assert res.mAP == pytest.approx(ref_map, abs=1e-6)
        assert res.mINP == pytest.approx(ref_minp, abs=1e-6)
