"""Closed forms of the theory module against independent computations."""

import math

import numpy as np
import pytest
from scipy import special

from sparsescale_cli.model import theory
from sparsescale_cli.model.laws import DataLaw, Teacher, c_for_mean_active


def test_unseen_mass_exact_sum_matches_direct_sum_at_finite_M():
    law, teacher = DataLaw(alpha=0.7, s=1.5, c=2.0, M=20_000), Teacher(beta=0.4)
    i = np.arange(1, 20_001, dtype=float)
    p = np.minimum(1, 2.0 * i**-1.5)
    direct = np.sum(i**-1.7 * i**-0.4 * (1 - p) ** 300)
    assert theory.unseen_mass(law, teacher, 300) == pytest.approx(direct, rel=1e-12)


def test_unseen_mass_approaches_gamma_asymptote():
    # (1/s) Gamma(alpha/s) (cD)^(-alpha/s), the Good-Turing missing mass of a Zipf law.
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    errors = [abs(theory.unseen_mass(law, teacher, d) / theory.unseen_mass_asymptote(law, teacher, d) - 1)
              for d in (1e2, 1e4, 1e6)]
    assert errors[1] < 4e-3
    assert errors[0] > errors[1] > errors[2]
    assert theory.unseen_mass_asymptote(law, teacher, 1e4) == pytest.approx(0.5 * math.sqrt(math.pi) / 100)


def test_seen_count_approaches_gamma_asymptote():
    # Gamma(1 - 1/s) (cD)^(1/s) is the integral from 0; the sum from i = 1 lies 1/2 below it
    # (the Euler-Maclaurin endpoint term f(0)/2 with f(0) = 1).
    law = DataLaw(alpha=1.0, s=3.0, c=2.0)
    exact = theory.seen_count(law, 1e6)
    assert theory.seen_count_asymptote(law, 1e6) == pytest.approx(special.gamma(2 / 3) * (2e6) ** (1 / 3))
    assert exact - theory.seen_count_asymptote(law, 1e6) == pytest.approx(-0.5, abs=1e-3)


def test_seen_count_matches_direct_sum_at_finite_M():
    law = DataLaw(alpha=1.0, s=0.8, c=0.5, M=50_000)
    i = np.arange(1, 50_001, dtype=float)
    direct = np.sum(1 - (1 - np.minimum(1, 0.5 * i**-0.8)) ** 1000)
    assert theory.seen_count(law, 1000) == pytest.approx(direct, rel=1e-12)


def test_deterministic_equivalent_isotropic_closed_form():
    # Tied amplitudes with s = 0 give isotropic inputs: N = M/(1 + kappa), L = M kappa/(1 + kappa).
    law = DataLaw(alpha=1.0, s=0.0, c=1.0, M=400, amplitude="tied")
    kappa, loss = theory.deterministic_equivalent(law, Teacher(noise=0.5), 100)
    assert kappa == pytest.approx(3.0, rel=1e-9)
    assert loss == pytest.approx(400 * 0.75 + 0.25, rel=1e-9)


def test_deterministic_equivalent_is_n_kappa_for_infinite_M():
    law = DataLaw(alpha=0.5, s=2.0)
    kappa, loss = theory.deterministic_equivalent(law, Teacher(), 37)
    assert loss == pytest.approx(37 * kappa, rel=1e-9)


def test_deterministic_equivalent_approaches_power_law():
    # C^(1+alpha) N^-alpha with C = pi / ((1+alpha) sin(pi/(1+alpha))); the relative gap shrinks like 1/N.
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    gaps = [theory.deterministic_equivalent(law, teacher, n)[1] / theory.deterministic_equivalent_asymptote(law, teacher, n) - 1
            for n in (16, 256, 4096)]
    assert abs(gaps[2]) < 1e-3
    assert abs(gaps[0]) > abs(gaps[1]) > abs(gaps[2])
    assert theory.deterministic_equivalent_asymptote(law, teacher, 100) == pytest.approx((math.pi / 2) ** 2 / 100)


def test_exponents_for_sparse_and_dense_models():
    assert theory.exponents(DataLaw(alpha=1.0, s=2.0), Teacher()) == (1.0, 0.5)
    assert theory.exponents(DataLaw(alpha=1.0, s=0.0, M=1000), Teacher()) == (1.0, 1.0)
    assert theory.exponents(DataLaw(alpha=0.5, s=3.0, c=2.0), Teacher()) == pytest.approx((0.5, 1 / 6))


def test_mean_active_prefactor_round_trip():
    c = c_for_mean_active(5.0, 2.0, math.inf)
    assert DataLaw(alpha=1.0, s=2.0, c=c).mean_active() == pytest.approx(5.0, rel=1e-10)


def test_isotropic_risk_peaks_at_ratio_one():
    risks = [theory.isotropic_min_norm_risk(p, 100, signal_sq=1.0, noise=0.5) for p in (50, 90, 98, 102, 110, 200)]
    assert risks[2] > risks[1] > risks[0]
    assert risks[3] > risks[4] > risks[5]
    assert math.isinf(theory.isotropic_min_norm_risk(100, 100, 1.0, 0.5))


def test_heuristic_curves_are_defined_on_their_side_only():
    n = np.array([10.0, 50.0, 100.0, 200.0])
    below = theory.below_peak_curve(np.full(4, 0.1), n, rank=100, noise=0.0)
    above = theory.above_peak_curve(0.02, n, rank=100, noise=0.0)
    assert below[0] == pytest.approx(0.1 * 100 / 90)
    assert np.isnan(below[2])
    assert np.isnan(below[3])
    assert above[3] == pytest.approx(0.04)
    assert np.isnan(above[0])
    assert np.isnan(above[2])
