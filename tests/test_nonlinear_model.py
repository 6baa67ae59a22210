"""Nonlinear random features: the arc-cosine kernel limit, Monte Carlo losses, feature rank.

Reference values come from computations that share no code with the
estimators under test: Gaussian averages over many draws of z, numerical
quadrature over the amplitude, and, for a law with M = 6 coordinates, the
population loss summed exactly over all 2^6 supports.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate

from sparsescale_cli.model import nonlinear as nl
from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.linear import draw_training_set, unseen_sums
from sparsescale_cli.model.solvers import solve_ridge


def _relu_student(training, n_features, ridge, feature_seed=5):
    feature_map = nl.FeatureMap("relu", feature_seed, n_features)
    problem = nl.NonlinearProblem(training, feature_map)
    scale = 1.0 / math.sqrt(n_features)
    theta, _ = problem.fit(n_features, ridge, scale)
    return feature_map, nl.FeaturePredictor(feature_map, theta, scale)


def _losses(feature_map, predictor, law, teacher, training, test):
    """Return the plain and the reduced estimate of one student on one test set."""
    weights = feature_map.weights(test.batch.coords)
    predictions = predictor.predict_features(feature_map.transform(test.batch, weights))
    seen = np.isin(test.batch.coords, training.batch.coords)
    unseen = unseen_sums(law, teacher, training.batch.coords, training.batch.n_samples).weighted
    plain = nl.plain_loss(predictions, test, teacher.noise)
    reduced = nl.reduced_loss(predictions, test, teacher.noise, law, seen, unseen,
                              predictor.unit_response(weights))
    return plain, reduced


# ---- the arc-cosine kernel ----------------------------------------------------------------


def test_arc_cosine_kernel_matches_gaussian_average():
    # Reference: E_z[relu(z.x) relu(z.x')] averaged over 400k standard normal z.
    rng = np.random.default_rng(0)
    left = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [2.0, 0.0, 0.0]])
    right = np.array([[0.0, 1.0, 0.0], [1.0, 1.5, 0.2], [-0.5, 1.0, -3.0], [3.0, 0.0, 0.0]])
    z = rng.standard_normal((400_000, 3))
    for x, y in zip(left, right):
        products = np.maximum(z @ x, 0) * np.maximum(z @ y, 0)
        expected = products.mean()
        error = products.std() / math.sqrt(products.size)
        kernel = nl.arc_cosine_kernel(np.array([np.linalg.norm(x)]), np.array([np.linalg.norm(y)]),
                                      np.array([[x @ y]]))[0, 0]
        assert abs(kernel - expected) < 4 * error + 1e-12, (x, y, kernel, expected)


def test_arc_cosine_kernel_diagonal_is_half_norm_squared():
    # E[relu(g)^2] = Var(g) / 2 for a centred Gaussian g.
    norms = np.array([0.3, 2.0])
    kernel = nl.arc_cosine_kernel(norms, norms, np.diag(norms**2))
    assert kernel[0, 0] == pytest.approx(0.045)
    assert kernel[1, 1] == pytest.approx(2.0)


def test_relu_features_approach_kernel_at_large_n():
    # The kernel solution is computed from the closed form; the feature solution from
    # sampled features. Their gap must shrink as N grows (like N^-1/2) and be small at N = 20000.
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    training = draw_training_set(law, teacher, 40, np.random.default_rng(3), 17)
    test = nl.draw_test_set(law, teacher, 400, np.random.default_rng(4), 17)
    seen = np.isin(test.batch.coords, training.batch.coords)
    unseen = unseen_sums(law, teacher, training.batch.coords, 40).weighted

    kernel = nl.ArcCosineKernelProblem(training)
    dual, kernel_fit = kernel.fit(1e-4)
    kernel_predictor = nl.KernelPredictor(kernel, dual)
    kernel_predictions = kernel_predictor.predict(test.batch)
    kernel_loss = nl.reduced_loss(kernel_predictions, test, 0.0, law, seen, unseen,
                                  kernel_predictor.unit_response(test.batch.coords)).value

    gaps = {}
    for n_features in (200, 20_000):
        feature_map, predictor = _relu_student(training, n_features, 1e-4)
        gram = nl.NonlinearProblem(training, feature_map).features
        gram = gram @ gram.T / n_features
        gram_error = np.abs(gram - kernel.gram).max() / np.abs(kernel.gram).max()
        _, reduced = _losses(feature_map, predictor, law, teacher, training, test)
        gaps[n_features] = (gram_error, abs(reduced.value / kernel_loss - 1))

    assert gaps[20_000][0] < 0.05
    assert gaps[20_000][1] < 0.05
    assert gaps[20_000][0] < gaps[200][0] / 3
    assert gaps[20_000][1] < gaps[200][1]
    assert kernel_fit.feature_rank == nl.predicted_feature_rank(training.batch, "relu")


# ---- the closed-form amplitude integral ---------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "abs", "linear"])
def test_single_coordinate_expectation_matches_quadrature(activation):
    # Reference: int (f(v e_i) - w v)^2 N(v; 0, tau^2) dv by adaptive quadrature,
    # with f(v e_i) = sum_j c_j act(z_j v).
    rng = np.random.default_rng(1)
    z, c = rng.standard_normal(7), rng.standard_normal(7)
    weight, variance = 0.7, 2.5

    def error_sq(v):
        return (c @ nl.apply_activation(activation, z * v) - weight * v) ** 2

    def integrand(v):
        return error_sq(v) * math.exp(-v * v / (2 * variance)) / math.sqrt(2 * math.pi * variance)

    expected = integrate.quad(integrand, -np.inf, 0)[0] + integrate.quad(integrand, 0, np.inf)[0]
    plus = c @ nl.apply_activation(activation, z)
    minus = c @ nl.apply_activation(activation, -z)
    value = nl.single_coordinate_expectation(np.array([plus]), np.array([minus]), np.array([weight]),
                                             np.array([variance]))[0]
    assert value == pytest.approx(expected, rel=1e-9)


# ---- Monte Carlo losses against an exact sum over supports -------------------------------


def _exact_relu_loss(law, predictor, feature_map, weights_by_coord):
    """Return E_x[(f(x) - w.x)^2] by summing over all 2^M supports of a finite law.

    Given the support S, v_S ~ N(0, diag tau^2), f(x) = sigma_F theta . relu(Z_S v_S)
    and the squared error is a Gaussian expectation in closed form:
    sigma_F^2 theta^T K theta - 2 sigma_F theta . (1/2) Z_S diag(tau^2) w_S + w_S . diag(tau^2) w_S,
    with K the arc-cosine kernel of the rows of Z_S diag(tau) and E[relu(a.u) (b.u)] = a.b / 2.
    """
    coords = np.arange(1.0, law.M + 1)
    probability = law.activation_probability(coords)
    variance = law.amplitude_variance(coords)
    z = feature_map.weights(coords)[: predictor.theta.size]
    theta = predictor.theta * predictor.scale
    total = 0.0
    for mask in itertools.product([False, True], repeat=int(law.M)):
        mask = np.array(mask)
        weight = float(np.prod(np.where(mask, probability, 1 - probability)))
        if weight == 0 or not mask.any():
            continue
        scaled = z[:, mask] * np.sqrt(variance[mask])
        norms = np.linalg.norm(scaled, axis=1)
        kernel = nl.arc_cosine_kernel(norms, norms, scaled @ scaled.T)
        teacher_scaled = weights_by_coord[mask] * np.sqrt(variance[mask])
        cross = 0.5 * theta @ (scaled @ teacher_scaled)
        total += weight * (theta @ kernel @ theta - 2 * cross + teacher_scaled @ teacher_scaled)
    return total


@pytest.fixture(scope="module")
def small_law_student():
    """A relu student (N = 30, small ridge) trained on D = 10 inputs of a law with M = 6 coordinates."""
    law, teacher = DataLaw(alpha=1.0, s=2.0, c=1.0, M=6), Teacher()
    training = draw_training_set(law, teacher, 10, np.random.default_rng(11), 23)
    feature_map, predictor = _relu_student(training, 30, 1e-2)
    return law, teacher, training, feature_map, predictor


def test_plain_loss_is_unbiased_against_exact_sum(small_law_student):
    law, teacher, training, feature_map, predictor = small_law_student
    from sparsescale_cli.model.linear import teacher_weights

    weights = teacher_weights(teacher, 23, np.arange(1.0, 7.0))
    exact = _exact_relu_loss(law, predictor, feature_map, weights)
    estimates, errors = [], []
    for seed in range(40):
        test = nl.draw_test_set(law, teacher, 1000, np.random.default_rng(100 + seed), 23)
        plain, _ = _losses(feature_map, predictor, law, teacher, training, test)
        estimates.append(plain.value)
        errors.append(plain.standard_error)
    estimates = np.array(estimates)
    standard_error = estimates.std(ddof=1) / math.sqrt(estimates.size)
    assert abs(estimates.mean() - exact) < 3 * standard_error
    # The per-estimate standard error describes the spread over seeds.
    assert np.mean(errors) == pytest.approx(estimates.std(ddof=1), rel=0.35)


def test_reduced_loss_is_unbiased_and_tighter(small_law_student):
    # The reduced estimand averages over the teacher weights of coordinates never seen in
    # training: exact value = exact sum with those weights set to 0, plus sum_unseen lambda_i E[w_i^2].
    law, teacher, training, feature_map, predictor = small_law_student
    from sparsescale_cli.model.linear import teacher_weights

    coords = np.arange(1.0, 7.0)
    seen = np.isin(coords, training.batch.coords)
    assert not seen.all(), "the check needs at least one coordinate unseen in training"
    weights = np.where(seen, teacher_weights(teacher, 23, coords), 0.0)
    exact = _exact_relu_loss(law, predictor, feature_map, weights) + float(np.sum(law.covariance(coords[~seen])))

    reduced_values, plain_errors, reduced_errors = [], [], []
    for seed in range(40):
        test = nl.draw_test_set(law, teacher, 1000, np.random.default_rng(200 + seed), 23)
        plain, reduced = _losses(feature_map, predictor, law, teacher, training, test)
        reduced_values.append(reduced.value)
        plain_errors.append(plain.standard_error)
        reduced_errors.append(reduced.standard_error)
    reduced_values = np.array(reduced_values)
    standard_error = reduced_values.std(ddof=1) / math.sqrt(reduced_values.size)
    assert abs(reduced_values.mean() - exact) < 3 * standard_error
    assert np.mean(reduced_errors) < np.mean(plain_errors)


def test_reduced_agrees_with_plain_at_infinite_m():
    # Over fresh training sets, teachers and test sets, the two estimators have the same mean:
    # the reduced one is a conditional expectation of the plain one.
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    differences = []
    for trial in range(30):
        training = draw_training_set(law, teacher, 60, np.random.default_rng(trial), 1000 + trial)
        feature_map, predictor = _relu_student(training, 20, 1e-3, feature_seed=trial)
        test = nl.draw_test_set(law, teacher, 2000, np.random.default_rng(500 + trial), 1000 + trial)
        plain, reduced = _losses(feature_map, predictor, law, teacher, training, test)
        assert reduced.n_integrated == test.single_rows.size > 0
        differences.append(plain.value - reduced.value)
    differences = np.array(differences)
    assert abs(differences.mean()) < 3 * differences.std(ddof=1) / math.sqrt(differences.size)


# ---- the interpolation threshold ----------------------------------------------------------


def _numerical_feature_rank(training, activation, bias, n_features):
    feature_map = nl.FeatureMap(activation, 9, n_features, bias)
    features = feature_map.transform(training.batch) / math.sqrt(n_features)
    return solve_ridge(features, training.labels, 0.0).rank


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_predicted_feature_rank_matches_svd(activation):
    # Reference: the numerical rank of the training features at N = 2D from their SVD.
    bias = 0.0
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    training = draw_training_set(law, teacher, 150, np.random.default_rng(7), 3)
    rank = _numerical_feature_rank(training, activation, bias, 300)
    assert nl.predicted_feature_rank(training.batch, activation, bias) == rank
    if activation == "relu":
        # Half of all inputs have coordinate 1 alone (prod_{i>=2} (1 - i^-2) = 1/2), so the rank
        # sits near D/2, far from D = 150.
        assert 60 < rank < 100


@pytest.mark.parametrize("activation, bias", [("tanh", 0.0), ("relu", 0.5)])
def test_feature_rank_is_below_exact_arithmetic_bound(activation, bias):
    # act(v z + b) over the many amplitudes v of one coordinate is, to rounding, spanned by a few
    # vectors. For tanh it is nearly a low-degree odd polynomial in v z. So the numerical rank lies
    # above the count of rows with two or more active coordinates and below the exact-arithmetic
    # prediction, which counts every non-zero row.
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    training = draw_training_set(law, teacher, 150, np.random.default_rng(7), 3)
    rank = _numerical_feature_rank(training, activation, bias, 300)
    active = np.diff(training.batch.matrix.tocsr().indptr)
    assert nl.predicted_feature_rank(training.batch, activation, bias) == np.count_nonzero(active) == 150
    assert np.count_nonzero(active >= 2) < rank < 150
