"""Solvers and the exact population loss of the linear student, against independent computations."""

import math

import numpy as np
import pytest

from sparsescale_cli.model import theory
from sparsescale_cli.model.keyed import keyed_normal
from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.linear import (
    LinearProblem, TrainingSet, draw_training_set, feature_scale, seen_feature_columns, teacher_weights,
)
from sparsescale_cli.model.sampler import sample_batch
from sparsescale_cli.model.solvers import range_basis, solve_ridge


@pytest.mark.parametrize("shape", [(40, 15), (15, 40), (30, 30)])
def test_min_norm_solution_matches_numpy(shape):
    rng = np.random.default_rng(0)
    design = rng.standard_normal(shape)
    targets = rng.standard_normal(shape[0])
    solution = solve_ridge(design, targets, 0.0)
    np.testing.assert_allclose(solution.theta, np.linalg.lstsq(design, targets, rcond=None)[0], atol=1e-10)
    np.testing.assert_allclose(solution.theta, np.linalg.pinv(design) @ targets, atol=1e-10)


def test_min_norm_solution_of_rank_deficient_design():
    rng = np.random.default_rng(1)
    design = rng.standard_normal((20, 5)) @ rng.standard_normal((5, 30))
    targets = rng.standard_normal(20)
    solution = solve_ridge(design, targets, 0.0)
    assert solution.rank == 5
    np.testing.assert_allclose(solution.theta, np.linalg.pinv(design, rcond=1e-12) @ targets, atol=1e-9)


def test_ridge_matches_scikit_learn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    design, targets = rng.standard_normal((50, 80)), rng.standard_normal(50)
    ridge = 0.03
    # Per-sample convention: (1/D)||Phi theta - y||^2 + gamma ||theta||^2 is sklearn's alpha = D gamma.
    reference = Ridge(alpha=50 * ridge, fit_intercept=False, solver="svd").fit(design, targets).coef_
    np.testing.assert_allclose(solve_ridge(design, targets, ridge).theta, reference, atol=1e-10)


def test_range_basis_preserves_singular_values_and_fit():
    law = DataLaw(alpha=1.0, s=1.5, c=3.0, M=400)
    batch = sample_batch(law, 300, np.random.default_rng(3))
    labels = np.random.default_rng(4).standard_normal(300)
    basis = range_basis(batch.matrix, labels)
    features = keyed_normal(9, batch.coords, 120) / math.sqrt(120)
    direct = batch.matrix.toarray() @ features.T
    assert basis.rank == np.linalg.matrix_rank(batch.matrix.toarray())
    reduced = solve_ridge(basis.coefficients @ features.T, basis.targets, 0.0, n_samples=300)
    full = solve_ridge(direct, labels, 0.0)
    np.testing.assert_allclose(reduced.singular_values[: reduced.rank], full.singular_values[: full.rank], rtol=1e-8)
    np.testing.assert_allclose(reduced.theta, full.theta, rtol=1e-6, atol=1e-8)
    assert reduced.residual_sq + basis.residual_sq == pytest.approx(full.residual_sq, rel=1e-6)


def test_keyed_columns_are_nested_and_independent_of_other_coordinates():
    coords = np.array([1.0, 7.0, 1e15])
    wide = keyed_normal(5, coords, 50)
    narrow = keyed_normal(5, coords[1:], 20)
    np.testing.assert_array_equal(wide[:20, 1:], narrow)
    assert abs(np.mean(keyed_normal(1, np.arange(1.0, 2001.0), 100))) < 0.01
    assert np.std(keyed_normal(1, np.arange(1.0, 2001.0), 100)) == pytest.approx(1.0, rel=0.01)


def _brute_force_loss(law, teacher, training, feature_key, teacher_key, n_features, ridge):
    """Loss with every one of the M columns of F made explicitly (small M only)."""
    all_coords = np.arange(1.0, law.M + 1)
    scale = feature_scale(n_features, "inverse_n")
    full_features = scale * keyed_normal(feature_key, all_coords, n_features)
    w = teacher_weights(teacher, teacher_key, all_coords)
    phi = training.batch.matrix.toarray() @ full_features[:, training.batch.coords.astype(int) - 1].T
    theta = solve_ridge(phi, training.labels, ridge).theta
    predictor = full_features.T @ theta
    return float(np.sum(law.covariance(all_coords) * (predictor - w) ** 2)) + teacher.noise**2


