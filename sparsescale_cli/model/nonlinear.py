"""Nonlinear random-feature students, their arc-cosine kernel limit, and Monte Carlo losses.

Student: phi_j(x) = sigma_F act(z_j . x + b_j) for j = 1, ..., N, with
z_ji ~ N(0, 1) keyed by (feature seed, i) exactly as the linear student's
F = sigma_F Z, and b_j = bias_scale * N(0, 1) keyed by (feature seed, 0)
(coordinate 0 is never a data coordinate). The prediction is
f(x) = theta . phi(x). sigma_F (1/sqrt(N) or 1) multiplies the activation
from outside, so pre-activations have variance ||x||^2 + bias_scale^2 at
every N; for act = identity and no bias this is the linear student.

With sigma_F^2 = 1/N, phi(x) . phi(x') tends to K(x, x') = E_z[act(z.x + b) act(z.x' + b)]
as N grows, and the ridge (or minimum-norm) student tends to kernel ridge
regression with K. For relu, K is the arc-cosine kernel of order 1
(Cho and Saul, "Kernel methods for deep learning", 2009).

The population loss L = E_x[(f(x) - w*.x)^2] + sigma^2 has no closed form
here, so it is estimated by Monte Carlo over fresh test inputs from the same
sparse law. Columns z_i of coordinates never seen in training come from the
same keyed generator, so M = inf needs nothing special.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy import special

from .keyed import keyed_normal
from .laws import DataLaw, Teacher
from .linear import TrainingSet, teacher_weights
from .sampler import SparseBatch, sample_batch
from .solvers import solve_ridge

LINEAR = "linear"
RELU = "relu"
ACTIVATIONS = (LINEAR, RELU, "tanh", "gelu", "abs", "erf")
# act(a u) = a act(u) for every a > 0; with no bias the student is then
# positively homogeneous in x, which the closed-form amplitude integral needs.
POSITIVELY_HOMOGENEOUS = (LINEAR, RELU, "abs")
BIAS_COORDINATE = 0.0
# Test inputs whose features are formed at once, to bound the (rows, N) temporary.
_TEST_BLOCK = 2048


# ---- activations and features -----------------------------------------------------------


def apply_activation(name: str, pre_activation: np.ndarray) -> np.ndarray:
    """Apply the activation ``name`` elementwise.

    gelu is the exact u Phi(u) (Phi the standard normal CDF), erf is the
    Gauss error function, abs is |u|.
    """
    if name == LINEAR:
        return pre_activation
    if name == RELU:
        return np.maximum(pre_activation, 0.0)
    if name == "tanh":
        return np.tanh(pre_activation)
    if name == "gelu":
        return pre_activation * special.ndtr(pre_activation)
    if name == "abs":
        return np.abs(pre_activation)
    if name == "erf":
        return special.erf(pre_activation)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


@dataclass(frozen=True)
class FeatureMap:
    """The keyed feature map x -> act(Z x + b) of up to ``n_features`` features (before sigma_F).

    Attributes
    ----------
    activation : str
        One of ``ACTIVATIONS``.
    feature_seed : int
        Key of Z and b; the first N features are the same for every ``n_features`` >= N.
    n_features : int
        The largest N that will be used.
    bias_scale : float
        Standard deviation of b_j; 0 means no bias.
    """

    activation: str
    feature_seed: int
    n_features: int
    bias_scale: float = 0.0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not self.bias_scale >= 0:
            raise ValueError(f"bias scale must be non-negative, got {self.bias_scale}")

    @property
    def homogeneous(self) -> bool:
        """Whether f(a x) = a f(x) for a > 0, for every theta."""
        return self.activation in POSITIVELY_HOMOGENEOUS and self.bias_scale == 0

    def weights(self, coords: np.ndarray) -> np.ndarray:
        """Return Z restricted to ``coords``: shape (n_features, K)."""
        return keyed_normal(self.feature_seed, coords, self.n_features)

    def biases(self) -> np.ndarray:
        """Return b, shape (n_features,)."""
        if self.bias_scale == 0:
            return np.zeros(self.n_features)
        return self.bias_scale * keyed_normal(self.feature_seed, np.array([BIAS_COORDINATE]), self.n_features)[:, 0]

    def transform(self, batch: SparseBatch, weights: np.ndarray | None = None) -> np.ndarray:
        """Return act(X Z^T + b) for the inputs of ``batch``, shape (D, n_features).

        ``weights`` may pass Z for ``batch.coords`` when the caller has it already.
        """
        weights = self.weights(batch.coords) if weights is None else weights
        biases = self.biases()
        n_rows = batch.n_samples
        out = np.empty((n_rows, self.n_features))
        rows = sp.csr_matrix(batch.matrix)
        for low in range(0, n_rows, _TEST_BLOCK):
            high = min(low + _TEST_BLOCK, n_rows)
            pre_activation = np.asarray(_as_operand(rows[low:high]) @ weights.T) + biases
            out[low:high] = apply_activation(self.activation, pre_activation)
        return out


# ---- the arc-cosine kernel ----------------------------------------------------------------


def arc_cosine_kernel(norms_left: np.ndarray, norms_right: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Return the order-1 arc-cosine kernel E_z[relu(z.x) relu(z.x')], z ~ N(0, I).

    Parameters
    ----------
    norms_left : ndarray, shape (n,)
        ||x|| of the left inputs.
    norms_right : ndarray, shape (m,)
        ||x'|| of the right inputs.
    inner : ndarray, shape (n, m)
        x . x'.

    Notes
    -----
    K(x, x') = ||x|| ||x'|| (sin t + (pi - t) cos t) / (2 pi), t the angle
    between x and x' (Cho and Saul 2009 define k_1 = 2 K). K(x, x) = ||x||^2 / 2.
    A zero input has K = 0 with everything.
    """
    scale = np.outer(norms_left, norms_right)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(scale > 0, inner / scale, 0.0)
    cosine = np.clip(cosine, -1.0, 1.0)
    angle = np.arccos(cosine)
    return scale * (np.sqrt(1.0 - cosine**2) + (math.pi - angle) * cosine) / (2.0 * math.pi)


