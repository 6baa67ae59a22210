"""Robust fits of loss laws: the additive law L(N, D) and IsoFLOP parabolas.

The additive law L = E + A N^-a_N + B D^-a_D is fitted in log space: the
objective is sum_j huber_delta(log L_model(N_j, D_j) - log L_j), so a few
outlying rows pull little and every row counts by its relative error.

- Variable projection: for fixed exponents the model is linear in
  (E, A, B). Those are solved by non-negative least squares on relative
  residuals, (model - L)/L, the first-order form of the log residual,
  with Huber weights by iteratively reweighted least squares. What remains
  is a two-parameter problem in (a_N, a_D).
- A grid of starting exponents is scanned, and the best few are refined by
  Nelder-Mead on that profile. Then L-BFGS-B polishes all five parameters
  together on the exact objective, in float64.
- The optimizer's status is kept in the result (``converged``, ``message``,
  parameters at a bound) instead of being dropped.

Intervals are 95% percentile bootstrap intervals: resample the replicates
(rows of the loss table) with replacement, refit, and take the 2.5% and
97.5% quantiles of each derived quantity. With a single replicate the
points themselves are resampled.

The IsoFLOP method (Chinchilla approach 2; Hoffmann et al. 2022, "Training
Compute-Optimal Large Language Models") fits a parabola to log L against
log N along each fixed-compute contour and takes its vertex as N*(C).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from .model.frontier import AdditiveLaw

logger = logging.getLogger(__name__)

HUBER_DELTA = 1e-2
EXPONENT_BOUNDS = (1e-3, 10.0)
_START_EXPONENTS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5)
_REFINED_STARTS = 4


def huber(residuals: np.ndarray, delta: float) -> np.ndarray:
    """Return the Huber loss: r^2/2 for |r| <= delta, delta (|r| - delta/2) beyond."""
    magnitude = np.abs(residuals)
    return np.where(magnitude <= delta, 0.5 * residuals**2, delta * (magnitude - 0.5 * delta))


def _huber_derivative(residuals: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(residuals, -delta, delta)


@dataclass
class LawFit:
    """A fitted additive law with the optimizer's account of the fit.

    Attributes
    ----------
    law : AdditiveLaw
    objective : float
        Sum of Huber losses of the log residuals at the solution.
    converged : bool
        Whether the final L-BFGS-B polish reported success.
    message : str
        The optimizer's message.
    starts : int
        Starting exponent pairs refined before the polish.
    at_bound : list of str
        Parameters that ended on a bound (an exponent at its limit, or a
        prefactor at zero): the data did not determine them.
    """

    law: AdditiveLaw
    objective: float
    converged: bool
    message: str
    starts: int
    at_bound: list[str] = field(default_factory=list)

    def status(self) -> str:
        """Return a one-line account: converged or not, and parameters on a bound."""
        text = "converged" if self.converged else f"not converged ({self.message})"
        if self.at_bound:
            text += "; at a bound: " + ", ".join(self.at_bound)
        return text


class _Problem:
    """The data of one additive-law fit in the forms the objective needs."""

    def __init__(self, n_features, n_samples, losses, floor: float | None, delta: float):
        self.log_n = np.log(np.asarray(n_features, dtype=float))
        self.log_d = np.log(np.asarray(n_samples, dtype=float))
        self.losses = np.asarray(losses, dtype=float)
        self.log_losses = np.log(self.losses)
        self.floor = floor
        self.delta = delta
        # Prefactors are optimized in log space, so that A and B of any scale are equally easy.
        self.scale = float(np.median(self.losses))

    def model(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        floor, log_a, a_n, log_b, a_d = params
        feature_term = np.exp(log_a - a_n * self.log_n)
        data_term = np.exp(log_b - a_d * self.log_d)
        floor_value = self.floor if self.floor is not None else floor * self.scale
        return floor_value + feature_term + data_term, feature_term, data_term, floor_value

    def objective(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the Huber objective and its gradient in (E/scale, log A, a_N, log B, a_D)."""
        model, feature_term, data_term, _ = self.model(params)
        residuals = np.log(model) - self.log_losses
        weight = _huber_derivative(residuals, self.delta) / model
        gradient = np.array([
            0.0 if self.floor is not None else float(np.sum(weight)) * self.scale,
            float(np.sum(weight * feature_term)),
            float(-np.sum(weight * feature_term * self.log_n)),
            float(np.sum(weight * data_term)),
            float(-np.sum(weight * data_term * self.log_d)),
        ])
        return float(np.sum(huber(residuals, self.delta))), gradient

    def project(self, a_n: float, a_d: float) -> tuple[float, np.ndarray]:
        """Return the profile objective at (a_N, a_D) and the parameters that attain it.

        The linear coefficients come from non-negative least squares on the
        relative residuals, reweighted three times with Huber weights.
        """
        feature_basis = np.exp(-a_n * self.log_n)
        data_basis = np.exp(-a_d * self.log_d)
        columns = [feature_basis, data_basis]
        target = np.ones_like(self.losses)
        if self.floor is None:
            columns.insert(0, np.ones_like(self.losses))
        else:
            target = 1.0 - self.floor / self.losses
        basis = np.column_stack(columns) / self.losses[:, None]
        norms = np.linalg.norm(basis, axis=0)
        norms = np.where(norms > 0, norms, 1.0)
        weights = np.ones_like(self.losses)
        for _ in range(3):
            root = np.sqrt(weights)
            solution, _ = optimize.nnls(basis / norms * root[:, None], target * root)
            coefficients = solution / norms
            relative = basis @ coefficients - target
            weights = np.minimum(1.0, self.delta / np.maximum(np.abs(relative), 1e-300))

        if self.floor is None:
            floor, a, b = coefficients
        else:
            floor, (a, b) = 0.0, coefficients
        tiny = 1e-12 * self.scale
        params = np.array([floor / self.scale, math.log(max(a, tiny)), a_n, math.log(max(b, tiny)), a_d])
        return self.objective(params)[0], params


