"""Linear random-feature students on sparse data and their exact population loss.

Student: phi(x) = F x with F_ji = sigma_F Z_ji, Z_ji ~ N(0, 1) i.i.d., and
f(x) = theta . phi(x) = u . x with u = F^T theta. The feature scale is
sigma_F^2 = 1/N ("inverse_n", so that ||phi(x)||^2 is about ||x||^2) or 1 ("unit").
Only the columns of F for seen coordinates enter the fit, and they come from
:func:`keyed_normal`, so features are nested in N.

Population loss (exact, no test set):

    L = sum_i E[x_i^2] (u_i - w*_i)^2 + sigma^2.

For a coordinate never active in training, F_{:,i} and w*_i are independent
of theta, so its expected share is E[x_i^2] (E[w_i^2] + sigma_F^2 ||theta||^2).
Summing that in closed form over all unseen coordinates makes M = inf exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .gd import descent_path
from .keyed import keyed_normal
from .laws import DataLaw, Teacher
from .sampler import SparseBatch, sample_batch
from .solvers import RangeBasis, range_basis, solve_ridge, solve_ridge_path

INVERSE_N = "inverse_n"
UNIT = "unit"
_EXPLICIT_CAP = 2**22


@dataclass
class TrainingSet:
    """D training inputs, the teacher's weights on their seen coordinates, and labels."""

    batch: SparseBatch
    weights: np.ndarray
    labels: np.ndarray


def draw_training_set(
    law: DataLaw, teacher: Teacher, n_samples: int, rng: np.random.Generator, teacher_seed: int
) -> TrainingSet:
    """Sample inputs from ``rng`` and label them with the keyed teacher ``teacher_seed``."""
    batch = sample_batch(law, n_samples, rng)
    weights = teacher_weights(teacher, teacher_seed, batch.coords)
    labels = batch.matrix @ weights
    if teacher.noise > 0:
        labels = labels + teacher.noise * rng.standard_normal(n_samples)
    return TrainingSet(batch, weights, labels)


def first_samples(training: TrainingSet, n_samples: int) -> TrainingSet:
    """Return the training set made of the first ``n_samples`` inputs of ``training``.

    Inputs are independent and identically distributed, so the first D rows
    of a larger draw are a draw of D inputs. Sweeps that share one draw
    across several D this way compare like with like (common random numbers).
    """
    if not 1 <= n_samples <= training.batch.n_samples:
        raise ValueError(f"n_samples must be in [1, {training.batch.n_samples}], got {n_samples}")
    rows = sp.csc_matrix(training.batch.matrix[:n_samples])
    active = np.diff(rows.indptr) > 0
    batch = SparseBatch(coords=training.batch.coords[active], matrix=sp.csc_matrix(rows[:, active]))
    return TrainingSet(batch, training.weights[active], training.labels[:n_samples])


def teacher_weights(teacher: Teacher, teacher_seed: int, coords: np.ndarray) -> np.ndarray:
    """Return w*_i for ``coords``, keyed by (teacher_seed, i)."""
    return np.sqrt(teacher.weight_variance(coords)) * keyed_normal(teacher_seed, coords, 1)[0]


def feature_scale(n_features: float, normalization: str) -> float:
    """Return sigma_F, the standard deviation of each entry of F."""
    if normalization == INVERSE_N:
        return 1.0 / math.sqrt(n_features)
    if normalization == UNIT:
        return 1.0
    raise ValueError(f"feature normalization must be '{INVERSE_N}' or '{UNIT}', got {normalization!r}")


@dataclass
class UnseenSums:
    """Sums over coordinates never active in training.

    Attributes
    ----------
    weighted : float
        sum_{i unseen} E[x_i^2] E[w_i^2], the expected unseen mass of this draw.
    plain : float
        sum_{i unseen} E[x_i^2].
    """

    weighted: float
    plain: float


def unseen_sums(law: DataLaw, teacher: Teacher, coords: np.ndarray, n_samples: int) -> UnseenSums:
    """Sum E[x_i^2] E[w_i^2] and E[x_i^2] over the coordinates not in ``coords``.

    The coordinates up to the explicit limit are summed term by term; beyond
    it, the closed-form tail sum minus the few seen tail coordinates. Both
    parts are small where they are subtracted, so no precision is lost.
    """
    limit = float(min(law.explicit_limit(n_samples), _EXPLICIT_CAP, law.M))
    explicit = np.arange(1.0, limit + 1.0)
    unseen = np.ones(explicit.size, dtype=bool)
    seen_head = coords[coords <= limit]
    unseen[seen_head.astype(np.int64) - 1] = False
    covariance = law.covariance(explicit[unseen])
    weighted = float(np.sum(covariance * teacher.weight_variance(explicit[unseen])))
    plain = float(np.sum(covariance))

    seen_tail = coords[coords > limit]
    tail_covariance = law.covariance(seen_tail)
    weighted += law.weighted_covariance_sum(teacher.beta, limit + 1) - float(
        np.sum(tail_covariance * teacher.weight_variance(seen_tail))
    )
    plain += law.weighted_covariance_sum(0.0, limit + 1) - float(np.sum(tail_covariance))
    return UnseenSums(max(weighted, 0.0), max(plain, 0.0))


