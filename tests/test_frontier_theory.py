"""The closed-form frontier of the additive law and the constants the model implies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from sparsescale_cli.model import theory
from sparsescale_cli.model.frontier import AdditiveLaw, cost_multiplier, dense_counterpart, theory_law
from sparsescale_cli.model.laws import DataLaw, Teacher

SPARSE = DataLaw(alpha=1.0, s=2.0)
TEACHER = Teacher()


def test_optimum_matches_numerical_minimum_on_contour():
    # Independent check: minimize L(N, C/N) over log N numerically.
    law = AdditiveLaw(0.3, 4.0, 0.7, 2.0, 0.4)
    for compute in (1e4, 1e8, 1e12):
        result = optimize.minimize_scalar(lambda u: law.loss(math.exp(u), compute / math.exp(u)),
                                          bounds=(0.0, math.log(compute)), method="bounded",
                                          options={"xatol": 1e-10})
        optimum = law.optimum(compute)
        assert optimum.n_features == pytest.approx(math.exp(result.x), rel=1e-4)
        assert optimum.n_samples == pytest.approx(compute / math.exp(result.x), rel=1e-4)
        assert optimum.loss == pytest.approx(result.fun, rel=1e-9)


def test_sparse_frontier_exponents():
    # a_N = alpha = 1 and a_D = alpha/s = 1/2 give a_D/(a_N+a_D) = 1/3.
    n_exponent, d_exponent = theory_law(SPARSE, TEACHER).frontier_exponents()
    assert n_exponent == pytest.approx(1 / 3)
    assert d_exponent == pytest.approx(2 / 3)


def test_dense_frontier_is_symmetric():
    dense = theory_law(dense_counterpart(SPARSE), TEACHER)
    assert dense.frontier_exponents() == pytest.approx((0.5, 0.5))
    assert dense.optimum(1e10).n_features == pytest.approx(1e5, rel=1e-12)


def test_sparse_optimum_closed_form():
    # By hand for alpha = 1, s = 2, c = 1: A = (pi/2)^2, B = Gamma(1/2)/2, so
    # N*^(3/2) = (A / (B/2)) C^(1/2) = pi^(3/2) C^(1/2) and N* = pi C^(1/3).
    law = theory_law(SPARSE, TEACHER)
    assert law.feature_prefactor == pytest.approx(math.pi**2 / 4, rel=1e-12)
    assert law.data_prefactor == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-12)
    for compute in (1e6, 1e9):
        assert law.optimum(compute).n_features == pytest.approx(math.pi * compute ** (1 / 3), rel=1e-10)


def test_optimum_sits_about_pi_times_seen_count():
    # K(D) ~ Gamma(1/2) D^(1/2), so N*/K(D*) -> pi; the exact K(D) is within 1% at C = 1e9.
    law = theory_law(SPARSE, TEACHER)
    optimum = law.optimum(1e9)
    assert optimum.n_features / theory.seen_count(SPARSE, optimum.n_samples) == pytest.approx(math.pi, rel=0.01)


def test_prefactors_match_exact_sums_at_large_sizes():
    # A from the deterministic equivalent, B from the unseen mass: both exact sums converge to them.
    law = theory_law(SPARSE, TEACHER)
    n_features, n_samples = 1e4, 1e6
    de_loss = theory.deterministic_equivalent(SPARSE, TEACHER, n_features)[1]
    assert de_loss / (law.feature_prefactor * n_features**-1.0) == pytest.approx(1.0, rel=0.01)
    unseen = theory.unseen_mass(SPARSE, TEACHER, n_samples)
    assert unseen / (law.data_prefactor * n_samples**-0.5) == pytest.approx(1.0, rel=0.01)


def test_noise_sets_the_floor():
    law = theory_law(SPARSE, Teacher(noise=0.2))
    assert law.floor == pytest.approx(0.04)
    assert law.optimum(1e9).loss - 0.04 == pytest.approx(theory_law(SPARSE, TEACHER).optimum(1e9).loss)


def test_cost_models_rescale_the_budget():
    # C = 6 N D: the optimum at C is the N D-optimum at C/6, so N* shrinks by 6^(-1/3).
    law = theory_law(SPARSE, TEACHER)
    assert law.optimum(6e9, cost_multiplier("6nd")).n_features == pytest.approx(law.optimum(1e9).n_features)
    assert law.optimum(1e12, cost_multiplier("nd-steps", 1000)).n_samples == pytest.approx(
        law.optimum(1e9).n_samples)
    with pytest.raises(ValueError, match="steps"):
        cost_multiplier("nd-steps")


def test_theory_rejects_intermediate_sparsity():
    with pytest.raises(ValueError, match="s = 0"):
        theory_law(DataLaw(alpha=1.0, s=0.5, M=1000), TEACHER)


def test_loss_is_elementwise():
    law = AdditiveLaw(0.1, 1.0, 1.0, 1.0, 0.5)
    values = law.loss(np.array([1.0, 10.0]), np.array([4.0, 100.0]))
    assert values == pytest.approx([0.1 + 1.0 + 0.5, 0.1 + 0.1 + 0.1])
