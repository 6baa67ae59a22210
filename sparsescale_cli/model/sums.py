"""Sums over latent coordinates i = a, ..., b with b possibly infinite.

Every law of the model is a sum over coordinates of a smooth function of i.
The first terms are summed exactly. The remainder, where the summand varies
slowly on the scale of one coordinate, is evaluated by the Euler-Maclaurin
formula with the integral done by adaptive quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import integrate, special

# Terms summed exactly before the Euler-Maclaurin remainder takes over. From
# i >= 2**16 on, the first dropped term, f'''/720, is about 1e-16 of f for
# power-law summands (an estimate: f''' / f ~ i^-3).
EXPLICIT_TERMS = 2**16
_CHUNK = 2**20
_LOG_RANGE = 700.0


def power_sum(exponent: float, start: float, stop: float = math.inf) -> float:
    """Return sum_{i=start}^{stop} i^-exponent for integers start <= i <= stop.

    Parameters
    ----------
    exponent : float
        The power x in i^-x. Must exceed 1 when ``stop`` is infinite.
    start, stop : float
        First and last coordinate, inclusive; ``stop`` may be ``math.inf``.
    """
    start = float(math.ceil(start))
    if stop < start:
        return 0.0
    if math.isinf(stop):
        if exponent <= 1:
            raise ValueError(f"sum of i^-{exponent} to infinity diverges (exponent must exceed 1)")
        return float(special.zeta(exponent, start))
    stop = float(math.floor(stop))
    if stop - start < EXPLICIT_TERMS:
        i = np.arange(start, stop + 1.0)
        return float(np.sum(i**-exponent))
    if exponent > 1:
        return float(special.zeta(exponent, start) - special.zeta(exponent, stop + 1.0))
    return lattice_sum(lambda t: t**-exponent, start, stop)


def lattice_sum(
    summand: Callable[[np.ndarray], np.ndarray],
    start: float,
    stop: float = math.inf,
    explicit_until: float | None = None,
) -> float:
    """Return sum_{i=start}^{stop} f(i) for a smooth, eventually slowly varying f.

    Parameters
    ----------
    summand : callable
        Vectorized f, evaluated at float arguments (also non-integer ones,
        for the quadrature and the derivative).
    start, stop : float
        Inclusive integer bounds; ``stop`` may be ``math.inf`` (f must then be
        integrable at infinity).
    explicit_until : float, optional
        Sum exactly up to this coordinate (at least ``start + 2**16``). Pass
        the point beyond which f no longer has fast features, for example
        the coordinate where D p_i falls below one in a factor (1 - p_i)^D.

    Notes
    -----
    Euler-Maclaurin with two correction terms,
    sum_{i=A}^{B} f(i) = int_A^B f + (f(A) + f(B)) / 2 + (f'(B) - f'(A)) / 12,
    is applied from A = ``explicit_until`` + 1 on. The integral is taken over
    log t, where power laws become exponentials that quadrature handles well.
    """
    start = float(math.ceil(start))
    if stop < start:
        return 0.0
    last_explicit = start + EXPLICIT_TERMS - 1
    if explicit_until is not None:
        last_explicit = max(last_explicit, float(math.floor(explicit_until)))
    last_explicit = min(last_explicit, stop)

    total = 0.0
    low = start
    while low <= last_explicit:
        high = min(low + _CHUNK - 1, last_explicit)
        total += float(np.sum(summand(np.arange(low, high + 1.0))))
        low = high + 1
    if last_explicit >= stop:
        return total

    a = last_explicit + 1.0
    return total + _euler_maclaurin_remainder(summand, a, stop)


def _euler_maclaurin_remainder(summand, a: float, b: float) -> float:
    def f(t: float) -> float:
        return float(summand(np.array([t]))[0])

    def derivative(t: float) -> float:
        h = 1e-3 * t
        return (f(t + h) - f(t - h)) / (2 * h)

    # NOTE: the integral stops at x = a e^700 (float range). For f ~ x^-(1+e) the part left out is
    # e^(-700 e) of the whole: below 1e-15 for e >= 0.05, but visible for flatter summands.
    upper = _LOG_RANGE if math.isinf(b) else math.log(b / a)
    integral, _ = integrate.quad(
        lambda u: f(a * math.exp(u)) * a * math.exp(u), 0.0, upper, epsabs=0.0, epsrel=1e-12, limit=500
    )
    correction = f(a) / 2 - derivative(a) / 12
    if not math.isinf(b):
        correction += f(b) / 2 + derivative(b) / 12
    return integral + correction
