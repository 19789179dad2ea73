"""Statistics over repeated runs: mean ± std, and bootstrap confidence intervals of a mean
over seeds and queries (pure functions on arrays; no I/O, no models).

Per-query values (AP, hit@1) come as an (S, Q) array: S seeds (runs) by Q queries of one
test set, or (S, K, Q) with K test sets made of the same Q query identities (e.g. several
fog kinds). The same queries serve every seed (and every kind): queries are crossed with
seeds, not nested in them. So each bootstrap replicate draws S seeds with replacement and
ONE resample of the Q queries, shared by all drawn seeds and kinds, and takes the mean; both
the variation between training runs and the finite number of test queries widen the
interval, and perfectly correlated seeds give the width of a single seed, not a narrower
one. NaN marks a query without a valid match; it is left out of the means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided ``level`` confidence interval [low, high]."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def scaled(self, factor: float) -> Interval:
        return Interval(self.value * factor, self.low * factor, self.high * factor, self.level)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of finite values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def _as_seeds_by_queries(values) -> np.ndarray:
    """(S, K, Q): a 1-D array is one seed and one test set, a 2-D one (S, Q) one test set."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(
            f"expected a non-empty (seeds, queries) or (seeds, sets, queries) array, "
            f"got shape {x.shape}"
        )
    return x


def bootstrap_mean(
    values,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of an (S, Q) or (S, K, Q) array of per-query values with a percentile bootstrap
    interval: each replicate resamples the seeds, and the queries once for all seeds and
    sets (a 1-D array is one seed)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    x = _as_seeds_by_queries(values)
    finite = np.isfinite(x)
    if not finite.any():
        nan = float("nan")
        return Interval(nan, nan, nan, level)
    point = float(x[finite].mean())
    if np.ptp(x[finite]) == 0:  # a constant sample: every replicate is that constant
        return Interval(float(x[finite][0]), float(x[finite][0]), float(x[finite][0]), level)
    s, k, q = x.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    filled, weights = np.where(finite, x, 0.0), finite.astype(np.float64)
    # one query resample per replicate, drawn before the seeds: S identical seeds then
    # replay exactly the replicates of a single seed
    all_cols = rng.integers(0, q, (resamples, q))
    all_rows = rng.integers(0, s, (resamples, s))
    chunk = max(1, (1 << 22) // (s * k * q))  # bounded memory: about 4M values at a time
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        cols, rows = all_cols[start : start + n], all_rows[start : start + n]
        counts = np.zeros((n, q))  # how often each query was drawn, per replicate
        np.add.at(counts, (np.arange(n)[:, None], cols), 1.0)
        total = np.einsum("nq,nskq->n", counts, filled[rows])
        count = np.einsum("nq,nskq->n", counts, weights[rows])
        with np.errstate(invalid="ignore", divide="ignore"):
            means[start : start + n] = total / count
    means = means[np.isfinite(means)]
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha]) if means.size else (point, point)
    return Interval(point, min(float(low), point), max(float(high), point), level)


def paired_difference(
    values,
    reference,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of ``values - reference`` (both (S, Q) or (S, K, Q): the same seeds and queries
    in the same order) with a bootstrap interval over seeds and queries (``bootstrap_mean``)."""
    a, b = _as_seeds_by_queries(values), _as_seeds_by_queries(reference)
    if a.shape != b.shape:
        raise ValueError(
            f"paired values need the same (seeds, queries) shape, got {np.shape(values)} and "
            f"{np.shape(reference)}"
        )
    return bootstrap_mean(a - b, resamples, level, seed)


def analytic_mean_interval(values, level: float = 0.95) -> Interval:
    """Normal-approximation interval of the mean of a 1-D sample (mean ± z·s/√n), to compare
    the bootstrap with."""
    from statistics import NormalDist

    x = np.asarray(values, dtype=np.float64).ravel()
    z = NormalDist().inv_cdf(0.5 + level / 2)
    m, sd = float(x.mean()), float(x.std(ddof=1))
    half = z * sd / np.sqrt(x.size)
    return Interval(m, m - half, m + half, level)
