import numpy as np
import pytest

from sjdl.evaluation.ranking import evaluate_ranking, per_query_metrics
from sjdl.evaluation.statistics import (
    analytic_mean_interval,
    bootstrap_mean,
    mean_std,
    paired_difference,
)


def test_mean_std_sample_std_and_single_value():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)
    m, s = mean_std([1.0, float("nan"), 3.0])  # NaN = no valid query, left out
    assert m == 2.0 and s == pytest.approx(np.sqrt(2))


def test_constant_differences_give_a_zero_width_interval_at_that_constant():
    diff = np.full((3, 40), 0.125)
    ci = bootstrap_mean(diff)
    assert (ci.value, ci.low, ci.high) == (0.125, 0.125, 0.125)


def test_identical_runs_have_zero_difference_and_zero_width():
    rng = np.random.default_rng(1)
    ap = rng.uniform(0, 1, (3, 50))
    ci = paired_difference(ap, ap.copy())
    assert (ci.value, ci.low, ci.high) == (0.0, 0.0, 0.0)


def test_bootstrap_width_of_a_normal_sample_is_close_to_the_analytic_one():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, 800)
    boot, ref = bootstrap_mean(x, resamples=4000, seed=3), analytic_mean_interval(x)
    assert boot.value == pytest.approx(ref.value)
    assert boot.high - boot.low == pytest.approx(ref.high - ref.low, rel=0.1)
    assert boot.low < 0.3 < boot.high  # covers the true mean here
    assert abs((boot.low + boot.high) / 2 - ref.value) < 0.02


def test_seed_resampling_widens_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(2)
    queries = rng.normal(0, 0.1, 60)
    agree = np.stack([queries, queries, queries])
    disagree = agree + np.array([[-1.0], [0.0], [1.0]])  # runs differ by a whole unit
    narrow, wide = bootstrap_mean(agree), bootstrap_mean(disagree)
    assert wide.high - wide.low > 10 * (narrow.high - narrow.low)


def test_paired_difference_finds_a_shift_and_is_reproducible():
    rng = np.random.default_rng(4)
    base = rng.uniform(0, 1, (3, 200))
    better = base + 0.05 + rng.normal(0, 0.02, base.shape)
    ci = paired_difference(better, base, seed=7)
    assert ci.low > 0.04 and ci.high < 0.06 and ci.low < ci.value < ci.high
    assert paired_difference(better, base, seed=7) == ci


def test_paired_difference_refuses_unpaired_shapes():
    with pytest.raises(ValueError, match=r"same \(seeds, queries\) shape"):
        paired_difference(np.zeros((3, 10)), np.zeros((2, 10)))


def test_nan_queries_are_left_out():
    x = np.array([[1.0, np.nan, 1.0], [1.0, 1.0, np.nan]])
    assert bootstrap_mean(x).value == 1.0


def test_per_query_metrics_average_to_the_ranking_result():
    rng = np.random.default_rng(5)
    dist = rng.uniform(0, 1, (30, 50))
    q_pids, g_pids = rng.integers(0, 12, 30), rng.integers(0, 10, 50)
    q_cams, g_cams = rng.integers(0, 2, 30), rng.integers(0, 2, 50)
    per = per_query_metrics(dist, q_pids, g_pids, q_cams, g_cams)
    res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
    valid = np.isfinite(per["AP"])
    assert valid.sum() == res.num_valid and res.num_skipped > 0  # pids 10, 11: no match
    assert np.array_equal(valid, np.isfinite(per["R1"]))
    assert np.nanmean(per["AP"]) == pytest.approx(res.mAP)
    assert np.nanmean(per["R1"]) == pytest.approx(res.rank(1))
    assert set(np.unique(per["R1"][valid])) <= {0.0, 1.0}


def test_perfectly_correlated_seeds_give_the_width_of_a_single_seed_not_narrower():
    rng = np.random.default_rng(6)
    one = rng.uniform(0, 1, 120)
    single = bootstrap_mean(one[None, :], resamples=1000, seed=2)
    three = bootstrap_mean(np.stack([one, one, one]), resamples=1000, seed=2)
    # the same queries serve every seed: three identical runs hold no more information
    assert (three.low, three.high) == pytest.approx((single.low, single.high))
    # nested resampling (queries drawn anew inside each seed) would shrink it by about 1/sqrt(3)
    assert three.high - three.low > 0.9 * (single.high - single.low)


def test_additive_seed_and_query_effects_match_the_analytic_variance():
    # x[s, q] = a_s + b_q: a replicate mean is mean(a over drawn seeds) + mean(b over the
    # shared query draw), so its variance is var_pop(a)/S + var_pop(b)/Q (bootstrap version)
    rng = np.random.default_rng(8)
    a, b = rng.normal(0, 1.0, 4), rng.normal(0, 2.0, 300)
    x = a[:, None] + b[None, :]
    ci = bootstrap_mean(x, resamples=8000, seed=1)
    sd = np.sqrt(a.var() / a.size + b.var() / b.size)
    assert ci.high - ci.low == pytest.approx(2 * 1.959964 * sd, rel=0.08)


def test_sets_of_the_same_queries_share_one_query_resample():
    rng = np.random.default_rng(9)
    q = rng.uniform(0, 1, 80)
    two_sets = np.stack([q, q])[None]  # (1 seed, 2 sets, 80 queries): the same set twice
    assert bootstrap_mean(two_sets, seed=4) == bootstrap_mean(q, seed=4)
    assert paired_difference(two_sets + 0.1, two_sets).value == pytest.approx(0.1)