def fit_additive_law(
    n_features,
    n_samples,
    losses,
    floor: float | None = None,
    delta: float = HUBER_DELTA,
    start: AdditiveLaw | None = None,
) -> LawFit:
    """Fit L = E + A N^-a_N + B D^-a_D to rows (N_j, D_j, L_j) by a robust fit in log space.

    Parameters
    ----------
    n_features, n_samples, losses : array_like, shape (P,)
        Positive N, D and loss of each row.
    floor : float, optional
        E, held fixed when given (for example the known noise floor sigma^2);
        fitted with E >= 0 otherwise.
    delta : float
        Huber threshold on the log residual (0.01 is a 1% relative error).
    start : AdditiveLaw, optional
        Start the polish from this law alone, skipping the grid (used by the
        bootstrap, whose resamples stay close to the full fit).

    Returns
    -------
    LawFit
    """
    # The vectors here are short, and a multithreaded BLAS on a busy machine only adds waiting.
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_additive_law(n_features, n_samples, losses, floor, delta, start)


def _fit_additive_law(n_features, n_samples, losses, floor, delta, start) -> LawFit:
    problem = _Problem(n_features, n_samples, losses, floor, delta)
    lower, upper = EXPONENT_BOUNDS
    if start is not None:
        initial = [np.array([
            (start.floor if floor is None else 0.0) / problem.scale,
            math.log(max(start.feature_prefactor, 1e-300)), start.feature_exponent,
            math.log(max(start.data_prefactor, 1e-300)), start.data_exponent,
        ])]
    else:
        initial = _refined_starts(problem)

    best = None
    for params in initial:
        result = optimize.minimize(
            problem.objective, params, jac=True, method="L-BFGS-B",
            bounds=[(0.0, None), (None, None), (lower, upper), (None, None), (lower, upper)],
            options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-9},
        )
        if best is None or result.fun < best.fun:
            best = result
    _, _, _, floor_value = problem.model(best.x)
    _, log_a, a_n, log_b, a_d = best.x
    law = AdditiveLaw(float(floor_value), math.exp(log_a), float(a_n), math.exp(log_b), float(a_d))
    return LawFit(law, float(best.fun), bool(best.success), str(best.message), len(initial),
                  _parameters_at_bound(law, floor, problem.scale))


def _refined_starts(problem: _Problem) -> list[np.ndarray]:
    """Scan the exponent grid on the profile objective and refine the best pairs by Nelder-Mead."""
    lower, upper = EXPONENT_BOUNDS
    scanned = []
    for a_n in _START_EXPONENTS:
        for a_d in _START_EXPONENTS:
            value, params = problem.project(a_n, a_d)
            scanned.append((value, a_n, a_d))
    scanned.sort()

    def profile(log_exponents: np.ndarray) -> float:
        a_n, a_d = np.clip(np.exp(log_exponents), lower, upper)
        return problem.project(a_n, a_d)[0]

    refined = []
    for _, a_n, a_d in scanned[:_REFINED_STARTS]:
        result = optimize.minimize(profile, np.log([a_n, a_d]), method="Nelder-Mead",
                                   options={"xatol": 1e-6, "fatol": 1e-14, "maxiter": 600})
        a_n, a_d = np.clip(np.exp(result.x), lower, upper)
        refined.append(problem.project(a_n, a_d)[1])
    return refined


def _parameters_at_bound(law: AdditiveLaw, floor: float | None, scale: float) -> list[str]:
    lower, upper = EXPONENT_BOUNDS
    names = []
    for name, value in (("a_N", law.feature_exponent), ("a_D", law.data_exponent)):
        if value <= lower * (1 + 1e-6) or value >= upper * (1 - 1e-6):
            names.append(name)
    for name, value in (("A", law.feature_prefactor), ("B", law.data_prefactor)):
        if value <= 1e-9 * scale:
            names.append(name)
    if floor is None and law.floor <= 1e-12 * scale:
        names.append("E")
    return names


