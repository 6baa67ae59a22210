"""The rare-spike law for the instability of fixed-step gradient descent.

Loss convention as in :mod:`.gd`: L = (1/(2D)) ||Phi theta - y||^2, so a run
diverges exactly when lambda_max(H) > tau = 2 / eta, H = Phi^T Phi / D.

Spike model (a heuristic, checked against simulation). A rare coordinate i
seen once, with amplitude v, v^2 = g^2 E[x_i^2] / p_i and g ~ N(0, 1), adds
the rank-one term w w^T to H with w = v F_:,i / sqrt(D), and
||F_:,i||^2 is about sigma_F^2 N. Ignoring the rest of H, the spike crosses
tau when g^2 > a D p_i / lambda_i with a = tau / (sigma_F^2 N), and the
expected number of crossing occurrences is

    mu(D) = sum_i D p_i P(g^2 > a D p_i / lambda_i),    P(unstable) = 1 - exp(-mu).

Bulk correction. The rest of H, B (close to the population Hessian when D is
large), pushes the spike's eigenvalue up: the top eigenvalue l of B + w w^T
solves 1 = w^T (l - B)^-1 w, so the run diverges when
(v^2 / D) F_:,i^T (tau - B)^-1 F_:,i > 1. With F_:,i = sigma_F z and
B = sum_k beta_k b_k b_k^T this is g^2 W > a D p_i / lambda_i, where

    W = (1/N) sum_k z_k^2 tau / (tau - beta_k)     (E[W] = 1 + (1/N) sum_k beta_k / (tau - beta_k)),

so mu(D) = sum_i D p_i P(g^2 W > a D p_i / lambda_i). The plain spike model is W = 1.

Power law. With p_i = c i^-s and lambda_i = k i^-(1 + alpha) in the tail and
s > 1 + alpha, write kappa = s - 1 - alpha and b = (s - 1) / kappa. Replacing
the sum by an integral over i gives

    mu(D) ~ (c / (s - 1)) (2 k / (a c))^b Gamma(b + 1/2) / sqrt(pi) E[W^b] D^(-alpha / kappa),

from int_0^inf u^(b-1) P(g^2 W > u) du = E[(g^2 W)^b] / b and
E[g^(2b)] = 2^b Gamma(b + 1/2) / sqrt(pi). For s <= 1 + alpha the loud
coordinates are the frequent ones, seen many times, where the spike model
does not apply; its mu(D) falls faster than any power of D.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import integrate, special

from .laws import TIED, DataLaw, smooth_sum

_GAIN_SAMPLES = 4096
_GAIN_SEED = 20260523
_EXPLICIT_CAP = 2.0**22


def spike_threshold(eta: float, scale: float, n_features: int) -> float:
    """Return a = tau / (sigma_F^2 N) with tau = 2 / eta, the spike threshold in units of v^2 / D."""
    return 2.0 / (eta * scale**2 * n_features)


def instability_exponent(law: DataLaw) -> float:
    """Return the exponent -alpha / (s - 1 - alpha) of P(unstable) in D (asymptote), nan if s <= 1 + alpha."""
    kappa = law.s - 1.0 - law.effective_alpha
    if kappa <= 0:
        return math.nan
    return -law.effective_alpha / kappa


@dataclass(frozen=True)
class SpikeGain:
    """Distribution of the bulk factor W of the spike model, as a fixed sample.

    ``samples`` of W; a single value 1.0 is the plain spike model.
    ``stable_bulk`` is False when the bulk alone has an eigenvalue at or above
    tau, so that every run diverges.
    """

    samples: np.ndarray
    stable_bulk: bool = True
    _table: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.samples.size > 1 and self.stable_bulk:
            object.__setattr__(self, "_table", _tail_table(self.samples))

    @classmethod
    def plain(cls) -> SpikeGain:
        return cls(np.ones(1))

    @classmethod
    def from_bulk(cls, bulk_eigenvalues: np.ndarray, tau: float, n_samples: int = _GAIN_SAMPLES) -> SpikeGain:
        """Sample W = (1/N) sum_k z_k^2 tau / (tau - beta_k) for the N eigenvalues beta_k of the bulk.

        The sample comes from a fixed seed, so the theory curve is the same on every call.
        """
        bulk_eigenvalues = np.asarray(bulk_eigenvalues, dtype=float)
        if bulk_eigenvalues.size and bulk_eigenvalues.max() >= tau:
            return cls(np.full(1, np.inf), stable_bulk=False)
        weights = tau / (tau - bulk_eigenvalues)
        rng = np.random.default_rng(_GAIN_SEED)
        squares = rng.chisquare(1, size=(n_samples, bulk_eigenvalues.size))
        return cls(squares @ weights / bulk_eigenvalues.size)

    def moment(self, power: float) -> float:
        """Return E[W^power]."""
        return float(np.mean(self.samples**power))

    def tail(self, u: np.ndarray) -> np.ndarray:
        """Return P(g^2 W > u) for g ~ N(0, 1) independent of W."""
        u = np.asarray(u, dtype=float)
        if self._table is None:
            return special.erfc(np.sqrt(u / (2 * self.samples[0])))
        return self._table(u)


def _tail_table(samples: np.ndarray):
    """Return P(g^2 W > u) as a function, interpolating log P on a log grid of u."""
    grid = np.geomspace(1e-12, 200.0 * samples.max(), 800)
    values = np.array([np.mean(special.erfc(np.sqrt(point / (2 * samples)))) for point in grid])
    log_values = np.log(np.maximum(values, 1e-300))
    log_grid = np.log(grid)

    def tail(u: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            result = np.exp(np.interp(np.log(u), log_grid, log_values, left=0.0, right=-np.inf))
        return np.where(u <= grid[0], 1.0, result)

    return tail


def instability_rate(law: DataLaw, n_samples: float, threshold: float, gain: SpikeGain | None = None) -> float:
    """Return mu(D), the expected number of spikes above the threshold (exact sum of the spike model).

    Parameters
    ----------
    law : DataLaw
    n_samples : float
        D.
    threshold : float
        a of :func:`spike_threshold`.
    gain : SpikeGain, optional
        Distribution of W; the plain spike model (W = 1) by default.
    """
    gain = gain or SpikeGain.plain()
    if not gain.stable_bulk:
        return math.inf

    def summand(i: np.ndarray) -> np.ndarray:
        return n_samples * law.activation_probability(i) * gain.tail(threshold * n_samples * _rarity(law, i))

    # The remainder integral is often below quad's absolute resolution; its roundoff warning is harmless there.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return smooth_sum(law, summand, _loud_coordinate(law, n_samples, threshold))


def _rarity(law: DataLaw, i: np.ndarray) -> np.ndarray:
    """Return p_i / E[x_i^2] = 1 / Var(v_i), through logarithms so that it stays finite for huge i."""
    i = np.asarray(i, dtype=float)
    if law.amplitude == TIED:
        return np.full(i.shape, law.amplitude_scale**-2)
    log_i = np.log(i)
    tail = math.log(law.c) - law.s * log_i < 0
    with np.errstate(invalid="ignore"):
        log_rarity = np.where(tail, math.log(law.c) - (law.s - 1.0 - law.alpha) * log_i, (1.0 + law.alpha) * log_i)
    return np.exp(log_rarity)


def _loud_coordinate(law: DataLaw, n_samples: float, threshold: float) -> float:
    """Return 20 times the coordinate where a D p_i / lambda_i falls to one (where the summand peaks)."""
    kappa = law.s - 1.0 - law.effective_alpha
    if kappa <= 0:
        return law.explicit_limit(int(n_samples))
    ratio = law.covariance_tail_prefactor() / law.c
    loud = (threshold * n_samples / ratio) ** (1.0 / kappa)
    return min(20 * loud, _EXPLICIT_CAP)


def instability_rate_asymptote(law: DataLaw, n_samples: float, threshold: float,
                               gain: SpikeGain | None = None) -> float:
    """Return the power law of mu(D) with its Gamma-function prefactor (asymptote; nan if s <= 1 + alpha)."""
    gain = gain or SpikeGain.plain()
    kappa = law.s - 1.0 - law.effective_alpha
    if kappa <= 0:
        return math.nan
    if not gain.stable_bulk:
        return math.inf
    power = (law.s - 1.0) / kappa
    k = law.covariance_tail_prefactor()
    prefactor = (law.c / (law.s - 1.0)) * (2 * k / (threshold * law.c)) ** power
    prefactor *= special.gamma(power + 0.5) / math.sqrt(math.pi) * gain.moment(power)
    return prefactor * n_samples ** (-law.effective_alpha / kappa)


def unstable_probability(rate: float) -> float:
    """Return P(unstable) = 1 - exp(-mu) for a Poisson number of crossing spikes."""
    return -math.expm1(-rate)
