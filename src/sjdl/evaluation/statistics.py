"""Statistics over repeated runs: mean ± std, and bootstrap confidence intervals of a mean
over seeds and queries (pure functions on arrays; no I/O, no models).

Per-query values (AP, hit@1) come as an (S, Q) array: S seeds (runs) by Q queries of one
test set. The bootstrap is hierarchical: each replicate draws S seeds with replacement, then
within each drawn seed Q queries with replacement, and takes the mean, so both the variation
between training runs and the finite number of test queries widen the interval. NaN marks a
query without a valid match; it is left out of the means.
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
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected a non-empty (seeds, queries) array, got shape {x.shape}")
    return x


def bootstrap_mean(
    values,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of an (S, Q) array of per-query values with a percentile bootstrap interval that
    resamples seeds, then queries within each seed (a 1-D array is one seed)."""
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
    s, q = x.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    filled, weights = np.where(finite, x, 0.0), finite.astype(np.float64)
    chunk = max(1, (1 << 22) // (s * q))  # bounded memory: about 4M draws at a time
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        rows = rng.integers(0, s, (n, s))[:, :, None]
        cols = rng.integers(0, q, (n, s, q))
        total = filled[rows, cols].sum((1, 2))
        count = weights[rows, cols].sum((1, 2))
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
    """Mean of ``values - reference`` (both (S, Q): the same seeds and queries in the same
    order) with a bootstrap interval over seeds and queries (``bootstrap_mean``)."""
    a, b = _as_seeds_by_queries(values), _as_seeds_by_queries(reference)
    if a.shape != b.shape:
        raise ValueError(
            f"paired values need the same (seeds, queries) shape, got {a.shape} and {b.shape}"
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
