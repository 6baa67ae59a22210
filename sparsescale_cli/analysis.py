"""Statistics over replicates and power-law fits with bootstrap intervals.

Intervals are percentile bootstrap intervals over whole replicates: each
resample draws R replicates with replacement, recomputes the statistic of
every point from them and refits. Points of one replicate may share a data
draw (a sweep over N reuses it), so resampling replicates, not single
points, keeps that correlation in the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MEAN = "mean"
MEDIAN = "median"


def column_statistic(values: np.ndarray, statistic: str) -> np.ndarray:
    """Return the mean or median of each column of a (replicates, points) array, ignoring nan."""
    values = np.asarray(values, dtype=float)
    with np.errstate(all="ignore"):
        if statistic == MEDIAN:
            return np.nanmedian(values, axis=0)
        return np.nanmean(values, axis=0)


def describe(values: np.ndarray) -> dict[str, np.ndarray]:
    """Return mean, standard error, median and quartiles of each column."""
    values = np.asarray(values, dtype=float)
    count = np.sum(np.isfinite(values), axis=0)
    with np.errstate(all="ignore"):
        return {
            "mean": np.nanmean(values, axis=0),
            "sem": np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(count, 1)),
            "median": np.nanmedian(values, axis=0),
            "q25": np.nanquantile(values, 0.25, axis=0),
            "q75": np.nanquantile(values, 0.75, axis=0),
            "q05": np.nanquantile(values, 0.05, axis=0),
            "q95": np.nanquantile(values, 0.95, axis=0),
        }


@dataclass
class SlopeFit:
    """A fitted log-log slope with its bootstrap interval."""

    slope: float
    ci95: tuple[float, float]
    n_points: int
    n_resamples: int
    failed_resamples: int


def fit_log_slope(
    x: np.ndarray,
    values: np.ndarray,
    statistic: str = MEAN,
    floor: float = 0.0,
    n_resamples: int = 1000,
    seed: int = 0,
) -> SlopeFit | None:
    """Fit log(stat(values) - floor) = b log(x) + const and bootstrap b over replicates.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Positive abscissae (N or D).
    values : ndarray, shape (R, n)
        One row per replicate.
    statistic : {"mean", "median"}
    floor : float
        Subtracted before the logarithm (the noise floor sigma^2).
    n_resamples : int
    seed : int
        Seed of the resampling, so that a summary is reproducible.

    Returns
    -------
    SlopeFit or None
        None when fewer than two points have a positive excess.
    """
    x = np.asarray(x, dtype=float)
    values = np.asarray(values, dtype=float)
    slope = _slope(x, column_statistic(values, statistic) - floor)
    if slope is None:
        return None
    rng = np.random.default_rng(seed)
    n_replicates = values.shape[0]
    resampled = []
    failed = 0
    for _ in range(n_resamples):
        rows = rng.integers(0, n_replicates, n_replicates)
        estimate = _slope(x, column_statistic(values[rows], statistic) - floor)
        if estimate is None:
            failed += 1
        else:
            resampled.append(estimate)
    if not resampled:
        return SlopeFit(slope, (np.nan, np.nan), x.size, n_resamples, failed)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return SlopeFit(slope, (float(low), float(high)), x.size, n_resamples, failed)


def _slope(x: np.ndarray, y: np.ndarray) -> float | None:
    keep = np.isfinite(y) & (y > 0) & (x > 0) & np.isfinite(x)
    if keep.sum() < 2:
        return None
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def bootstrap_interval(
    values: np.ndarray, estimator, n_resamples: int = 1000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """Return estimator(values) and its percentile interval over resampled rows."""
    values = np.asarray(values)
    estimate = float(estimator(values))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        rows = rng.integers(0, values.shape[0], values.shape[0])
        value = estimator(values[rows])
        if np.isfinite(value):
            draws.append(value)
    if not draws:
        return estimate, (np.nan, np.nan)
    low, high = np.percentile(draws, [2.5, 97.5])
    return estimate, (float(low), float(high))


def stack_field(rows: list[dict], field: str) -> np.ndarray:
    """Return one field of every replicate's record as a (replicates, ...) float array."""
    return np.array([np.asarray(row[field], dtype=float) for row in rows])


def scan_peak(rows: list[dict], loss_field: str, rank_field: str, statistic: str, n_resamples: int = 1000,
              seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Return the factor N/rank at which a per-draw scan of N peaks, with a bootstrap interval.

    Each record holds ``scan_n_features`` (N = f x rank for a list of factors f),
    the losses there under ``loss_field`` and the rank under ``rank_field``.
    The peak is the scan entry whose log-loss statistic over replicates is
    largest; its factor is the median of N/rank over the draws.
    """
    ratios = []
    for row in rows:
        scan = np.asarray(row["scan_n_features"], dtype=float)
        if scan.size == 0 or not row[rank_field]:
            return np.nan, (np.nan, np.nan)
        ratios.append(scan / row[rank_field])
    ratios = np.array(ratios)
    losses = np.log(stack_field(rows, loss_field))

    def peak(sample: np.ndarray) -> float:
        center = column_statistic(sample, statistic)
        return float(np.median(ratios[:, int(np.nanargmax(center))]))

    return bootstrap_interval(losses, peak, n_resamples, seed)