@pytest.mark.parametrize("n_features, ridge", [(10, 0.0), (60, 0.0), (60, 1e-2)])
def test_seen_unseen_split_equals_brute_force_in_expectation(n_features, ridge):
    law, teacher = DataLaw(alpha=1.0, s=1.5, c=1.0, M=600), Teacher(beta=0.2, noise=0.1)
    differences = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        training = draw_training_set(law, teacher, 80, rng, teacher_seed=1000 + seed)
        problem = LinearProblem(law, teacher, training)
        columns = seen_feature_columns(2000 + seed, training.batch.coords, n_features)
        scale = feature_scale(n_features, "inverse_n")
        split = problem.fit_features(scale * columns, ridge, scale).loss
        brute = _brute_force_loss(law, teacher, training, 2000 + seed, 1000 + seed, n_features, ridge)
        differences.append(split - brute)
    differences = np.array(differences)
    assert abs(differences.mean()) < 3 * differences.std(ddof=1) / math.sqrt(differences.size)


@pytest.mark.parametrize("n_features, ridge", [(8, 0.0), (30, 0.0), (120, 0.0), (30, 1e-3), (math.inf, 0.0)])
def test_expected_loss_equals_average_over_teachers(n_features, ridge):
    # Fixed inputs and features; the realized loss averaged over many teachers and noise draws.
    law, teacher = DataLaw(alpha=1.0, s=2.0, c=1.0, M=2000), Teacher(beta=0.5, noise=0.3)
    base = draw_training_set(law, teacher, 150, np.random.default_rng(0), teacher_seed=0)
    columns = None if math.isinf(n_features) else seen_feature_columns(3, base.batch.coords, int(n_features))
    realized, expected = [], None
    noise_rng = np.random.default_rng(1)
    for draw in range(600):
        w = teacher_weights(teacher, 100 + draw, base.batch.coords)
        labels = base.batch.matrix @ w + teacher.noise * noise_rng.standard_normal(150)
        problem = LinearProblem(law, teacher, TrainingSet(base.batch, w, labels))
        if columns is None:
            fit = problem.fit_kernel_limit(ridge)
        else:
            scale = feature_scale(n_features, "inverse_n")
            fit = problem.fit_features(scale * columns, ridge, scale)
        realized.append(fit.loss)
        expected = fit.expected_loss
    realized = np.array(realized)
    assert abs(realized.mean() - expected) < 3.5 * realized.std(ddof=1) / math.sqrt(realized.size)


@pytest.mark.parametrize("n_samples", [40, 70, 140, 200])
def test_isotropic_min_norm_risk_matches_hastie_et_al(n_samples):
    # x ~ N(0, I_p) (tied amplitudes, s = 0), min-norm least squares in x (N = inf):
    # E[L] - sigma^2 = r^2 (1 - n/p) + sigma^2 n/(p - n - 1) for p > n + 1, sigma^2 p/(n - p - 1) for p < n - 1.
    p, noise = 100, 0.5
    law, teacher = DataLaw(alpha=1.0, s=0.0, c=1.0, M=p, amplitude="tied"), Teacher(noise=noise)
    losses = []
    for seed in range(200):
        training = draw_training_set(law, teacher, n_samples, np.random.default_rng(seed), teacher_seed=seed)
        losses.append(LinearProblem(law, teacher, training).fit_kernel_limit(0.0).expected_loss - noise**2)
    losses = np.array(losses)
    expected = theory.isotropic_min_norm_risk(p, n_samples, signal_sq=float(p), noise=noise)
    assert abs(losses.mean() - expected) < 3 * losses.std(ddof=1) / math.sqrt(losses.size)


def test_isotropic_min_norm_risk_peaks_at_ratio_one():
    p = 60
    law, teacher = DataLaw(alpha=1.0, s=0.0, c=1.0, M=p, amplitude="tied"), Teacher(noise=0.5)
    means = []
    for n_samples in (30, 55, 60, 65, 120):
        values = [LinearProblem(law, teacher, draw_training_set(law, teacher, n_samples, np.random.default_rng(s), s))
                  .fit_kernel_limit(0.0).expected_loss for s in range(40)]
        means.append(np.median(values))
    assert means[2] == max(means)