def _as_operand(matrix: sp.spmatrix):
    """Return ``matrix`` as a dense array when it is more than 10% filled (dense inputs, s = 0).

    Sparse-times-dense products do not use BLAS; for filled matrices the
    dense product is an order of magnitude faster at the same memory.
    """
    rows, columns = matrix.shape
    if matrix.nnz > 0.1 * rows * columns:
        return matrix.toarray()
    return matrix


def _row_norms(matrix: sp.spmatrix) -> np.ndarray:
    return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())


def _cross_inner(left: SparseBatch, right: SparseBatch) -> np.ndarray:
    """Return the (D_left, D_right) inner products of two batches with different seen coordinates."""
    _, left_columns, right_columns = np.intersect1d(left.coords, right.coords, assume_unique=True,
                                                    return_indices=True)
    if left_columns.size == 0:
        return np.zeros((left.n_samples, right.n_samples))
    product = _as_operand(left.matrix[:, left_columns]) @ _as_operand(right.matrix[:, right_columns]).T
    return product.toarray() if sp.issparse(product) else np.asarray(product)


# ---- fitted students ----------------------------------------------------------------------


@dataclass
class NonlinearFit:
    """A fitted nonlinear student, or its kernel limit, with the facts of its design.

    Attributes
    ----------
    n_features : float
        N, ``math.inf`` for the kernel limit.
    feature_rank : int
        Numerical rank of the training features (of the kernel matrix for N = inf).
    condition_number : float
        s_max / s_min over the singular values kept; for N = inf the square
        root of the kernel matrix's eigenvalue ratio, the same quantity in the limit.
    train_loss : float
        (1/D) ||Phi theta - y||^2.
    theta_norm : float
        ||theta|| (for N = inf, the RKHS norm sqrt(alpha^T K alpha)).
    """

    n_features: float
    feature_rank: int
    condition_number: float
    train_loss: float
    theta_norm: float


class NonlinearProblem:
    """One training set and one keyed feature map, fitted for several N on nested features.

    Parameters
    ----------
    training : TrainingSet
    feature_map : FeatureMap
        ``feature_map.n_features`` is the largest N to be fitted.
    """

    def __init__(self, training: TrainingSet, feature_map: FeatureMap):
        self.training = training
        self.feature_map = feature_map
        self.features = feature_map.transform(training.batch)

    def fit(self, n_features: int, ridge: float, scale: float) -> tuple[np.ndarray, NonlinearFit]:
        """Fit theta on the first ``n_features`` features times ``scale`` (sigma_F).

        Returns
        -------
        theta : ndarray, shape (n_features,)
        fit : NonlinearFit
        """
        if n_features > self.feature_map.n_features:
            raise ValueError(f"N = {n_features} exceeds the {self.feature_map.n_features} features made")
        design = scale * self.features[:, :n_features]
        solution = solve_ridge(design, self.training.labels, ridge)
        train_loss = solution.residual_sq / self.training.batch.n_samples
        fit = NonlinearFit(float(n_features), solution.rank, solution.condition_number, train_loss,
                           float(np.linalg.norm(solution.theta)))
        return solution.theta, fit


