"""Exact sampling of sparse input batches, coordinate by coordinate.

The cost is O(nnz + coordinates up to the explicit limit), independent of M,
and M = inf is sampled exactly. Three regimes of p_i are handled differently:

- p_i >= 1/4 (the frequent head): a dense Bernoulli mask over the D rows;
  at least a quarter of its entries are non-zero, so it costs O(nnz).
- p_i < 1/4 up to the explicit limit (D p_i >= 1): Poisson thinning per
  coordinate. Bernoulli(p) is the event {Poisson(mu) >= 1} with
  mu = -log(1 - p), so E_i ~ Poisson(D mu_i) events are placed on uniform
  rows and repeated (row, coordinate) pairs are merged.
- the far tail (D p_i < 1, up to M or infinity): the same Poisson process,
  with the total count Poisson(D sum_i mu_i) and each event's coordinate
  drawn from the law mu_i / sum mu by rejection from a continuous power law.

Counts per coordinate are exactly Binomial(D, p_i) in all three regimes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .laws import DataLaw

_DENSE_THRESHOLD = 0.25


@dataclass
class SparseBatch:
    """A batch of D sparse inputs restricted to the coordinates it activates.

    Attributes
    ----------
    coords : ndarray of float64, shape (K,)
        Sorted indices i of the K coordinates active in at least one input.
    matrix : scipy.sparse.csc_matrix, shape (D, K)
        Column k holds x_{r, coords[k]} for the rows r = 0, ..., D - 1.
    """

    coords: np.ndarray
    matrix: sp.csc_matrix

    @property
    def n_samples(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_seen(self) -> int:
        return self.coords.size

    def counts(self) -> np.ndarray:
        """Return the number of inputs in which each seen coordinate is active."""
        return np.diff(self.matrix.indptr)


def sample_batch(law: DataLaw, n_samples: int, rng: np.random.Generator) -> SparseBatch:
    """Draw D inputs from ``law``.

    Parameters
    ----------
    law : DataLaw
    n_samples : int
        D, the number of inputs.
    rng : numpy.random.Generator
        Source of all randomness; the batch is a deterministic function of its state.
    """
    rows, coords = _sample_support(law, n_samples, rng)
    order = np.lexsort((rows, coords))
    rows, coords = rows[order], coords[order]

    # Merge repeated (row, coordinate) events: the input is active there once.
    if rows.size:
        keep = np.ones(rows.size, dtype=bool)
        keep[1:] = (rows[1:] != rows[:-1]) | (coords[1:] != coords[:-1])
        rows, coords = rows[keep], coords[keep]

    seen, first, counts = np.unique(coords, return_index=True, return_counts=True)
    amplitudes = rng.standard_normal(rows.size) * np.sqrt(law.amplitude_variance(coords))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    matrix = sp.csc_matrix((amplitudes, rows.astype(np.int64), indptr), shape=(n_samples, seen.size))
    return SparseBatch(coords=seen, matrix=matrix)


def _sample_support(law: DataLaw, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    explicit_limit = law.explicit_limit(n_samples)
    dense_limit = _dense_limit(law, explicit_limit)
    parts_rows: list[np.ndarray] = []
    parts_coords: list[np.ndarray] = []

    if dense_limit >= 1:
        dense_coords = np.arange(1, dense_limit + 1, dtype=float)
        p = law.activation_probability(dense_coords)
        always = p >= 1.0
        mask = np.ones((n_samples, dense_coords.size), dtype=bool)
        if not always.all():
            mask[:, ~always] = rng.random((n_samples, int((~always).sum()))) < p[~always]
        row_index, column_index = np.nonzero(mask)
        parts_rows.append(row_index)
        parts_coords.append(dense_coords[column_index])

    if explicit_limit > dense_limit:
        middle = np.arange(dense_limit + 1, explicit_limit + 1, dtype=float)
        rates = -np.log1p(-law.activation_probability(middle))
        events = rng.poisson(n_samples * rates)
        parts_coords.append(np.repeat(middle, events))
        parts_rows.append(rng.integers(0, n_samples, size=int(events.sum())))

    if law.M > explicit_limit:
        tail_coords = _sample_tail(law, n_samples, explicit_limit + 1, rng)
        parts_coords.append(tail_coords)
        parts_rows.append(rng.integers(0, n_samples, size=tail_coords.size))

    if not parts_rows:
        return np.empty(0, dtype=np.int64), np.empty(0)
    return np.concatenate(parts_rows).astype(np.int64), np.concatenate(parts_coords)


def _dense_limit(law: DataLaw, explicit_limit: float) -> int:
    """Return the last coordinate with p_i >= 1/4, capped at the explicit limit."""
    if law.s == 0:
        return int(explicit_limit) if law.c >= _DENSE_THRESHOLD else 0
    limit = math.floor((law.c / _DENSE_THRESHOLD) ** (1.0 / law.s))
    return int(min(limit, explicit_limit))


def _sample_tail(law: DataLaw, n_samples: int, start: float, rng: np.random.Generator) -> np.ndarray:
    """Draw the coordinates of all tail events, i >= start, of the Poisson process.

    Notes
    -----
    Proposal: y with density proportional to y^-s on [start, M + 1), k = floor(y),
    so P(k) is proportional to I_k = int_k^{k+1} y^-s dy. Target: mu_k = -log(1 - c k^-s).
    The ratio mu_k / (c I_k) = (mu_k / p_k) (k^-s / I_k) decreases in k, so its
    value at k = start bounds it and the acceptance rate is at least
    1 / bound, close to one because p_start < 1/D.
    """
    total_rate = law.poisson_rate_sum(start)
    n_events = rng.poisson(n_samples * total_rate)
    if n_events == 0:
        return np.empty(0)

    s = law.s
    upper = law.M + 1.0
    bound = _rate_ratio(law, np.array([start]))[0] * _lattice_ratio(s, np.array([start]))[0]
    accepted: list[np.ndarray] = []
    needed = n_events
    while needed > 0:
        batch = int(needed * 1.2 * bound) + 16
        y = _power_law_draw(s, start, upper, rng.random(batch))
        k = np.floor(y)
        valid = (k >= start) & (k <= law.M) & np.isfinite(k)
        k = k[valid]
        ratio = _rate_ratio(law, k) * _lattice_ratio(s, k) / bound
        u = rng.random(valid.sum())
        k = k[u < ratio]
        accepted.append(k[:needed])
        needed -= min(needed, k.size)
    return np.concatenate(accepted)


def _rate_ratio(law: DataLaw, k: np.ndarray) -> np.ndarray:
    """Return mu_k / p_k = -log(1 - p_k) / p_k (at least 1, increasing in p_k)."""
    p = law.activation_probability(k)
    return -np.log1p(-p) / p


def _lattice_ratio(s: float, k: np.ndarray) -> np.ndarray:
    """Return k^-s / int_k^{k+1} y^-s dy, evaluated without cancellation."""
    if s == 1:
        return 1.0 / (k * np.log1p(1.0 / k))
    integral_scaled = -np.expm1((1.0 - s) * np.log1p(1.0 / k)) / (s - 1.0)
    return 1.0 / (k * integral_scaled)


def _power_law_draw(s: float, start: float, upper: float, u: np.ndarray) -> np.ndarray:
    """Invert the CDF of the density proportional to y^-s on [start, upper)."""
    if s == 1:
        return start * np.exp(u * math.log(upper / start))
    if math.isinf(upper):
        return start * (1.0 - u) ** (-1.0 / (s - 1.0))
    q = -math.expm1((1.0 - s) * math.log(upper / start))
    return start * (1.0 - u * q) ** (1.0 / (1.0 - s))
