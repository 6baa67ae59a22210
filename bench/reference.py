"""The naive reference implementation that the benchmarks compare against.

It is the straightforward code a user would write without sparsescale:
a dense D x M Bernoulli mask drawn entry by entry, a dense N x M feature
matrix F, ``numpy.linalg.lstsq`` for the min-norm fit and the population loss
summed over all M coordinates from the full F. It needs a finite M.

Nothing in the product imports this module. The dense inputs are built in
blocks of columns only to bound memory: every entry of the D x M mask and of
the N x M matrix F is still drawn, and every product over M is still
computed, so the work is that of the unblocked code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sparsescale_cli.model.laws import DataLaw, Teacher

# Entries of one dense block of columns (float64: 256 MiB).
BLOCK_ENTRIES = 2**25


def block_columns(n_rows: int) -> int:
    """Return how many columns of an n_rows-row float64 block fit in BLOCK_ENTRIES."""
    return max(1, BLOCK_ENTRIES // max(1, n_rows))


def finite_coordinates(law: DataLaw) -> int:
    """Return M as an int, raising ValueError when the law has M = inf."""
    if math.isinf(law.M):
        raise ValueError("the naive reference needs a finite M; got M = inf")
    return int(law.M)


def naive_sample(law: DataLaw, n_samples: int, rng: np.random.Generator) -> sp.csc_matrix:
    """Draw D inputs over all M coordinates from a dense float64 Bernoulli mask.

    Returns
    -------
    scipy.sparse.csc_matrix, shape (D, M)
        Column i - 1 contains x_i. Amplitudes are drawn only where the mask is set.
    """
    n_coordinates = finite_coordinates(law)
    coords = np.arange(1, n_coordinates + 1, dtype=float)
    probability = law.activation_probability(coords)
    amplitude_sd = np.sqrt(law.amplitude_variance(coords))
    block = block_columns(n_samples)

    rows, columns, values = [], [], []
    for low in range(0, n_coordinates, block):
        high = min(low + block, n_coordinates)
        mask = rng.random((n_samples, high - low)) < probability[low:high]
        row_index, column_index = np.nonzero(mask)
        rows.append(row_index)
        columns.append(column_index + low)
        values.append(rng.standard_normal(row_index.size) * amplitude_sd[low + column_index])
    return sp.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_samples, n_coordinates),
    )


@dataclass
class NaiveFit:
    """Outcome of the naive trial: its population loss and the fitted weights."""

    loss: float
    theta: np.ndarray


def naive_population_loss(
    features: np.ndarray, theta: np.ndarray, teacher_weights: np.ndarray, covariance: np.ndarray, noise: float
) -> float:
    """Return sum_i E[x_i^2] ((F^T theta)_i - w*_i)^2 + sigma^2 over all M coordinates.

    Parameters
    ----------
    features : ndarray, shape (N, M)
        The full F, already multiplied by sigma_F.
    theta : ndarray, shape (N,)
    teacher_weights, covariance : ndarray, shape (M,)
        w*_i and E[x_i^2].
    noise : float
        sigma, the label noise standard deviation.
    """
    predictor = features.T @ theta
    return float(np.sum(covariance * (predictor - teacher_weights) ** 2) + noise**2)


def naive_trial(
    law: DataLaw, teacher: Teacher, n_samples: int, n_features: int, feature_sd: float, rng: np.random.Generator
) -> NaiveFit:
    """Sample, build features, fit the min-norm student and return its population loss, all densely.

    Parameters
    ----------
    law, teacher : DataLaw, Teacher
        ``law.M`` must be finite.
    n_samples, n_features : int
        D and N.
    feature_sd : float
        sigma_F, the standard deviation of each entry of F.
    rng : numpy.random.Generator
        Source of the data, the features and the teacher.
    """
    n_coordinates = finite_coordinates(law)
    coords = np.arange(1, n_coordinates + 1, dtype=float)
    probability = law.activation_probability(coords)
    amplitude_sd = np.sqrt(law.amplitude_variance(coords))
    teacher_weights = np.sqrt(teacher.weight_variance(coords)) * rng.standard_normal(n_coordinates)
    features = feature_sd * rng.standard_normal((n_features, n_coordinates))

    # Phi = X F^T and y = X w*, accumulated over blocks of the dense X.
    design = np.zeros((n_samples, n_features))
    labels = np.zeros(n_samples)
    block = block_columns(n_samples)
    for low in range(0, n_coordinates, block):
        high = min(low + block, n_coordinates)
        mask = rng.random((n_samples, high - low)) < probability[low:high]
        inputs = np.zeros((n_samples, high - low))
        inputs[mask] = rng.standard_normal(int(mask.sum())) * np.broadcast_to(amplitude_sd[low:high], mask.shape)[mask]
        design += inputs @ features[:, low:high].T
        labels += inputs @ teacher_weights[low:high]
    if teacher.noise > 0:
        labels += teacher.noise * rng.standard_normal(n_samples)

    theta = np.linalg.lstsq(design, labels, rcond=None)[0]
    loss = naive_population_loss(features, theta, teacher_weights, law.covariance(coords), teacher.noise)
    return NaiveFit(loss=loss, theta=theta)