class FeaturePredictor:
    """f(x) = sigma_F theta . act(Z x + b) for a fitted theta."""

    def __init__(self, feature_map: FeatureMap, theta: np.ndarray, scale: float):
        self.feature_map = feature_map
        self.theta = theta
        self.scale = scale

    def predict_features(self, test_features: np.ndarray) -> np.ndarray:
        """Return f on test inputs from their precomputed features act(Z x + b), shape (T, >= N)."""
        return self.scale * (test_features[:, : self.theta.size] @ self.theta)

    def unit_response(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return f(e_i) and f(-e_i) for the coordinates whose columns of Z are ``weights`` (N', K)."""
        columns = weights[: self.theta.size]
        act = self.feature_map.activation
        plus = self.scale * (self.theta @ apply_activation(act, columns))
        minus = self.scale * (self.theta @ apply_activation(act, -columns))
        return plus, minus


class ArcCosineKernelProblem:
    """The N = inf limit of a relu student: kernel ridge regression with the arc-cosine kernel.

    Parameters
    ----------
    training : TrainingSet
    bias_scale : float
        With b_j ~ N(0, bias_scale^2) the kernel is the arc-cosine kernel of
        the augmented inputs (x, bias_scale).

    Notes
    -----
    The per-sample ridge convention of :func:`solve_ridge` carries over:
    f(x) = k(x)^T a with a = (K + D gamma I)^-1 y, and for gamma = 0 the
    minimum-norm interpolant a = K^+ y, eigenvalues of K below
    100 D eps mu_max treated as zero (rows that positive homogeneity makes
    parallel give exact zeros, which rounding lifts to about eps mu_max).
    """

    def __init__(self, training: TrainingSet, bias_scale: float = 0.0):
        self.training = training
        self.bias_scale = bias_scale
        matrix = training.batch.matrix
        self.norms = np.sqrt(_row_norms(matrix) ** 2 + bias_scale**2)
        training_inner = _as_operand(matrix) @ _as_operand(matrix).T
        training_inner = training_inner.toarray() if sp.issparse(training_inner) else training_inner
        inner = np.asarray(training_inner) + bias_scale**2
        self.gram = arc_cosine_kernel(self.norms, self.norms, inner)
        self.eigenvalues, self.eigenvectors = scipy.linalg.eigh(self.gram, check_finite=False)

    def fit(self, ridge: float) -> tuple[np.ndarray, NonlinearFit]:
        """Return the dual weights a and the fit's spectral facts."""
        n_samples = self.training.batch.n_samples
        eigenvalues = self.eigenvalues
        top = eigenvalues[-1] if eigenvalues.size else 0.0
        kept = eigenvalues > 100 * n_samples * np.finfo(float).eps * top if top > 0 else np.zeros_like(eigenvalues,
                                                                                                       dtype=bool)
        rank = int(kept.sum())
        if ridge > 0:
            inverse = 1.0 / (np.maximum(eigenvalues, 0.0) + n_samples * ridge)
        else:
            inverse = np.where(kept, 1.0 / np.where(kept, eigenvalues, 1.0), 0.0)
        projected = self.eigenvectors.T @ self.training.labels
        dual = self.eigenvectors @ (inverse * projected)

        fitted = np.maximum(eigenvalues, 0.0) * inverse * projected
        residual = self.training.labels @ self.training.labels - 2 * projected @ fitted + fitted @ fitted
        condition = math.sqrt(top / eigenvalues[kept][0]) if rank else math.inf
        norm_sq = float(np.sum(np.maximum(eigenvalues, 0.0) * (inverse * projected) ** 2))
        fit = NonlinearFit(math.inf, rank, condition, max(float(residual), 0.0) / n_samples, math.sqrt(norm_sq))
        return dual, fit


class KernelPredictor:
    """f(x) = sum_r a_r K(x_r, x) for dual weights a on the training inputs."""

    def __init__(self, problem: ArcCosineKernelProblem, dual: np.ndarray):
        self.problem = problem
        self.dual = dual

    def predict(self, batch: SparseBatch) -> np.ndarray:
        """Return f on the inputs of ``batch``, shape (T,)."""
        bias_sq = self.problem.bias_scale**2
        norms = np.sqrt(_row_norms(batch.matrix) ** 2 + bias_sq)
        out = np.empty(batch.n_samples)
        rows = sp.csr_matrix(batch.matrix)
        for low in range(0, batch.n_samples, _TEST_BLOCK):
            high = min(low + _TEST_BLOCK, batch.n_samples)
            block = SparseBatch(batch.coords, sp.csc_matrix(rows[low:high]))
            inner = _cross_inner(self.problem.training.batch, block) + bias_sq
            kernel = arc_cosine_kernel(self.problem.norms, norms[low:high], inner)
            out[low:high] = self.dual @ kernel
        return out

    def unit_response(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return f(e_i) and f(-e_i) for ``coords`` (no bias)."""
        training = self.problem.training.batch
        unit = SparseBatch(coords, sp.csc_matrix(sp.identity(coords.size, format="csc")))
        inner = _cross_inner(training, unit)
        ones = np.ones(coords.size)
        plus = self.dual @ arc_cosine_kernel(self.problem.norms, ones, inner)
        minus = self.dual @ arc_cosine_kernel(self.problem.norms, ones, -inner)
        return plus, minus


# ---- fresh test inputs and the Monte Carlo loss --------------------------------------------


@dataclass
class TestSet:
    """Fresh inputs from the data law, with the teacher's noise-free outputs.

    Attributes
    ----------
    batch : SparseBatch
        T inputs.
    targets : ndarray, shape (T,)
        w* . x.
    weights : ndarray, shape (K,)
        w*_i for ``batch.coords``.
    single_rows : ndarray of int, shape (S,)
        Rows with exactly one active coordinate.
    single_columns : ndarray of int, shape (S,)
        For each of those rows, the index into ``batch.coords`` of its coordinate.
    """

    __test__ = False  # a data class, not a pytest test case

    batch: SparseBatch
    targets: np.ndarray
    weights: np.ndarray
    single_rows: np.ndarray
    single_columns: np.ndarray


def draw_test_set(law: DataLaw, teacher: Teacher, n_test: int, rng: np.random.Generator,
                  teacher_seed: int) -> TestSet:
    """Sample ``n_test`` inputs from ``rng`` and evaluate the keyed teacher on them."""
    batch = sample_batch(law, n_test, rng)
    weights = teacher_weights(teacher, teacher_seed, batch.coords)
    targets = batch.matrix @ weights
    rows = sp.csr_matrix(batch.matrix)
    active = np.diff(rows.indptr)
    single_rows = np.flatnonzero(active == 1)
    single_columns = rows.indices[rows.indptr[single_rows]]
    return TestSet(batch, np.asarray(targets), weights, single_rows, single_columns.astype(np.int64))


@dataclass
class LossEstimate:
    """A Monte Carlo estimate of the population loss and its standard error.

    Attributes
    ----------
    value : float
        Estimated L, label noise sigma^2 included.
    standard_error : float
        Standard deviation of the per-input terms over sqrt(T).
    n_test : int
        T.
    n_integrated : int
        Rows whose Gaussian amplitude was integrated in closed form (0 for plain Monte Carlo).
    """

    value: float
    standard_error: float
    n_test: int
    n_integrated: int


def plain_loss(predictions: np.ndarray, test: TestSet, noise: float) -> LossEstimate:
    """Estimate L by the mean of (f(x) - w*.x)^2 over the test inputs, plus sigma^2.

    Unbiased for the population loss of the fitted student and this teacher,
    given the training set: the test inputs are independent of both.
    """
    terms = (predictions - test.targets) ** 2
    return _estimate(terms, noise, 0)


def single_coordinate_expectation(response_plus: np.ndarray, response_minus: np.ndarray, weights: np.ndarray,
                                  amplitude_variance: np.ndarray) -> np.ndarray:
    """Return E_v[(f(v e_i) - w*_i v)^2] for v ~ N(0, tau_i^2) and a positively homogeneous f.

    Notes
    -----
    f(v e_i) = v f(e_i) for v > 0 and |v| f(-e_i) for v < 0, so the error is
    v (f(e_i) - w_i) or |v| (f(-e_i) + w_i), and each half-line carries
    E[v^2; v > 0] = tau_i^2 / 2:
    E = tau_i^2 / 2 ((f(e_i) - w_i)^2 + (f(-e_i) + w_i)^2).
    """
    return 0.5 * amplitude_variance * ((response_plus - weights) ** 2 + (response_minus + weights) ** 2)


def reduced_loss(predictions: np.ndarray, test: TestSet, noise: float, law: DataLaw, seen: np.ndarray,
                 unseen_mass: float, responses: tuple[np.ndarray, np.ndarray] | None = None) -> LossEstimate:
    """Estimate L with the unseen teacher weights, and where possible single amplitudes, integrated.

    Parameters
    ----------
    predictions : ndarray, shape (T,)
        f on the test inputs.
    test : TestSet
    noise : float
        sigma.
    law : DataLaw
        Gives the amplitude variance tau_i^2 = E[x_i^2] / p_i.
    seen : ndarray of bool, shape (K,)
        Whether each of ``test.batch.coords`` is active in some training input.
    unseen_mass : float
        sum over coordinates never seen in training of E[x_i^2] E[w_i^2]
        (:func:`unseen_sums`, exact also for M = inf).
    responses : (ndarray, ndarray), optional
        f(e_i) and f(-e_i) for ``test.batch.coords``. Give them only for a
        positively homogeneous student (linear, relu or abs, without bias).

    Notes
    -----
    The teacher weights w*_i of coordinates never seen in training do not
    enter the fit, so averaging over them is exact:
    E_w[(f(x) - w*.x)^2] = (f(x) - w*_seen . x)^2 + sum_{i unseen, active} E[w_i^2] x_i^2,
    and the last term has the exact mean ``unseen_mass``. This is the loss
    the linear student's closed form reports (it averages over the same
    weights). With ``responses``, rows with one active coordinate also have
    their squared error replaced by its mean over the amplitude
    (:func:`single_coordinate_expectation`). Both steps are conditional
    expectations (Rao-Blackwellization): the mean is unchanged and the
    variance can only fall.
    """
    seen_weights = np.where(seen, test.weights, 0.0)
    terms = (predictions - test.batch.matrix @ seen_weights) ** 2
    n_integrated = 0
    if responses is not None:
        columns = test.single_columns
        terms[test.single_rows] = single_coordinate_expectation(
            responses[0][columns], responses[1][columns], seen_weights[columns],
            law.amplitude_variance(test.batch.coords[columns]),
        )
        n_integrated = test.single_rows.size
    estimate = _estimate(terms, noise, n_integrated)
    estimate.value += unseen_mass
    return estimate


def _estimate(terms: np.ndarray, noise: float, n_integrated: int) -> LossEstimate:
    n_test = terms.size
    error = float(terms.std(ddof=1) / math.sqrt(n_test)) if n_test > 1 else math.inf
    return LossEstimate(float(terms.mean()) + noise**2, error, n_test, n_integrated)


# ---- the interpolation threshold ------------------------------------------------------------


def predicted_feature_rank(batch: SparseBatch, activation: str, bias_scale: float = 0.0) -> int | None:
    """Return the rank of the training features for N >= D and generic Z (conjecture).

    Notes
    -----
    Rows with two or more active coordinates give generic, independent
    feature vectors. Rows x = v e_i with one active coordinate collapse under
    positive homogeneity: for relu without bias, act(v z_i) = |v| act(sign(v) z_i),
    so all such rows of one coordinate span at most two directions (one per
    sign of v); for abs they span one. Zero rows add nothing, unless a bias
    makes act(b) a non-zero row (all zero rows then share it). For other
    activations every non-zero row counts. Returns None for the linear
    activation, whose rank is rank(X).

    For relu and abs this matched the SVD rank exactly in our tests. For
    smooth activations (tanh, erf, gelu) and with a bias it is the rank in
    exact arithmetic, an upper bound: act(v z_i) over the amplitudes v of one
    coordinate is close to a low-degree polynomial in v z_i, so the SVD
    cutoff keeps only a few directions per coordinate (s = 2, D = 150:
    tanh 82 and relu with bias 0.5 143, against the bound 150).
    """
    if activation == LINEAR:
        return None
    rows = sp.csr_matrix(batch.matrix)
    active = np.diff(rows.indptr)
    multiple = int(np.count_nonzero(active >= 2))
    single = active == 1
    zero_rows = int(np.count_nonzero(active == 0))

    if bias_scale > 0 or activation not in POSITIVELY_HOMOGENEOUS:
        return multiple + int(np.count_nonzero(single)) + (1 if bias_scale > 0 and zero_rows else 0)

    starts = rows.indptr[:-1][single]
    columns = rows.indices[starts]
    signs = np.sign(rows.data[starts])
    if activation == RELU:
        directions = np.unique(np.stack([columns, signs]), axis=1).shape[1] if columns.size else 0
    else:
        directions = np.unique(columns).size
    return multiple + int(directions)
