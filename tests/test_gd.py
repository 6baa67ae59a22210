"""Gradient descent in closed form, lambda_max by Lanczos, and the divergence criterion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from sparsescale_cli.model.gd import DIVERGENCE_FACTOR, descent_path, hessian_top_eigenvalue
from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.linear import LinearProblem, draw_training_set, seen_feature_columns
from sparsescale_cli.model.sampler import sample_batch
from sparsescale_cli.model.solvers import range_basis


def _iterate(design, targets, eta, last_step):
    """Explicit gradient descent on (1/(2D)) ||design theta - targets||^2 from theta = 0."""
    n_samples = design.shape[0]
    theta = np.zeros(design.shape[1])
    thetas, losses = [theta.copy()], [targets @ targets / (2 * n_samples)]
    for _ in range(last_step):
        theta = theta - eta * design.T @ (design @ theta - targets) / n_samples
        residual = design @ theta - targets
        thetas.append(theta.copy())
        losses.append(residual @ residual / (2 * n_samples))
    return np.array(thetas), np.array(losses)


def _problem(n_samples=30, n_features=8, seed=0):
    rng = np.random.default_rng(seed)
    design = rng.standard_normal((n_samples, n_features)) * np.linspace(0.3, 2.0, n_features)
    targets = rng.standard_normal(n_samples)
    top = scipy.linalg.eigvalsh(design.T @ design / n_samples)[-1]
    return design, targets, top


@pytest.mark.parametrize("relative_eta", [0.3, 1.0, 1.95])
def test_closed_form_equals_iteration(relative_eta):
    design, targets, top = _problem()
    eta = relative_eta / top
    steps = np.array([0, 1, 2, 5, 17, 60])
    path = descent_path(design, targets, eta, steps)
    thetas, losses = _iterate(design, targets, eta, steps.max())
    np.testing.assert_allclose(path.thetas.T, thetas[steps], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(path.train_loss, losses[steps], rtol=1e-9)
    assert path.crossing_step == -1


def test_closed_form_on_compressed_basis_equals_full():
    # Q^T Phi with Q an orthonormal basis of range(X) gives the same run as Phi itself.
    law = DataLaw(alpha=0.5, s=2.0)
    rng = np.random.default_rng(4)
    batch = sample_batch(law, 60, rng)
    labels = rng.standard_normal(60)
    features = seen_feature_columns(9, batch.coords, 12) / math.sqrt(12)
    phi = batch.matrix @ features.T
    basis = range_basis(batch.matrix, labels)
    eta = 1.2 / scipy.linalg.eigvalsh(phi.T @ phi / 60)[-1]
    steps = np.array([0, 3, 40, 500])
    full = descent_path(phi, labels, eta, steps)
    compressed = descent_path(basis.coefficients @ features.T, basis.targets, eta, steps, n_samples=60,
                              residual_sq=basis.residual_sq)
    np.testing.assert_allclose(compressed.thetas, full.thetas, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(compressed.train_loss, full.train_loss, rtol=1e-8)


@pytest.mark.parametrize("relative_eta", [1.98, 2.02])
def test_divergence_iff_eta_lambda_max_above_two(relative_eta):
    design, targets, top = _problem(seed=1)
    eta = relative_eta / top
    last = 4000
    _, losses = _iterate(design, targets, eta, last)
    crossed = np.nonzero(losses > DIVERGENCE_FACTOR * losses[0])[0]
    path = descent_path(design, targets, eta, np.array([0, last]))
    assert path.diverged == (relative_eta > 2)
    if relative_eta > 2:
        assert crossed.size > 0
        assert path.crossing_step == crossed[0]
    else:
        assert crossed.size == 0
        assert path.crossing_step == -1
        assert losses[-1] < losses[0]


def test_overflow_is_recorded_as_crossing_without_nan():
    design, targets, top = _problem(seed=2)
    steps = np.array([0, 1, 3, 10, 10**6, 10**12])
    path = descent_path(design, targets, 50.0 / top, steps)
    _, losses = _iterate(design, targets, 50.0 / top, 20)
    expected_crossing = int(np.nonzero(losses > DIVERGENCE_FACTOR * losses[0])[0][0])
    assert path.crossing_step == expected_crossing
    assert not np.isnan(path.train_loss).any()
    assert np.all(np.isfinite(path.thetas))
    assert np.all(np.isinf(path.train_loss[steps >= expected_crossing]))
    assert np.all(np.isfinite(path.train_loss[steps < expected_crossing]))


@pytest.mark.parametrize("n_features", [5, 40, 300])
def test_lanczos_top_eigenvalue_equals_dense(n_features):
    law = DataLaw(alpha=0.5, s=3.0)
    rng = np.random.default_rng(n_features)
    batch = sample_batch(law, 2000, rng)
    features = seen_feature_columns(17, batch.coords, n_features) / math.sqrt(n_features)
    phi = (batch.matrix @ features.T)
    dense = scipy.linalg.eigvalsh(phi.T @ phi / 2000)[-1]
    lanczos = hessian_top_eigenvalue(batch.matrix, features, 2000, rng.standard_normal(n_features))
    assert lanczos == pytest.approx(dense, rel=1e-10)


def test_gd_at_large_t_approaches_min_norm():
    # Stable GD from zero converges to the minimum-norm least-squares solution (same population loss).
    law, teacher = DataLaw(alpha=0.5, s=2.0), Teacher(noise=0.1)
    rng = np.random.default_rng(11)
    training = draw_training_set(law, teacher, 400, rng, teacher_seed=5)
    problem = LinearProblem(law, teacher, training)
    for n_features in (8, 4 * problem.data_rank):
        scale = 1 / math.sqrt(n_features)
        features = scale * seen_feature_columns(23, training.batch.coords, n_features)
        min_norm = problem.fit_features(features, 0.0, scale)
        top = hessian_top_eigenvalue(training.batch.matrix, features, 400)
        descent = problem.descend_features(features, 1.0 / top, np.array([0, 10, 10**15]), scale)
        assert not descent.diverged
        assert descent.loss[-1] == pytest.approx(min_norm.loss, rel=1e-6)
        assert descent.train_loss[-1] == pytest.approx(min_norm.train_loss / 2, rel=1e-6, abs=1e-12)
        assert descent.loss[1] != pytest.approx(min_norm.loss, rel=1e-3)
