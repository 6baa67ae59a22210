"""Lattice sums against direct summation and closed forms."""

import math

import numpy as np
import pytest
from scipy import special

from sparsescale_cli.model.sums import lattice_sum, power_sum


@pytest.mark.parametrize("exponent, start, stop", [(2.0, 1, 10), (1.5, 3, 200_000), (0.5, 1, 300_000), (1.0, 7, 150_000)])
def test_power_sum_matches_direct_sum(exponent, start, stop):
    direct = float(np.sum(np.arange(start, stop + 1, dtype=float) ** -exponent))
    assert power_sum(exponent, start, stop) == pytest.approx(direct, rel=1e-11)


def test_power_sum_to_infinity_is_hurwitz_zeta():
    # sum_{i>=1} i^-2 = pi^2 / 6 (Basel problem).
    assert power_sum(2.0, 1) == pytest.approx(math.pi**2 / 6, rel=1e-14)
    assert power_sum(3.0, 5) == pytest.approx(float(special.zeta(3.0, 5)), rel=1e-14)


def test_power_sum_to_infinity_rejects_divergent_exponent():
    with pytest.raises(ValueError, match="diverges"):
        power_sum(1.0, 1)


def test_lattice_sum_remainder_matches_direct_sum():
    # A summand with a bend far beyond the explicit range, so Euler-Maclaurin does real work.
    def summand(i):
        return i**-1.3 * np.exp(-1e4 / i)

    stop = 3_000_000
    direct = float(np.sum(summand(np.arange(1, stop + 1, dtype=float))))
    assert lattice_sum(summand, 1, stop) == pytest.approx(direct, rel=1e-10)


def test_lattice_sum_infinite_tail_matches_zeta():
    # sum_{i>=1} i^-1.1 = zeta(1.1): most of the mass lies far beyond the explicit terms.
    value = lattice_sum(lambda i: i**-1.1, 1)
    assert value == pytest.approx(float(special.zeta(1.1, 1)), rel=1e-9)
