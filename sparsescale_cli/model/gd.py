"""Full-batch gradient descent for linear students, in closed form.

Loss convention: the training loss is the per-sample average with a half,
L(theta) = (1/(2D)) ||Phi theta - y||^2, so its Hessian is H = Phi^T Phi / D
and one step is theta <- theta - eta (H theta - Phi^T y / D), starting from
theta = 0. In the eigenbasis of H each mode k is multiplied by (1 - eta h_k)
per step, so the run diverges exactly when eta * lambda_max(H) > 2 (a loss
without the half would move the threshold to 1).

With the SVD Phi = U diag(sigma) W^T (or of Q^T Phi for an orthonormal Q
whose range contains the columns of Phi), h_k = sigma_k^2 / D and

    theta_t = W diag((1 - (1 - eta h_k)^t) / sigma_k) U^T y,

so every step of a run costs one SVD, with no loop over t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg
import scipy.special

from .keyed import keyed_normal
from .laws import DataLaw
from .solvers import _svd

# A run counts as diverged at the first step where its training loss exceeds
# this multiple of the loss at the start.
DIVERGENCE_FACTOR = 1e6
# Below this dimension ARPACK's Lanczos has no room to work; a dense solve is exact and cheap.
_DENSE_EIGEN_MAX = 8


@dataclass
class DescentPath:
    """A gradient-descent run evaluated at the recorded steps.

    Attributes
    ----------
    steps : ndarray of int, shape (S,)
        The recorded steps t.
    thetas : ndarray, shape (N, S)
        theta_t at each recorded step; columns at or after the crossing step are zero
        (their values overflow and are not kept).
    train_loss : ndarray, shape (S,)
        (1/(2D)) ||Phi theta_t - y||^2, +inf at or after the crossing step.
    top_eigenvalue : float
        lambda_max(H).
    diverged : bool
        True when eta * lambda_max(H) > 2 and the unstable modes carry signal.
    crossing_step : int
        First step whose training loss exceeds DIVERGENCE_FACTOR times the loss at
        step 0, or -1 when no step up to the last recorded one does.
    """

    steps: np.ndarray
    thetas: np.ndarray
    train_loss: np.ndarray
    top_eigenvalue: float
    diverged: bool
    crossing_step: int

    def finite_steps(self) -> np.ndarray:
        """Return a mask of the recorded steps before the crossing step."""
        if self.crossing_step < 0:
            return np.ones(self.steps.size, dtype=bool)
        return self.steps < self.crossing_step


def descent_path(
    design: np.ndarray,
    targets: np.ndarray,
    eta: float,
    steps: np.ndarray,
    n_samples: int | None = None,
    residual_sq: float = 0.0,
) -> DescentPath:
    """Evaluate full-batch gradient descent from theta = 0 at ``steps``, in closed form.

    Parameters
    ----------
    design : ndarray, shape (n, N)
        Phi (n = D), or Q^T Phi for an orthonormal Q whose range contains the columns of Phi.
    targets : ndarray, shape (n,)
        y, or Q^T y to match ``design``.
    eta : float
        Step size, in the convention of the module docstring.
    steps : ndarray of int, shape (S,)
        Non-negative steps to record, increasing.
    n_samples : int, optional
        D, which scales the loss and the Hessian; defaults to ``design.shape[0]``.
    residual_sq : float
        ||y||^2 - ||targets||^2, the part of y that ``design`` cannot reach (zero when
        ``design`` is Phi itself). It enters the training loss and its starting value.
    """
    n_rows, n_features = design.shape
    n_samples = n_rows if n_samples is None else n_samples
    steps = np.asarray(steps, dtype=np.int64)
    if n_rows == 0 or n_features == 0:
        loss = np.full(steps.size, (float(targets @ targets) + residual_sq) / (2 * n_samples))
        return DescentPath(steps, np.zeros((n_features, steps.size)), loss, 0.0, False, -1)

    u, singular_values, vt = _svd(design)
    projected = u.T @ targets
    outside = max(float(targets @ targets - projected @ projected), 0.0) + residual_sq
    curvature = singular_values**2 / n_samples
    factors = 1.0 - eta * curvature

    start_loss = (float(targets @ targets) + residual_sq) / (2 * n_samples)
    crossing = _crossing_step(factors, projected**2 / (2 * n_samples), outside / (2 * n_samples),
                              DIVERGENCE_FACTOR * start_loss, int(steps.max(initial=0)))
    finite = steps < crossing if crossing >= 0 else np.ones(steps.size, dtype=bool)

    thetas = np.zeros((n_features, steps.size))
    train_loss = np.full(steps.size, np.inf)
    if finite.any():
        with np.errstate(over="ignore"):
            powers = factors[:, None] ** steps[finite][None, :]
        # Only a growing mode with no signal can overflow before the crossing; it stays at zero.
        powers = np.where(np.isfinite(powers), powers, 0.0)
        kept = singular_values > 0
        gains = np.where(kept[:, None], (1.0 - powers) / np.where(kept, singular_values, 1.0)[:, None], 0.0)
        thetas[:, finite] = vt.T @ (gains * projected[:, None])
        residual_modes = powers * projected[:, None]
        train_loss[finite] = (np.sum(residual_modes**2, axis=0) + outside) / (2 * n_samples)
    diverged = bool(eta * curvature[0] > 2 and np.any((eta * curvature > 2) & (projected != 0)))
    return DescentPath(steps, thetas, train_loss, float(curvature[0]), diverged, crossing)


def _crossing_step(factors: np.ndarray, weights: np.ndarray, constant: float, threshold: float, last: int) -> int:
    """Return the first t <= last with sum_k weights_k factors_k^(2t) + constant > threshold, or -1.

    The growing part (|factor| > 1) is increasing in t and the rest decreasing,
    so the crossing lies between the step where the growing part alone passes
    threshold - (value of the rest at t = 0) and the step where it passes the
    threshold; that window is scanned in log space.
    """
    growing = (np.abs(factors) > 1) & (weights > 0)
    if not growing.any() or threshold <= 0:
        return -1
    log_growth = 2 * np.log(np.abs(factors[growing]))
    log_weights = np.log(weights[growing])
    settled = float(np.sum(weights[~growing])) + constant

    def growing_part_log(t: int) -> float:
        return float(scipy.special.logsumexp(log_weights + t * log_growth))

    def first_step_above(level: float) -> int:
        if level <= 0:
            return 0
        target = math.log(level)
        if growing_part_log(last) <= target:
            return last + 1
        low, high = 0, last
        while low < high:
            middle = (low + high) // 2
            if growing_part_log(middle) > target:
                high = middle
            else:
                low = middle + 1
        return low

    earliest = first_step_above(threshold - settled)
    latest = min(first_step_above(threshold), last)
    if earliest > last:
        return -1
    decaying = (~growing) & (weights > 0)
    log_decay = 2 * np.log(np.maximum(np.abs(factors[decaying]), 1e-300))
    log_decaying_weights = np.log(weights[decaying])
    for low in range(earliest, latest + 1, 4096):
        t = np.arange(low, min(low + 4096, latest + 1))
        growing_values = scipy.special.logsumexp(log_weights[:, None] + t[None, :] * log_growth[:, None], axis=0)
        if decaying.any():
            rest = np.exp(scipy.special.logsumexp(log_decaying_weights[:, None] + t[None, :] * log_decay[:, None],
                                                  axis=0))
        else:
            rest = np.zeros(t.size)
        with np.errstate(over="ignore"):
            total = np.exp(growing_values) + rest + constant
        above = np.nonzero(total > threshold)[0]
        if above.size:
            return int(t[above[0]])
    return -1


def hessian_top_eigenvalue(inputs: sp.spmatrix, features: np.ndarray, n_samples: int,
                           start: np.ndarray | None = None) -> float:
    """Return lambda_max(H), H = Phi^T Phi / D with Phi = X F^T, by Lanczos on the implicit operator.

    Parameters
    ----------
    inputs : sparse matrix, shape (D, K)
        X restricted to the K seen coordinates.
    features : ndarray, shape (N, K)
        F restricted to the same coordinates (already multiplied by sigma_F).
    n_samples : int
        D.
    start : ndarray, shape (N,), optional
        Lanczos starting vector. Pass one drawn from the trial's generator:
        ARPACK's own default start comes from a generator whose state persists
        between calls, which would make results depend on call order.

    Notes
    -----
    H is never formed: H v = F (G (F^T v)) with the sparse K x K Gram matrix
    G = X^T X / D, so a product costs O(N K + nnz(G)). Problems with N <= 8
    use a dense eigensolve of the N x N matrix instead.
    """
    n_features, n_seen = features.shape
    if n_features == 0 or n_seen == 0:
        return 0.0
    inputs = sp.csc_matrix(inputs)
    gram = (inputs.T @ inputs).tocsr() / n_samples
    if n_features <= _DENSE_EIGEN_MAX:
        hessian = features @ (gram @ features.T)
        return float(scipy.linalg.eigvalsh(hessian, check_finite=False)[-1])

    def product(vector: np.ndarray) -> np.ndarray:
        return features @ (gram @ (features.T @ vector))

    operator = scipy.sparse.linalg.LinearOperator((n_features, n_features), matvec=product, dtype=float)
    if start is None:
        start = np.ones(n_features)
    value = scipy.sparse.linalg.eigsh(operator, k=1, which="LA", v0=start, return_eigenvectors=False,
                                      ncv=min(n_features, 24), maxiter=100 * n_features)
    return float(value[0])


def population_hessian(law: DataLaw, feature_seed: int, n_features: int, scale: float,
                       explicit: int | None = None) -> np.ndarray:
    """Return the population Hessian E[phi(x) phi(x)^T] = sigma_F^2 Z diag(E[x_i^2]) Z^T, shape (N, N).

    Parameters
    ----------
    law : DataLaw
    feature_seed : int
        Key of the feature columns, as for the training features.
    n_features : int
        N.
    scale : float
        sigma_F.
    explicit : int, optional
        Coordinates summed term by term; defaults to max(2^14, 64 N), at most M.

    Notes
    -----
    Coordinates beyond ``explicit`` enter through their expectation,
    sigma_F^2 (sum_{i > explicit} E[x_i^2]) I. Their fluctuation about it is
    left out, so the matrix is an approximation for M larger than ``explicit``
    (by about sigma_F^2 sqrt(sum_{i > explicit} E[x_i^2]^2 N) in norm).
    """
    if explicit is None:
        explicit = max(2**14, 64 * n_features)
    explicit = int(min(explicit, law.M))
    coords = np.arange(1.0, explicit + 1.0)
    columns = keyed_normal(feature_seed, coords, n_features)
    covariance = law.covariance(coords)
    hessian = scale**2 * (columns * covariance[None, :]) @ columns.T
    tail = law.weighted_covariance_sum(0.0, explicit + 1) if law.M > explicit else 0.0
    hessian[np.diag_indices(n_features)] += scale**2 * tail
    return hessian
