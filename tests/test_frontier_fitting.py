"""Robust fits of the additive law and IsoFLOP parabolas, on synthetic losses from a known law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsescale_cli import fitting
from sparsescale_cli.model.frontier import AdditiveLaw

TRUE_LAW = AdditiveLaw(0.1, 2.5, 1.0, 0.9, 0.5)


def _grid(count: int = 6) -> tuple[np.ndarray, np.ndarray]:
    n_features, n_samples = np.meshgrid(np.geomspace(10, 3000, count), np.geomspace(100, 1e6, count))
    return n_features.ravel(), n_samples.ravel()


def test_fit_recovers_exact_law():
    n_features, n_samples = _grid()
    fit = fitting.fit_additive_law(n_features, n_samples, TRUE_LAW.loss(n_features, n_samples))
    assert fit.converged, fit.message
    assert fit.law.feature_exponent == pytest.approx(1.0, abs=1e-4)
    assert fit.law.data_exponent == pytest.approx(0.5, abs=1e-4)
    assert fit.law.floor == pytest.approx(0.1, rel=1e-3)
    assert fit.law.feature_prefactor == pytest.approx(2.5, rel=1e-3)
    assert fit.law.data_prefactor == pytest.approx(0.9, rel=1e-3)


def test_fit_with_known_floor_keeps_it():
    n_features, n_samples = _grid()
    fit = fitting.fit_additive_law(n_features, n_samples, TRUE_LAW.loss(n_features, n_samples), floor=0.1)
    assert fit.law.floor == 0.1
    assert fit.law.data_exponent == pytest.approx(0.5, abs=1e-4)


def test_fit_resists_one_outlier():
    # Huber loss in log space: one row at three times its value moves the exponents little.
    n_features, n_samples = _grid()
    losses = TRUE_LAW.loss(n_features, n_samples)
    losses[7] *= 3.0
    fit = fitting.fit_additive_law(n_features, n_samples, losses)
    assert fit.law.feature_exponent == pytest.approx(1.0, abs=0.02)
    assert fit.law.data_exponent == pytest.approx(0.5, abs=0.02)


def test_fit_reports_undetermined_term():
    # Losses that do not depend on D leave the data term at a bound, and the status reports it.
    n_features, n_samples = _grid()
    losses = 0.1 + 2.5 * n_features**-1.0
    fit = fitting.fit_additive_law(n_features, n_samples, losses)
    assert fit.at_bound, fit.status()
    assert "at a bound" in fit.status()


def test_bootstrap_intervals_cover_true_exponents():
    # Coverage over repeated noisy draws with the fixed seeds 0..29. Each draw has 16
    # replicates with 5% log-normal noise at each of 36 points, and the percentile
    # intervals must contain each true exponent in at least 90% of the draws.
    n_features, n_samples = _grid()
    draws = 30
    covered = np.zeros(3)
    truth = (1.0, 0.5, 1 / 3)
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        rows = TRUE_LAW.loss(n_features, n_samples) * np.exp(0.05 * rng.standard_normal((16, n_features.size)))
        result = fitting.bootstrap_additive_law(n_features, n_samples, rows, n_resamples=100, seed=seed)
        intervals = (
            result.interval(lambda law: law.feature_exponent),
            result.interval(lambda law: law.data_exponent),
            result.interval(lambda law: law.frontier_exponents()[0]),
        )
        covered += [low <= value <= high for (low, high), value in zip(intervals, truth)]
    coverage = covered / draws
    assert coverage[0] >= 0.9, f"a_N coverage {coverage[0]:.2f}"
    assert coverage[1] >= 0.9, f"a_D coverage {coverage[1]:.2f}"
    assert coverage[2] >= 0.9, f"N*(C) exponent coverage {coverage[2]:.2f}"


def test_bootstrap_resamples_points_without_replicates():
    n_features, n_samples = _grid()
    rng = np.random.default_rng(5)
    losses = TRUE_LAW.loss(n_features, n_samples) * np.exp(0.02 * rng.standard_normal(n_features.size))
    result = fitting.bootstrap_additive_law(n_features, n_samples, losses[None, :], n_resamples=60, seed=1)
    assert result.unit == "points"
    low, high = result.interval(lambda law: law.data_exponent)
    assert low < 0.5 < high
    assert high - low < 0.2


def test_parabola_vertex_of_exact_parabola():
    u = np.linspace(0, 4, 7)
    fit = fitting.parabola_vertex(u, 2.0 + 0.5 * (u - 1.7) ** 2)
    assert fit.log_vertex == pytest.approx(1.7, abs=1e-10)
    assert fit.log_loss_at_vertex == pytest.approx(2.0, abs=1e-10)
    assert fit.interior


def test_parabola_opening_downwards_is_not_a_minimum():
    u = np.linspace(0, 4, 7)
    assert not fitting.parabola_vertex(u, -(u - 2.0) ** 2).interior


def test_contour_minimum_near_additive_optimum():
    # The contour is not a parabola in log N, so the vertex is biased by its asymmetry:
    # within 10% of the law's closed-form optimum for a window of a factor 3.
    compute = 1e8
    n_features = TRUE_LAW.optimum(compute).n_features * np.geomspace(1 / 8, 8, 13)
    losses = TRUE_LAW.loss(n_features, compute / n_features)
    fit = fitting.contour_minimum(n_features, losses, window=3.0)
    assert math.exp(fit.log_vertex) == pytest.approx(TRUE_LAW.optimum(compute).n_features, rel=0.10)


def test_parabola_optima_give_exact_exponent_without_floor():
    # With E = 0 every contour has the same shape in log N, so the vertex bias is one
    # constant factor and the slope of log N* against log C is exactly a_D/(a_N + a_D).
    law = AdditiveLaw(0.0, 2.5, 1.0, 0.9, 0.5)
    budgets = np.geomspace(1e6, 1e10, 5)
    optima = []
    for compute in budgets:
        n_features = law.optimum(compute).n_features * np.geomspace(1 / 8, 8, 13)
        fit = fitting.contour_minimum(n_features, law.loss(n_features, compute / n_features), window=3.0)
        optima.append(math.exp(fit.log_vertex))
    slope, _ = fitting.log_log_slope(budgets, np.array(optima))
    assert slope == pytest.approx(1 / 3, abs=1e-6)


def test_huber_is_quadratic_then_linear():
    values = fitting.huber(np.array([0.005, -0.005, 0.03, -0.03]), 0.01)
    assert values == pytest.approx([0.5 * 0.005**2, 0.5 * 0.005**2, 0.01 * 0.025, 0.01 * 0.025])
