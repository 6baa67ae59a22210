"""The by-coordinate sampler against the Bernoulli law it must reproduce exactly."""

import math

import numpy as np
import pytest
from scipy import stats

from sparsescale_cli.model import theory
from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.sampler import sample_batch

LAWS = {
    "finite M": DataLaw(alpha=1.0, s=1.5, c=2.0, M=5000),
    "infinite M": DataLaw(alpha=1.0, s=2.0, c=1.0),
    "infinite M, large c": DataLaw(alpha=0.5, s=3.0, c=8.0),
}


def _counts(law, n_samples, coords, replicates, seed):
    rng = np.random.default_rng(seed)
    counts = np.zeros((replicates, len(coords)), dtype=int)
    for row in range(replicates):
        batch = sample_batch(law, n_samples, rng)
        per_coordinate = dict(zip(batch.coords.tolist(), batch.counts().tolist()))
        counts[row] = [per_coordinate.get(float(i), 0) for i in coords]
    return counts


def _binomial_gof_pvalue(observed: np.ndarray, n_samples: int, p: float) -> float:
    """Chi-square goodness of fit of counts to Binomial(D, p), tail bins merged to expected >= 5."""
    support = np.arange(n_samples + 1)
    expected = stats.binom.pmf(support, n_samples, p) * observed.size
    histogram = np.bincount(observed, minlength=n_samples + 1).astype(float)
    bins_observed, bins_expected = [], []
    acc_o = acc_e = 0.0
    for o, e in zip(histogram, expected):
        acc_o += o
        acc_e += e
        if acc_e >= 5:
            bins_observed.append(acc_o)
            bins_expected.append(acc_e)
            acc_o = acc_e = 0.0
    bins_observed[-1] += acc_o
    bins_expected[-1] += acc_e
    if len(bins_observed) < 2:
        return 1.0
    return float(stats.chisquare(bins_observed, bins_expected).pvalue)


@pytest.mark.parametrize("name", list(LAWS))
def test_counts_per_coordinate_are_binomial(name):
    # Coordinates from the dense head, the explicit Poisson range and the far tail (D p_i < 1).
    law = LAWS[name]
    n_samples = 200
    limit = law.explicit_limit(n_samples)
    coords = [1, 2, 3, int(limit) // 2 + 1, int(limit), int(limit) + 1, 2 * int(limit) + 3, 10 * int(limit)]
    coords = sorted({c for c in coords if 1 <= c <= law.M})
    counts = _counts(law, n_samples, coords, replicates=3000, seed=11)
    p = law.activation_probability(np.array(coords, dtype=float))
    for column, (coordinate, probability) in enumerate(zip(coords, p)):
        pvalue = _binomial_gof_pvalue(counts[:, column], n_samples, probability)
        assert pvalue > 1e-4, f"coordinate {coordinate}: counts are not Binomial(D, {probability:.3g}), p = {pvalue:.2g}"


@pytest.mark.parametrize("name", list(LAWS))
def test_seen_coordinates_per_range_match_exact_expectation(name):
    # E[# seen in [a, b)] = sum_{a <= i < b} 1 - (1 - p_i)^D, including ranges far in the tail.
    law = LAWS[name]
    n_samples = 300
    edges = [1, 10, 100, 1000, 10_000, 100_000, math.inf]
    rng = np.random.default_rng(5)
    replicates = 1500
    observed = np.zeros((replicates, len(edges) - 1))
    for row in range(replicates):
        coords = sample_batch(law, n_samples, rng).coords
        observed[row] = np.histogram(coords, bins=np.array(edges[:-1] + [1e300]))[0]
    for k in range(len(edges) - 1):
        low, high = edges[k], min(edges[k + 1] - 1, law.M)
        if low > law.M:
            continue
        cut = DataLaw(law.alpha, law.s, law.c, float(high), law.amplitude)
        below = DataLaw(law.alpha, law.s, law.c, float(low - 1), law.amplitude) if low > 1 else None
        expected = theory.seen_count(cut, n_samples) - (theory.seen_count(below, n_samples) if below else 0.0)
        mean = observed[:, k].mean()
        sem = observed[:, k].std(ddof=1) / math.sqrt(replicates)
        tolerance = 4 * max(sem, 1 / replicates)
        assert abs(mean - expected) <= tolerance, f"range [{low}, {edges[k + 1]}): {mean:.4g} vs {expected:.4g}"


def test_unseen_mass_per_draw_averages_to_exact_sum():
    from sparsescale_cli.model.linear import unseen_sums

    law, teacher = LAWS["infinite M"], Teacher(beta=0.3)
    rng = np.random.default_rng(2)
    draws = [unseen_sums(law, teacher, sample_batch(law, 500, rng).coords, 500).weighted for _ in range(2000)]
    expected = theory.unseen_mass(law, teacher, 500)
    sem = np.std(draws, ddof=1) / math.sqrt(len(draws))
    assert abs(np.mean(draws) - expected) < 3 * sem


def test_batch_is_a_function_of_the_generator_state():
    law = LAWS["infinite M"]
    first = sample_batch(law, 1000, np.random.default_rng(42))
    second = sample_batch(law, 1000, np.random.default_rng(42))
    np.testing.assert_array_equal(first.coords, second.coords)
    np.testing.assert_array_equal(first.matrix.toarray(), second.matrix.toarray())


def test_amplitudes_preserve_variance():
    # E[x_i^2] = lambda_i for the variance-preserving law, p_i sigma_v^2 for the tied law.
    for amplitude, expected in (("variance_preserving", [1.0, 2**-2.0, 3**-2.0]),
                                ("tied", [1.0, 0.25 * 4.0, 4.0 / 9.0 * 4.0])):
        law = DataLaw(alpha=1.0, s=2.0, c=1.0, amplitude=amplitude, amplitude_scale=2.0)
        rng = np.random.default_rng(8)
        totals = np.zeros(3)
        n_samples, replicates = 4000, 40
        for _ in range(replicates):
            batch = sample_batch(law, n_samples, rng)
            dense = batch.matrix.toarray()
            for k, coordinate in enumerate((1.0, 2.0, 3.0)):
                column = np.searchsorted(batch.coords, coordinate)
                totals[k] += np.sum(dense[:, column] ** 2)
        measured = totals / (n_samples * replicates)
        if amplitude == "tied":
            expected = [4.0 * p for p in law.activation_probability(np.array([1.0, 2.0, 3.0]))]
        np.testing.assert_allclose(measured, expected, rtol=0.05)


def test_dense_model_activates_every_coordinate():
    law = DataLaw(alpha=1.0, s=0.0, c=1.0, M=50)
    batch = sample_batch(law, 30, np.random.default_rng(0))
    assert batch.n_seen == 50
    assert batch.matrix.nnz == 30 * 50


def test_cost_does_not_grow_with_M():
    # The explicit range ends where D p_i < 1, whatever M is.
    small, huge = DataLaw(alpha=1, s=2, M=10_000), DataLaw(alpha=1, s=2, M=2.0**52)
    assert small.explicit_limit(10_000) == huge.explicit_limit(10_000) == 100