@dataclass
class StudentFit:
    """Outcome of one fitted student.

    ``loss`` is the population loss for the drawn teacher and noise.
    ``expected_loss`` is its expectation over the teacher's weights and the
    label noise, given the inputs and the features. Both have expectation
    E[L]; the second has far smaller variance across draws.
    """

    loss: float
    expected_loss: float
    seen_loss: float
    unseen_loss: float
    train_loss: float
    feature_rank: int
    condition_number: float
    theta_norm: float


@dataclass
class DescentFit:
    """Population and training loss of one gradient-descent run at the recorded steps.

    Losses are +inf at and after ``crossing_step`` (-1 when the run never
    crossed DIVERGENCE_FACTOR times its starting training loss).
    """

    steps: np.ndarray
    loss: np.ndarray
    train_loss: np.ndarray
    top_eigenvalue: float
    diverged: bool
    crossing_step: int


class LinearProblem:
    """One training set, compressed once, evaluated for many students.

    Parameters
    ----------
    law, teacher : DataLaw, Teacher
    training : TrainingSet
    """

    def __init__(self, law: DataLaw, teacher: Teacher, training: TrainingSet):
        self.law = law
        self.teacher = teacher
        self.training = training
        self.basis: RangeBasis = range_basis(training.batch.matrix, training.labels)
        self.unseen = unseen_sums(law, teacher, training.batch.coords, training.batch.n_samples)
        self.covariance = law.covariance(training.batch.coords)

    @property
    def data_rank(self) -> int:
        return self.basis.rank

    def fit_features(self, features: np.ndarray, ridge: float, scale: float) -> StudentFit:
        """Fit theta on features Phi = X F^T with F = ``features`` and return its loss.

        Parameters
        ----------
        features : ndarray, shape (N, K)
            F restricted to the seen coordinates (already multiplied by sigma_F).
        ridge : float
        scale : float
            sigma_F, for the unseen coordinates' share sigma_F^2 ||theta||^2.
        """
        n_samples = self.training.batch.n_samples
        design = self.basis.coefficients @ features.T
        solution = solve_ridge(design, self.basis.targets, ridge, n_samples=n_samples)
        predictor = features.T @ solution.theta
        theta_sq = float(solution.theta @ solution.theta)
        expected = self._expected_loss(features, solution, scale**2)
        return self._loss(predictor, scale**2 * theta_sq, solution, theta_sq, expected)

    def fit_features_path(self, features: np.ndarray, ridges: list[float], scale: float) -> list[StudentFit]:
        """Fit theta for each ridge in ``ridges`` on one feature matrix; see :meth:`fit_features`.

        The SVD of the design is shared by the whole path, so a grid of
        ridges costs little more than one fit.
        """
        n_samples = self.training.batch.n_samples
        design = self.basis.coefficients @ features.T
        fits = []
        for solution in solve_ridge_path(design, self.basis.targets, ridges, n_samples=n_samples):
            predictor = features.T @ solution.theta
            theta_sq = float(solution.theta @ solution.theta)
            expected = self._expected_loss(features, solution, scale**2)
            fits.append(self._loss(predictor, scale**2 * theta_sq, solution, theta_sq, expected))
        return fits

    def fit_kernel_limit(self, ridge: float) -> StudentFit:
        """Fit the N = inf limit: ridge (or minimum-norm) regression on x itself.

        As N grows with sigma_F^2 = 1/N, F^T F tends to the identity on the
        seen coordinates and sigma_F^2 ||theta||^2 to zero, so the student
        tends to u = argmin (1/D) ||X u - y||^2 + gamma ||u||^2.
        """
        n_samples = self.training.batch.n_samples
        solution = solve_ridge(self.basis.coefficients, self.basis.targets, ridge, n_samples=n_samples)
        theta_sq = float(solution.theta @ solution.theta)
        expected = self._expected_loss(None, solution, 0.0)
        return self._loss(solution.theta, 0.0, solution, theta_sq, expected)

    def _expected_loss(self, features: np.ndarray | None, solution, feature_variance: float) -> float:
        """Return E[L | inputs, features] over w*_i ~ N(0, b_i) and the label noise.

        Notes
        -----
        theta = R (C w + Q^T eps) with R the ridge operator, so the seen
        predictor is u = F^T R C w + F^T R Q^T eps, with F = I for the kernel
        limit. With Lambda = diag(E[x_i^2]) and B = diag(b_i) on the seen coordinates,
        E ||Lambda^1/2 (u - w)||^2 = tr(S B) - 2 tr(Lambda P B) + tr(Lambda B) + sigma^2 tr(F Lambda F^T R R^T),
        P = F^T R C, S = P^T Lambda P; and E ||theta||^2 = tr(R C B C^T R^T) + sigma^2 ||R||_F^2.
        The traces are taken as products of N x N or r x r matrices, never K x K.
        """
        coefficients = self.basis.coefficients
        b = self.teacher.weight_variance(self.training.batch.coords)
        lam = self.covariance
        noise_sq = self.teacher.noise**2
        operator = solution.operator()
        if features is None:
            # Kernel limit: u = R C w directly, so P = R C and every trace reduces to r x r products.
            weighted = operator.T @ (lam[:, None] * operator)
            seen_fit = float(np.sum((coefficients * b[None, :]) @ coefficients.T * weighted))
            diagonal = np.einsum("ik,ki->i", operator, coefficients)
            cross = float(np.sum(lam * b * diagonal))
            noise_term = noise_sq * float(np.sum(lam[:, None] * operator**2))
            theta_sq = 0.0
        else:
            mapped = operator @ (coefficients * np.sqrt(b)[None, :])
            projected = features @ (lam[:, None] * features.T)
            seen_fit = float(np.sum(projected * (mapped @ mapped.T)))
            cross = float(np.sum(lam * np.sqrt(b) * np.einsum("ij,ij->j", features, mapped)))
            noise_term = noise_sq * float(np.sum(projected * (operator @ operator.T)))
            theta_sq = float(np.sum(mapped**2)) + noise_sq * float(np.sum(operator**2))
        seen = seen_fit - 2 * cross + float(np.sum(lam * b)) + noise_term
        unseen = self.unseen.weighted + feature_variance * theta_sq * self.unseen.plain
        return max(seen, 0.0) + unseen + noise_sq

    def descend_features(self, features: np.ndarray, eta: float, steps: np.ndarray, scale: float) -> DescentFit:
        """Run gradient descent on Phi = X F^T from theta = 0 and return its losses at ``steps``.

        Parameters
        ----------
        features : ndarray, shape (N, K)
            F restricted to the seen coordinates (already multiplied by sigma_F).
        eta : float
            Absolute step size for the loss (1/(2D)) ||Phi theta - y||^2.
        steps : ndarray of int, shape (S,)
        scale : float
            sigma_F.
        """
        n_samples = self.training.batch.n_samples
        design = self.basis.coefficients @ features.T
        path = descent_path(design, self.basis.targets, eta, steps, n_samples=n_samples,
                            residual_sq=self.basis.residual_sq)
        finite = path.finite_steps()
        thetas = path.thetas[:, finite]
        errors = features.T @ thetas - self.training.weights[:, None]
        seen_loss = self.covariance @ errors**2
        unseen_loss = self.unseen.weighted + scale**2 * np.sum(thetas**2, axis=0) * self.unseen.plain
        loss = np.full(path.steps.size, np.inf)
        loss[finite] = seen_loss + unseen_loss + self.teacher.noise**2
        loss[~np.isfinite(loss)] = np.inf
        return DescentFit(path.steps, loss, path.train_loss, path.top_eigenvalue, path.diverged, path.crossing_step)

    def _loss(self, predictor: np.ndarray, unseen_variance: float, solution, theta_sq: float,
              expected_loss: float) -> StudentFit:
        error = predictor - self.training.weights
        seen_loss = float(np.sum(self.covariance * error**2))
        unseen_loss = self.unseen.weighted + unseen_variance * self.unseen.plain
        loss = seen_loss + unseen_loss + self.teacher.noise**2
        train_loss = (solution.residual_sq + self.basis.residual_sq) / self.training.batch.n_samples
        return StudentFit(
            loss=loss,
            expected_loss=expected_loss,
            seen_loss=seen_loss,
            unseen_loss=unseen_loss,
            train_loss=train_loss,
            feature_rank=solution.rank,
            condition_number=solution.condition_number,
            theta_norm=math.sqrt(theta_sq),
        )


def seen_feature_columns(feature_seed: int, coords: np.ndarray, n_features: int) -> np.ndarray:
    """Return Z restricted to ``coords``: shape (n_features, K), keyed and nested in N."""
    return keyed_normal(feature_seed, coords, n_features)