@dataclass
class BootstrapFit:
    """A fit on the full data and the laws refitted on resamples of it."""

    fit: LawFit
    resampled: list[AdditiveLaw]
    failed: int
    unit: str

    def interval(self, quantity) -> tuple[float, float]:
        """Return the 95% percentile interval of ``quantity(law)`` over the resampled laws."""
        values = np.array([quantity(law) for law in self.resampled], dtype=float)
        return percentile_interval(values)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """Return the 2.5% and 97.5% quantiles of the finite values (nan, nan when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_additive_law(
    n_features,
    n_samples,
    loss_rows,
    floor: float | None = None,
    delta: float = HUBER_DELTA,
    n_resamples: int = 200,
    seed: int = 0,
) -> BootstrapFit:
    """Fit the additive law to the mean over replicates and bootstrap it.

    Parameters
    ----------
    n_features, n_samples : array_like, shape (P,)
    loss_rows : array_like, shape (R, P)
        One row per replicate; nan marks a missing value. With R = 1 the
        bootstrap resamples the P points instead of replicates.
    n_resamples : int
    seed : int
        Seed of the resampling, so that intervals are reproducible.
    """
    n_features = np.asarray(n_features, dtype=float)
    n_samples = np.asarray(n_samples, dtype=float)
    loss_rows = np.atleast_2d(np.asarray(loss_rows, dtype=float))
    full = fit_additive_law(n_features, n_samples, _row_mean(loss_rows), floor, delta)
    rng = np.random.default_rng(seed)
    resampled: list[AdditiveLaw] = []
    failed = 0
    by_points = loss_rows.shape[0] == 1
    for _ in range(n_resamples):
        if by_points:
            chosen = rng.integers(0, n_features.size, n_features.size)
            sample = (n_features[chosen], n_samples[chosen], loss_rows[0, chosen])
        else:
            chosen = rng.integers(0, loss_rows.shape[0], loss_rows.shape[0])
            sample = (n_features, n_samples, _row_mean(loss_rows[chosen]))
        usable = np.isfinite(sample[2]) & (sample[2] > 0)
        if usable.sum() < 6:
            failed += 1
            continue
        fit = fit_additive_law(sample[0][usable], sample[1][usable], sample[2][usable], floor, delta, start=full.law)
        if not fit.converged:
            failed += 1
            continue
        resampled.append(fit.law)
    if failed:
        logger.debug("%d of %d bootstrap refits failed or were skipped", failed, n_resamples)
    return BootstrapFit(full, resampled, failed, "points" if by_points else "replicates")


def _row_mean(rows: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanmean(rows, axis=0)


# ---- IsoFLOP parabolas (Chinchilla approach 2) -----------------------------------------------


@dataclass(frozen=True)
class ParabolaFit:
    """The vertex of log L = c0 + c1 u + c2 u^2, u = log N, fitted along one contour.

    ``interior`` is False when the curve opens downwards or the vertex lies
    outside the fitted points. The vertex is then not a minimum of the data.
    """

    log_vertex: float
    log_loss_at_vertex: float
    curvature: float
    interior: bool


def parabola_vertex(log_n: np.ndarray, log_loss: np.ndarray) -> ParabolaFit:
    """Fit a parabola to (log N, log L) by least squares and return its vertex."""
    log_n = np.asarray(log_n, dtype=float)
    log_loss = np.asarray(log_loss, dtype=float)
    if log_n.size < 3:
        raise ValueError(f"a parabola needs at least 3 points, got {log_n.size}")
    center = float(np.mean(log_n))
    c2, c1, c0 = np.polyfit(log_n - center, log_loss, 2)
    if c2 <= 0:
        return ParabolaFit(math.nan, math.nan, float(c2), False)
    offset = -c1 / (2 * c2)
    vertex = center + offset
    interior = bool(log_n.min() <= vertex <= log_n.max())
    return ParabolaFit(float(vertex), float(c0 - c1**2 / (4 * c2)), float(c2), interior)


def contour_minimum(n_features: np.ndarray, losses: np.ndarray, window: float) -> ParabolaFit:
    """Return the parabola vertex fitted to the points within a factor ``window`` of the lowest loss.

    Parameters
    ----------
    n_features, losses : ndarray, shape (P,)
        One fixed-compute contour.
    window : float
        Points with N within [N_min / window, N_min * window] of the grid
        minimum N_min are fitted (at least the three nearest to it).
    """
    n_features = np.asarray(n_features, dtype=float)
    losses = np.asarray(losses, dtype=float)
    finite = np.isfinite(losses) & (losses > 0)
    if finite.sum() < 3:
        return ParabolaFit(math.nan, math.nan, math.nan, False)
    log_n = np.log(n_features[finite])
    log_loss = np.log(losses[finite])
    lowest = log_n[int(np.argmin(log_loss))]
    distance = np.abs(log_n - lowest)
    chosen = distance <= math.log(window) + 1e-12
    if chosen.sum() < 3:
        chosen = distance <= np.sort(distance)[2]
    return parabola_vertex(log_n[chosen], log_loss[chosen])


def log_log_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (slope, intercept) of the least-squares line through (log x, log y)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if keep.sum() < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope), float(intercept)
