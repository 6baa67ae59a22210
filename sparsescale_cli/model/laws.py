"""The sparse data law and the linear teacher.

Latent coordinates are i = 1, 2, ..., M (M may be infinite). An input has
x_i = z_i v_i with z_i ~ Bernoulli(p_i) and a Gaussian amplitude v_i:

    lambda_i = i^-(1 + alpha)            spectrum
    p_i      = min(1, c i^-s)            activation probability
    v_i ~ N(0, lambda_i / p_i)           "variance_preserving": E[x_i^2] = lambda_i
    v_i ~ N(0, sigma_v^2)                "tied": E[x_i^2] = sigma_v^2 p_i

The teacher is y = w* . x + eps with w*_i ~ N(0, i^-beta), eps ~ N(0, sigma^2).
Coordinate indices are float64 throughout: exact integers up to 2^53, and
beyond that (reached only in the far tail at s close to 1) the nearest
representable value, which changes lambda_i and p_i by less than 1e-15.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .sums import lattice_sum, power_sum

VARIANCE_PRESERVING = "variance_preserving"
TIED = "tied"


@dataclass(frozen=True)
class DataLaw:
    """Distribution of sparse inputs over M latent coordinates.

    Parameters
    ----------
    alpha : float
        Spectral exponent, lambda_i = i^-(1 + alpha). Unused by the tied law.
    s : float
        Sparsity exponent of p_i = min(1, c i^-s); s = 0 with c >= 1 is dense.
    c : float
        Activation prefactor.
    M : float
        Number of latent coordinates, ``math.inf`` allowed when s > 1.
    amplitude : str
        ``"variance_preserving"`` or ``"tied"``.
    amplitude_scale : float
        sigma_v of the tied law.
    """

    alpha: float
    s: float
    c: float = 1.0
    M: float = math.inf
    amplitude: str = VARIANCE_PRESERVING
    amplitude_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        if not self.s >= 0:
            raise ValueError(f"s must be non-negative, got {self.s}")
        if not self.c > 0:
            raise ValueError(f"c must be positive, got {self.c}")
        if not self.M >= 1:
            raise ValueError(f"M must be at least 1, got {self.M}")
        if math.isinf(self.M) and self.s <= 1:
            raise ValueError(
                f"M = inf needs s > 1, got s = {self.s}: every input would have infinitely many "
                "active coordinates; set a finite M"
            )
        if self.amplitude not in (VARIANCE_PRESERVING, TIED):
            raise ValueError(f"amplitude must be '{VARIANCE_PRESERVING}' or '{TIED}', got {self.amplitude!r}")
        if not math.isinf(self.M) and self.M != math.floor(self.M):
            raise ValueError(f"M must be an integer or inf, got {self.M}")

    # ---- per-coordinate quantities -------------------------------------------------

    @property
    def head(self) -> float:
        """Number of leading coordinates with p_i = 1 (active in every input)."""
        if self.s == 0:
            return self.M if self.c >= 1 else 0.0
        return min(self.M, float(math.floor(self.c ** (1.0 / self.s) * (1 + 1e-15))))

    def activation_probability(self, i: np.ndarray) -> np.ndarray:
        """Return p_i = min(1, c i^-s)."""
        return np.minimum(1.0, self.c * np.asarray(i, dtype=float) ** -self.s)

    def spectrum(self, i: np.ndarray) -> np.ndarray:
        """Return lambda_i = i^-(1 + alpha), the variance-preserving spectrum."""
        return np.asarray(i, dtype=float) ** -(1.0 + self.alpha)

    def covariance(self, i: np.ndarray) -> np.ndarray:
        """Return E[x_i^2]: lambda_i, or sigma_v^2 p_i for the tied law."""
        if self.amplitude == TIED:
            return self.amplitude_scale**2 * self.activation_probability(i)
        return self.spectrum(i)

    def amplitude_variance(self, i: np.ndarray) -> np.ndarray:
        """Return Var(v_i) = E[x_i^2] / p_i."""
        if self.amplitude == TIED:
            return np.full(np.shape(i), self.amplitude_scale**2)
        return self.spectrum(i) / self.activation_probability(i)

    @property
    def effective_alpha(self) -> float:
        """Exponent a with E[x_i^2] ~ i^-(1 + a) in the tail (s - 1 for the tied law)."""
        if self.amplitude == TIED:
            return self.s - 1.0
        return self.alpha

    def covariance_tail_prefactor(self) -> float:
        """Prefactor k of E[x_i^2] = k i^-(1 + effective_alpha) for i beyond the head."""
        if self.amplitude == TIED:
            return self.amplitude_scale**2 * self.c
        return 1.0

    # ---- sums over coordinates -----------------------------------------------------

    def mean_active(self) -> float:
        """Return E[number of active coordinates per input] = sum_i p_i."""
        head = self.head
        if self.s == 0:
            return self.M * min(1.0, self.c)
        return head + self.c * power_sum(self.s, head + 1, self.M)

    def weighted_covariance_sum(self, beta: float, start: float = 1, stop: float | None = None) -> float:
        """Return sum_{i=start}^{stop} E[x_i^2] i^-beta (stop defaults to M)."""
        stop = self.M if stop is None else min(stop, self.M)
        start = float(math.ceil(start))
        if stop < start:
            return 0.0
        if self.amplitude == TIED:
            head = self.head
            total = 0.0
            if start <= head:
                total += self.amplitude_scale**2 * power_sum(beta, start, min(head, stop))
            low = max(start, head + 1)
            if low <= stop:
                total += self.amplitude_scale**2 * self.c * power_sum(self.s + beta, low, stop)
            return total
        return power_sum(1.0 + self.alpha + beta, start, stop)

    def poisson_rate_sum(self, start: float) -> float:
        """Return sum_{i>=start}^{M} -log(1 - p_i) for a start beyond the head.

        Uses -log(1 - p) = sum_k p^k / k, truncated when the next term is
        below 1e-17 of the first.
        """
        start = float(math.ceil(start))
        if start > self.M:
            return 0.0
        if start <= self.head:
            raise ValueError("poisson_rate_sum starts inside the head, where p_i = 1")
        first_p = self.c * start**-self.s
        total = 0.0
        k = 1
        while True:
            term = self.c**k / k * power_sum(k * self.s, start, self.M)
            total += term
            if first_p**k / k < 1e-17 * first_p or k > 200:
                break
            k += 1
        return total

    def explicit_limit(self, n_samples: int) -> float:
        """Return the last coordinate whose expected count D p_i is at least one (at most M)."""
        if self.s == 0:
            return self.M
        return min(self.M, max(self.head, float(math.floor((self.c * n_samples) ** (1.0 / self.s)))))


def c_for_mean_active(mean_active: float, s: float, M: float) -> float:
    """Return the prefactor c for which sum_i min(1, c i^-s) equals ``mean_active``."""
    if mean_active <= 0:
        raise ValueError(f"mean number of active coordinates must be positive, got {mean_active}")
    if not math.isinf(M) and mean_active > M:
        raise ValueError(f"mean number of active coordinates {mean_active} exceeds M = {M}")
    if s == 0:
        return mean_active / M

    def excess(log_c: float) -> float:
        law = DataLaw(alpha=1.0, s=s, c=math.exp(log_c), M=M)
        return law.mean_active() - mean_active

    low, high = -60.0, 1.0
    while excess(high) < 0:
        high += 5.0
        if high > 700:
            raise ValueError(f"no c gives {mean_active} active coordinates at s = {s}, M = {M}")
    return math.exp(optimize.brentq(excess, low, high, xtol=1e-14, rtol=1e-13))


@dataclass(frozen=True)
class Teacher:
    """Linear teacher y = w* . x + eps, with E[w_i^2] = i^-beta and noise sigma."""

    beta: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise ValueError(f"teacher beta must be non-negative, got {self.beta}")
        if not self.noise >= 0:
            raise ValueError(f"teacher noise must be non-negative, got {self.noise}")

    def weight_variance(self, i: np.ndarray) -> np.ndarray:
        """Return E[w_i^2] = i^-beta."""
        return np.asarray(i, dtype=float) ** -self.beta


def smooth_sum(law: DataLaw, summand, explicit_until: float | None = None) -> float:
    """Return sum_{i=1}^{M} summand(i), summing term by term at least up to ``explicit_until``."""
    return lattice_sum(summand, 1, law.M, explicit_until=explicit_until)
