"""Ridge and minimum-norm least squares through the SVD.

The ridge convention is per-sample: theta minimizes
(1/D) ||Phi theta - y||^2 + gamma ||theta||^2, so theta = V diag(s / (s^2 + D gamma)) U^T y.
gamma = 0 gives the minimum-norm least-squares solution, with singular values
below eps * max(D, N) * s_max treated as zero (numpy.linalg.lstsq's default cutoff).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp


@dataclass
class RidgeSolution:
    """Fitted weights with the spectral facts of the design that produced them."""

    theta: np.ndarray
    singular_values: np.ndarray
    rank: int
    condition_number: float
    residual_sq: float
    left: np.ndarray | None = None
    right: np.ndarray | None = None

    def operator(self) -> np.ndarray:
        """Return the linear map R with theta = R targets (shape (N, n)): right @ left.T."""
        return self.right @ self.left.T


def solve_ridge(design: np.ndarray, targets: np.ndarray, ridge: float, n_samples: int | None = None) -> RidgeSolution:
    """Solve ridge or minimum-norm least squares by the SVD of ``design``.

    Parameters
    ----------
    design : ndarray, shape (n, N)
        The features Phi (n = D), or Q^T Phi for an orthonormal Q whose range
        contains the columns of Phi (n = rank); both give the same theta.
    targets : ndarray, shape (n,)
        y, or Q^T y to match ``design``.
    ridge : float
        gamma >= 0; 0 selects the minimum-norm least-squares solution.
    n_samples : int, optional
        D, which scales the ridge and the cutoff; defaults to ``design.shape[0]``.

    Returns
    -------
    RidgeSolution
        ``condition_number`` is s_max / s_min over the singular values kept
        (inf when none is kept); ``residual_sq`` is ||design theta - targets||^2.
    """
    n_rows, n_features = design.shape
    n_samples = n_rows if n_samples is None else n_samples
    if n_rows == 0 or n_features == 0:
        return RidgeSolution(np.zeros(n_features), np.zeros(0), 0, np.inf, float(targets @ targets))

    u, singular_values, vt = _svd_wide(design)
    projected = u.T @ targets
    cutoff = np.finfo(float).eps * max(n_samples, n_features) * singular_values[0]
    kept = singular_values > cutoff
    rank = int(kept.sum())

    shrink = _ridge_shrinkage(singular_values, kept, ridge, n_samples)
    theta = vt.T @ (shrink * projected)

    fitted = singular_values * shrink * projected
    residual_sq = float(targets @ targets - 2 * projected @ fitted + fitted @ fitted)
    condition = float(singular_values[0] / singular_values[rank - 1]) if rank else np.inf
    return RidgeSolution(theta, singular_values, rank, condition, max(residual_sq, 0.0), u, vt.T * shrink)


def _svd(matrix: np.ndarray):
    try:
        return scipy.linalg.svd(matrix, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:
        # gesdd can fail to converge on nearly rank-deficient input; gesvd is slower and robust.
        return scipy.linalg.svd(matrix, full_matrices=False, lapack_driver="gesvd", check_finite=False)


@dataclass
class RangeBasis:
    """Training data expressed in an orthonormal basis Q of the range of X.

    With X = Q C (Q of shape (D, r), orthonormal), every feature matrix
    Phi = X F^T equals Q (C F^T), so least squares on Phi reduces to least
    squares on the r x N matrix C F^T with targets Q^T y. Singular values,
    fitted weights and residuals are unchanged; only the part of y outside
    range(X), ``residual_sq``, is set aside because no student can fit it.

    Attributes
    ----------
    coefficients : ndarray, shape (r, K)
        C = Q^T X.
    targets : ndarray, shape (r,)
        Q^T y.
    rank : int
        r, the rank of the training inputs X.
    residual_sq : float
        ||y||^2 - ||Q^T y||^2.
    """

    coefficients: np.ndarray
    targets: np.ndarray
    rank: int
    residual_sq: float


def range_basis(inputs: sp.spmatrix, labels: np.ndarray) -> RangeBasis:
    """Compress the training set (X, y) onto the range of X.

    Parameters
    ----------
    inputs : sparse matrix, shape (D, K)
        Training inputs restricted to the K seen coordinates.
    labels : ndarray, shape (D,)

    Notes
    -----
    Columns are scaled to unit norm first (the rank and the range do not
    change, and amplitudes that differ by orders of magnitude no longer
    spoil the conditioning). Then G = X_n^T X_n = W Lambda W^T, and with the
    r eigenvalues above the rounding floor K eps Lambda_max (times 100),
    Q = X_n W Lambda^-1/2 and C = Lambda^1/2 W^T diag(norms). When D < K the
    identity basis (Q = I, C = X) is smaller and is used instead.
    """
    n_samples, n_seen = inputs.shape
    inputs = sp.csc_matrix(inputs)
    norms = np.sqrt(np.asarray(inputs.multiply(inputs).sum(axis=0)).ravel())
    norms = np.where(norms > 0, norms, 1.0)
    normalized = inputs @ sp.diags(1.0 / norms)

    if n_samples <= n_seen:
        gram = (normalized @ normalized.T).toarray()
        eigenvalues = scipy.linalg.eigvalsh(gram, check_finite=False)
        rank = _count_above_floor(eigenvalues, n_samples)
        return RangeBasis(inputs.toarray(), np.asarray(labels, dtype=float), rank, 0.0)

    gram = (normalized.T @ normalized).toarray()
    eigenvalues, eigenvectors = scipy.linalg.eigh(gram, check_finite=False)
    rank = _count_above_floor(eigenvalues, n_seen)
    eigenvalues, eigenvectors = eigenvalues[-rank:], eigenvectors[:, -rank:] if rank else eigenvectors[:, :0]

    coefficients = (np.sqrt(eigenvalues)[:, None] * eigenvectors.T) * norms[None, :]
    targets = (eigenvectors.T @ (normalized.T @ labels)) / np.sqrt(eigenvalues)
    residual_sq = float(labels @ labels - targets @ targets)
    return RangeBasis(coefficients, targets, rank, max(residual_sq, 0.0))


def _count_above_floor(eigenvalues: np.ndarray, size: int) -> int:
    if eigenvalues.size == 0 or eigenvalues[-1] <= 0:
        return 0
    floor = 100 * size * np.finfo(float).eps * eigenvalues[-1]
    return int(np.count_nonzero(eigenvalues > floor))


def solve_ridge_path(
    design: np.ndarray, targets: np.ndarray, ridges: list[float], n_samples: int | None = None
) -> list[RidgeSolution]:
    """Solve ridge regression for several ridges from one SVD of ``design``.

    Same conventions as :func:`solve_ridge`, which each entry equals; the
    SVD, the dominant cost, is computed once for the whole path.
    """
    n_rows, n_features = design.shape
    n_samples = n_rows if n_samples is None else n_samples
    if n_rows == 0 or n_features == 0:
        return [solve_ridge(design, targets, ridge, n_samples) for ridge in ridges]

    u, singular_values, vt = _svd_wide(design)
    projected = u.T @ targets
    cutoff = np.finfo(float).eps * max(n_samples, n_features) * singular_values[0]
    kept = singular_values > cutoff
    rank = int(kept.sum())
    condition = float(singular_values[0] / singular_values[rank - 1]) if rank else np.inf
    target_sq = float(targets @ targets)

    solutions = []
    for ridge in ridges:
        shrink = _ridge_shrinkage(singular_values, kept, ridge, n_samples)
        fitted = singular_values * shrink * projected
        residual_sq = max(float(target_sq - 2 * projected @ fitted + fitted @ fitted), 0.0)
        solutions.append(RidgeSolution(vt.T @ (shrink * projected), singular_values, rank, condition, residual_sq,
                                       u, vt.T * shrink))
    return solutions


def _ridge_shrinkage(singular_values: np.ndarray, kept: np.ndarray, ridge: float, n_samples: int) -> np.ndarray:
    """Return the factors s / (s^2 + D gamma), or 1/s on the kept singular values when gamma = 0."""
    if ridge > 0:
        return singular_values / (singular_values**2 + n_samples * ridge)
    return np.where(kept, 1.0 / np.where(kept, singular_values, 1.0), 0.0)


def _svd_wide(matrix: np.ndarray):
    """Return the thin SVD, through a QR of the transpose when the matrix is much wider than tall.

    For an n x N matrix with N > 2n, A^T = Q R (Householder, backward
    stable) and the SVD of the n x n matrix R^T = U S W^T give A = U S (Q W)^T
    at a fraction of the cost of a direct SVD of A.
    """
    n_rows, n_columns = matrix.shape
    if n_columns <= 2 * n_rows:
        return _svd(matrix)
    q, r = scipy.linalg.qr(matrix.T, mode="economic", check_finite=False)
    u, singular_values, wt = _svd(r.T)
    return u, singular_values, wt @ q.T
