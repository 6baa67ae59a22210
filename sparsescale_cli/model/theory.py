"""Closed forms and asymptotes of the sparse random-feature model.

Notation: E[x_i^2] = k i^-(1 + a) beyond the head (a = alpha, k = 1 for the
variance-preserving law; a = s - 1, k = sigma_v^2 c for the tied law),
E[w_i^2] = i^-beta, p_i = min(1, c i^-s). Each function states whether it is
exact (an expectation evaluated to quadrature accuracy), an asymptote
(leading order as D or N grows), or a heuristic (our conjecture, checked
against simulation rather than derived).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import optimize, special

from .laws import DataLaw, Teacher, smooth_sum


def _unseen_probability(law: DataLaw, i: np.ndarray, n_samples: float) -> np.ndarray:
    """Return (1 - p_i)^D, zero in the head where p_i = 1."""
    p = law.activation_probability(i)
    with np.errstate(divide="ignore"):
        return np.exp(n_samples * np.log1p(-p))


def unseen_mass(law: DataLaw, teacher: Teacher, n_samples: float) -> float:
    """Return the expected unseen mass U(D) (exact).

    Notes
    -----
    U(D) = sum_i E[x_i^2] E[w_i^2] (1 - p_i)^D: the expected loss share of
    coordinates that are active in none of the D training inputs, for which
    training carries no information about w*_i.
    """
    def summand(i):
        return law.covariance(i) * i**-teacher.beta * _unseen_probability(law, i, n_samples)

    return smooth_sum(law, summand, 20 * law.explicit_limit(int(n_samples)))


def unseen_mass_asymptote(law: DataLaw, teacher: Teacher, n_samples: float) -> float:
    """Return the leading-order U(D) for large D (asymptote; s > 1 only).

    Notes
    -----
    U(D) ~ (k / s) Gamma((a + beta) / s) (c D)^(-(a + beta) / s), from the
    integral of k x^-(1+a+beta) exp(-c D x^-s) over x. The Good-Turing
    missing mass of a Zipf law has the same form. Returns nan for s <= 1,
    where a finite M decides the behaviour.
    """
    if law.s <= 1:
        return math.nan
    exponent = (law.effective_alpha + teacher.beta) / law.s
    prefactor = law.covariance_tail_prefactor() / law.s * special.gamma(exponent)
    return prefactor * (law.c * n_samples) ** -exponent


def seen_count(law: DataLaw, n_samples: float) -> float:
    """Return K(D), the expected number of distinct coordinates seen in D inputs (exact).

    Notes
    -----
    K(D) = sum_i 1 - (1 - p_i)^D.
    """
    def summand(i):
        p = law.activation_probability(i)
        with np.errstate(divide="ignore"):
            return -np.expm1(n_samples * np.log1p(-p))

    return smooth_sum(law, summand, 20 * law.explicit_limit(int(n_samples)))


def seen_count_asymptote(law: DataLaw, n_samples: float) -> float:
    """Return the leading-order K(D) = Gamma(1 - 1/s) (c D)^(1/s) (asymptote; s > 1 only).

    The exact sum lies 1/2 below this for large D: the asymptote is the
    integral from 0, and the Euler-Maclaurin endpoint term at i = 0 is 1/2.
    """
    if law.s <= 1:
        return math.nan
    return special.gamma(1.0 - 1.0 / law.s) * (law.c * n_samples) ** (1.0 / law.s)


@functools.lru_cache(maxsize=4096)
def deterministic_equivalent(law: DataLaw, teacher: Teacher, n_features: float) -> tuple[float, float]:
    """Return (kappa, L_DE(N)) for the linear random-feature student at D = inf.

    Notes
    -----
    kappa solves N = sum_i lambda_i / (lambda_i + kappa), and
    L_DE(N) = sum_i lambda_i E[w_i^2] kappa / (lambda_i + kappa) + sigma^2,
    with lambda_i = E[x_i^2] (the standard deterministic equivalent of a
    Gaussian random projection; it depends on the inputs only through
    their covariance). With E[w_i^2] = 1 this is N kappa + sigma^2.
    For N >= M the projection is complete: kappa = 0 and L = sigma^2.
    """
    if n_features >= law.M:
        return 0.0, teacher.noise**2

    def degrees_of_freedom(kappa: float) -> float:
        def summand(i):
            lam = law.covariance(i)
            return lam / (lam + kappa)

        return smooth_sum(law, summand, _crossover(law, kappa))

    def excess(log_kappa: float) -> float:
        return degrees_of_freedom(math.exp(log_kappa)) - n_features

    low, high = _kappa_bracket(law, n_features, excess)
    log_kappa = optimize.brentq(excess, low, high, xtol=1e-12, rtol=1e-12)
    kappa = math.exp(log_kappa)

    def loss_summand(i):
        lam = law.covariance(i)
        return lam * i**-teacher.beta * kappa / (lam + kappa)

    loss = smooth_sum(law, loss_summand, _crossover(law, kappa))
    return kappa, loss + teacher.noise**2


def _kappa_bracket(law: DataLaw, n_features: float, excess) -> tuple[float, float]:
    """Return log-kappa bounds around the root, starting from the power-law guess."""
    a = max(law.effective_alpha, 0.05)
    guess = math.log(law.covariance_tail_prefactor()) - (1 + a) * math.log(max(n_features, 1e-3))
    low, high = guess - 3.0, guess + 3.0
    # Degrees of freedom fall as kappa grows: excess(low) must be positive, excess(high) negative.
    while excess(low) < 0 and low > -690:
        low -= 6.0
    while excess(high) > 0 and high < 690:
        high += 6.0
    return max(low, -690.0), min(high, 690.0)


def _crossover(law: DataLaw, kappa: float) -> float | None:
    """Return 20 times the coordinate where lambda_i falls to kappa (where the summand bends)."""
    if law.effective_alpha <= 0:
        return None
    crossover = (law.covariance_tail_prefactor() / max(kappa, 1e-300)) ** (1.0 / (1.0 + law.effective_alpha))
    return min(20 * crossover, 2.0**22)


def deterministic_equivalent_asymptote(law: DataLaw, teacher: Teacher, n_features: float) -> float:
    """Return the leading-order L_DE(N) - sigma^2 for large N (asymptote; M = inf, beta < 1).

    Notes
    -----
    With lambda_i = k i^-(1+a), N = C kappa'^(-1/(1+a)) with kappa' = kappa / k and
    C = pi / ((1 + a) sin(pi / (1 + a))), and
    L = k kappa'^((a + beta)/(1 + a)) pi / ((1 + a) sin(pi (1 - beta) / (1 + a))).
    For beta = 0 this is C^(1+a) N^-a.
    """
    if teacher.beta >= 1 or not math.isinf(law.M):
        return math.nan
    a = law.effective_alpha
    k = law.covariance_tail_prefactor()
    shape = math.pi / ((1 + a) * math.sin(math.pi / (1 + a)))
    kappa_scaled = (n_features / shape) ** -(1 + a)
    integral = math.pi / ((1 + a) * math.sin(math.pi * (1 - teacher.beta) / (1 + a)))
    return k * kappa_scaled ** ((a + teacher.beta) / (1 + a)) * integral


def exponents(law: DataLaw, teacher: Teacher) -> tuple[float, float]:
    """Return the asymptotic exponents (a_N, a_D) of L - sigma^2 in N and in D.

    Notes
    -----
    a_N = a + beta (for beta < 1), as in the dense model: the features see
    the whole covariance. a_D = (a + beta) / s for s > 1, set by the unseen
    mass U(D); for s <= 1 every coordinate is eventually seen often and the
    dense exponent a + beta applies. The gap a_N - a_D = (a + beta)(1 - 1/s).
    """
    a = law.effective_alpha + teacher.beta
    a_n = a if teacher.beta < 1 else 1.0 + law.effective_alpha
    a_d = a / law.s if law.s > 1 else a
    return a_n, a_d


def predicted_peak(law: DataLaw, n_samples: float) -> float:
    """Return the predicted interpolation peak: N = E[rank X] ~ K(D), at most D.

    Notes
    -----
    The ridgeless loss peaks where N equals the rank of the training inputs.
    K(D) counts distinct seen coordinates and is an upper bound on that rank:
    coordinates seen once in the same input are parallel and count once.
    """
    return min(seen_count(law, n_samples), float(n_samples))


def below_peak_curve(de_loss: np.ndarray, n_features: np.ndarray, rank: float, noise: float) -> np.ndarray:
    """Return the heuristic (L_DE(N) - sigma^2) r / (r - N) + sigma^2 for N < r (conjecture).

    Notes
    -----
    The classical variance inflation of least squares with N parameters and
    r effective samples; exact in expectation for Gaussian inputs with r = D.
    For sparse inputs it is our conjecture. nan for N >= r.
    """
    n_features = np.asarray(n_features, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = (np.asarray(de_loss) - noise**2) * rank / (rank - n_features) + noise**2
    return np.where(n_features < rank, curve, np.nan)


def above_peak_curve(limit_loss: float, n_features: np.ndarray, rank: float, noise: float) -> np.ndarray:
    """Return the heuristic (L(N = inf, D) - sigma^2) N / (N - r) + sigma^2 for N > r (conjecture).

    Notes
    -----
    ``limit_loss`` is L(N = inf, D), for example U(D) + sigma^2. nan for N <= r.
    """
    n_features = np.asarray(n_features, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = (limit_loss - noise**2) * n_features / (n_features - rank) + noise**2
    return np.where(n_features > rank, curve, np.nan)


def local_slope(values: np.ndarray, points: np.ndarray) -> float:
    """Return the least-squares slope of log(values) against log(points)."""
    x = np.log(np.asarray(points, dtype=float))
    y = np.log(np.asarray(values, dtype=float))
    return float(np.polyfit(x, y, 1)[0])


def isotropic_min_norm_risk(n_dimensions: int, n_samples: int, signal_sq: float, noise: float) -> float:
    """Return the expected excess risk of min-norm least squares, isotropic Gaussian inputs.

    Notes
    -----
    Hastie, Montanari, Rosset and Tibshirani (2019), finite-sample form for
    x ~ N(0, I_p), n samples, ||w||^2 = r^2, noise sigma^2:
    p < n - 1:  sigma^2 p / (n - p - 1);
    p > n + 1:  r^2 (1 - n/p) + sigma^2 n / (p - n - 1).
    As p/n -> gamma these tend to sigma^2 gamma/(1 - gamma) and
    r^2 (1 - 1/gamma) + sigma^2/(gamma - 1): a peak at gamma = 1.
    """
    p, n = n_dimensions, n_samples
    if p < n - 1:
        return noise**2 * p / (n - p - 1)
    if p > n + 1:
        return signal_sq * (1 - n / p) + noise**2 * n / (p - n - 1)
    return math.inf
