"""Nonlinear random-feature students beside linear ones, on the same sparse data draws.

Every trial draws one training set and one set of fresh test inputs. Both
students use the same keyed columns of Z and are fitted on that draw. The
linear student's population loss is exact, the nonlinear student's is a
Monte Carlo estimate over the test inputs with its standard error. N = inf
is the kernel limit: ridge regression on x for the linear student, the
arc-cosine kernel for relu. Several data laws ("datasets", for example
s = 2, s = 3 and the dense model) can be compared in one run.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from .. import analysis
from ..config import DataConfig, ExperimentBase, FeatureCounts, SampleCounts, StrictModel, StudentConfig, parse_count
from ..model import theory
from ..model.linear import LinearProblem, draw_training_set, feature_scale, seen_feature_columns, unseen_sums
from ..model.nonlinear import (
    LINEAR,
    RELU,
    ArcCosineKernelProblem,
    FeatureMap,
    FeaturePredictor,
    KernelPredictor,
    NonlinearProblem,
    draw_test_set,
    plain_loss,
    predicted_feature_rank,
    reduced_loss,
)
from .base import Law, Point, Record, Summary, trial_seeds
from .double_descent import Analysis as DoubleDescentAnalysis
from .double_descent import DSweep

KIND = "nonlinear"
DEFAULT_PEAK_SCAN = [0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2.0]
# The kernel limit (N = inf) is implemented for these activations.
KERNEL_ACTIVATIONS = (LINEAR, RELU)
# Spawn-key position of the test-input generator, after the three streams of trial_seeds.
_TEST_STREAM = 3

logger = logging.getLogger(__name__)
_warned_noise_without_ridge = False


class DatasetVariant(StrictModel):
    """One data law of the comparison: the keys given replace those of the top-level ``data``."""

    label: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.=-]+$", max_length=40)]
    alpha: Annotated[float | None, Field(gt=0, le=20)] = None
    s: Annotated[float | None, Field(ge=0, le=50)] = None
    c: Annotated[float | None, Field(gt=0)] = None
    mean_active: Annotated[float | None, Field(gt=0)] = None
    M: Annotated[int | float | None, BeforeValidator(parse_count)] = None
    # Sweep points with D above this are skipped for this dataset (a dense law with finite M
    # follows its D -> inf law only while D << M).
    max_n_samples: Annotated[int | None, Field(ge=1)] = None

    def resolve(self, base: DataConfig) -> DataConfig:
        """Return ``base`` with this variant's keys replaced; c and mean_active replace each other."""
        merged = base.model_dump()
        given = self.model_dump(exclude_none=True, exclude={"label", "max_n_samples"})
        if "c" in given:
            merged["mean_active"] = None
        if "mean_active" in given:
            merged["c"] = None
        merged.update(given)
        return DataConfig.model_validate(merged)


class NSweep(StrictModel):
    """Loss against N at each fixed D, and a scan of N around the predicted feature rank."""

    n_features: FeatureCounts
    n_samples: SampleCounts
    peak_scan: Annotated[list[Annotated[float, Field(gt=0, le=100)]], Field(min_length=1)] = DEFAULT_PEAK_SCAN
    # Ridge of the peak scan; 0 locates the ridgeless interpolation peak.
    peak_scan_ridge: Annotated[float, Field(ge=0)] = 0.0
    # The D values of n_samples where the scan runs (default: all); it costs SVDs of D x ~r_phi features.
    peak_scan_at: SampleCounts | None = None

    @model_validator(mode="after")
    def _scan_where_swept(self) -> NSweep:
        missing = sorted(set(self.peak_scan_at or []) - set(self.n_samples))
        if missing:
            raise ValueError(f"peak_scan_at lists D = {missing}, which are not in n_samples {self.n_samples}")
        return self


class Sweep(StrictModel):
    """The sweeps of the comparison; at least one is required."""

    n_sweep: NSweep | None = None
    d_sweep: DSweep | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Sweep:
        if self.n_sweep is None and self.d_sweep is None:
            raise ValueError("give n_sweep, d_sweep or both")
        return self


class LossEstimation(StrictModel):
    """Monte Carlo population loss of the nonlinear student."""

    test_inputs: Annotated[int, Field(ge=100, le=1_000_000)] = 4000


class Analysis(DoubleDescentAnalysis):
    """Fit windows of the exponents, the statistic over replicates and the bootstrap size.

    The rank fractions apply to each student's own threshold: rank(X) for the
    linear student, the predicted feature rank r_phi for the nonlinear one.
    """

    n_fit_min: Annotated[int, Field(ge=1)] = 4
    n_fit_max_rank_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1


class NonlinearConfig(ExperimentBase):
    """Linear and nonlinear students compared on the same data draws, over N and over D."""

    kind: Literal["nonlinear"]
    student: StudentConfig = Field(default_factory=lambda: StudentConfig(activation=RELU))
    datasets: list[DatasetVariant] = []
    sweep: Sweep
    loss: LossEstimation = Field(default_factory=LossEstimation)
    analysis: Analysis = Field(default_factory=Analysis)

    @model_validator(mode="after")
    def _consistent(self) -> NonlinearConfig:
        labels = [variant.label for variant in self.datasets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"dataset labels must be unique, got {labels}")
        for number, variant in enumerate(self.datasets):
            try:
                variant.resolve(self.data)
            except ValidationError as error:
                detail = error.errors(include_url=False)[0]
                key = ".".join(str(part) for part in detail["loc"])
                raise ValueError(f"datasets[{number}] ({variant.label}): {key + ': ' if key else ''}"
                                 f"{detail['msg']}") from None
        wants_kernel = any(math.isinf(n) for sweep in (self.sweep.n_sweep, self.sweep.d_sweep) if sweep
                           for n in sweep.n_features)
        if wants_kernel and (self.student.activation not in KERNEL_ACTIVATIONS or
                             (self.student.activation == LINEAR and self.student.bias > 0)):
            raise ValueError(
                f"n_features: inf (the kernel limit) is implemented for activation relu and for linear "
                f"without bias, not for {self.student.activation!r} with bias {self.student.bias:g}; "
                "use finite N or activation: relu"
            )
        return self

    def dataset_configs(self) -> dict[str, DataConfig]:
        """Return the data law of each dataset label (the top-level ``data`` when none is listed)."""
        if not self.datasets:
            return {"data": self.data}
        return {variant.label: variant.resolve(self.data) for variant in self.datasets}


# ---- plan and trials -------------------------------------------------------------------


def plan(config: NonlinearConfig) -> list[Point]:
    _warn_noise_without_ridge(config)
    points: list[Point] = []
    limits = {variant.label: variant.max_n_samples for variant in config.datasets}
    for label in config.dataset_configs():
        limit = limits.get(label) or math.inf
        if config.sweep.n_sweep is not None:
            sweep = config.sweep.n_sweep
            for n_samples in [d for d in sweep.n_samples if d <= limit]:
                scanned = sweep.peak_scan_at is None or n_samples in sweep.peak_scan_at
                params = {"dataset": label, "role": "n_sweep", "n_samples": n_samples,
                          "n_features": sweep.n_features, "peak_scan": sweep.peak_scan if scanned else []}
                points.append(Point(len(points), f"{label}: N sweep at D={n_samples}", params))
        if config.sweep.d_sweep is not None:
            sweep = config.sweep.d_sweep
            for n_samples in [d for d in sweep.n_samples if d <= limit]:
                params = {"dataset": label, "role": "d_sweep", "n_samples": n_samples,
                          "n_features": sweep.n_features, "peak_scan": []}
                points.append(Point(len(points), f"{label}: D={n_samples}", params))
    return points


def _warn_noise_without_ridge(config: NonlinearConfig) -> None:
    """Warn once per process: noisy labels without ridge make nonlinear losses explode near the peak."""
    global _warned_noise_without_ridge
    if _warned_noise_without_ridge or config.teacher.noise == 0 or config.fit.ridge > 0:
        return
    if config.student.activation == LINEAR:
        return
    _warned_noise_without_ridge = True
    logger.warning(
        "teacher.noise = %g with fit.ridge = 0: a %s student interpolates the noise, and its loss near "
        "the interpolation threshold can be many orders of magnitude above the noise floor. Set fit.ridge "
        "to a small positive value (for example 1e-4), or teacher.noise to 0.",
        config.teacher.noise, config.student.activation,
    )


def run_trial(config: NonlinearConfig, point: Point, replicate: int) -> Record:
    """Draw one training set and one test set, and fit the linear and the nonlinear student on them."""
    started = time.perf_counter()
    law = config.dataset_configs()[point.params["dataset"]].law()
    teacher = config.teacher.teacher()
    student = config.student
    data_rng, feature_key, teacher_key = trial_seeds(config.seed, point.index, replicate)
    test_sequence = np.random.SeedSequence(config.seed, spawn_key=(point.index, replicate, _TEST_STREAM))

    training = draw_training_set(law, teacher, point.params["n_samples"], data_rng, teacher_key)
    test = draw_test_set(law, teacher, config.loss.test_inputs, np.random.default_rng(test_sequence), teacher_key)
    linear = LinearProblem(law, teacher, training)
    threshold = predicted_feature_rank(training.batch, student.activation, student.bias)
    threshold = linear.data_rank if threshold is None else threshold
    # One scan entry per requested factor, so that entries line up across draws.
    scan = [max(1, int(round(f * threshold))) for f in point.params["peak_scan"]] if threshold else []

    n_features = point.params["n_features"]
    finite = [int(n) for n in n_features if math.isfinite(n)]
    largest = max(finite + scan, default=0)
    evaluator = _StudentEvaluator(config, law, teacher, linear, test, feature_key, largest)
    linear_columns = seen_feature_columns(feature_key, training.batch.coords, max(finite, default=0))

    linear_fits = []
    for n in n_features:
        if math.isinf(n):
            linear_fits.append(linear.fit_kernel_limit(config.fit.ridge))
        else:
            scale = feature_scale(n, student.normalization)
            linear_fits.append(linear.fit_features(scale * linear_columns[: int(n)], config.fit.ridge, scale))
    student_fits = [evaluator.evaluate(n, config.fit.ridge) for n in n_features]
    scan_ridge = config.sweep.n_sweep.peak_scan_ridge if config.sweep.n_sweep else config.fit.ridge
    scan_fits = [evaluator.evaluate(n, scan_ridge) for n in scan]

    active = np.diff(training.batch.matrix.tocsr().indptr)
    record: Record = {
        "n_samples": point.params["n_samples"],
        "rank_data": linear.data_rank,
        "feature_rank_predicted": threshold,
        "n_seen": training.batch.n_seen,
        "single_row_fraction": float(np.mean(active == 1)),
        "test_single_row_fraction": test.single_rows.size / test.batch.n_samples,
        "linear_loss": np.array([f.loss for f in linear_fits]),
        "linear_feature_rank": np.array([f.feature_rank for f in linear_fits], dtype=float),
        "scan_n_features": np.array(scan, dtype=float),
    }
    for prefix, fits in (("student", student_fits), ("scan", scan_fits)):
        for field in ("loss", "loss_se", "loss_plain", "loss_plain_se", "feature_rank", "condition_number",
                      "train_loss"):
            record[f"{prefix}_{field}"] = np.array([f[field] for f in fits], dtype=float)
    record["wall_time"] = time.perf_counter() - started
    return record


class _StudentEvaluator:
    """Fits the nonlinear student of one trial for any N on nested features and estimates its loss."""

    def __init__(self, config: NonlinearConfig, law, teacher, linear: LinearProblem, test, feature_key: int,
                 largest: int):
        training = linear.training
        self.config = config
        self.linear = linear
        self.law = law
        self.noise = teacher.noise
        self.training = training
        self.test = test
        self.feature_map = FeatureMap(config.student.activation, feature_key, largest, config.student.bias)
        self.seen = np.isin(test.batch.coords, training.batch.coords)
        self.unseen_mass = unseen_sums(law, teacher, training.batch.coords, training.batch.n_samples).weighted
        self.problem = None
        self.kernel = None
        self.test_weights = None
        self.test_features = None

    def evaluate(self, n_features: float, ridge: float) -> dict[str, float]:
        if math.isinf(n_features):
            return self._evaluate_kernel(ridge)
        if self.problem is None:
            self.problem = NonlinearProblem(self.training, self.feature_map)
            self.test_weights = self.feature_map.weights(self.test.batch.coords)
            self.test_features = self.feature_map.transform(self.test.batch, self.test_weights)
        n_features = int(n_features)
        scale = feature_scale(n_features, self.config.student.normalization)
        theta, fit = self.problem.fit(n_features, ridge, scale)
        predictor = FeaturePredictor(self.feature_map, theta, scale)
        predictions = predictor.predict_features(self.test_features)
        responses = predictor.unit_response(self.test_weights) if self.feature_map.homogeneous else None
        return self._losses(predictions, responses, fit)

    def _evaluate_kernel(self, ridge: float) -> dict[str, float]:
        if self.config.student.activation == LINEAR:
            exact = self.linear.fit_kernel_limit(ridge)
            return {"loss": exact.loss, "loss_se": 0.0, "loss_plain": exact.loss, "loss_plain_se": 0.0,
                    "feature_rank": exact.feature_rank, "condition_number": exact.condition_number,
                    "train_loss": exact.train_loss}
        if self.kernel is None:
            self.kernel = ArcCosineKernelProblem(self.training, self.config.student.bias)
        dual, fit = self.kernel.fit(ridge)
        predictor = KernelPredictor(self.kernel, dual)
        predictions = predictor.predict(self.test.batch)
        responses = predictor.unit_response(self.test.batch.coords) if self.config.student.bias == 0 else None
        return self._losses(predictions, responses, fit)

    def _losses(self, predictions: np.ndarray, responses, fit) -> dict[str, float]:
        plain = plain_loss(predictions, self.test, self.noise)
        reduced = reduced_loss(predictions, self.test, self.noise, self.law, self.seen, self.unseen_mass,
                               responses)
        return {"loss": reduced.value, "loss_se": reduced.standard_error, "loss_plain": plain.value,
                "loss_plain_se": plain.standard_error, "feature_rank": fit.feature_rank,
                "condition_number": fit.condition_number, "train_loss": fit.train_loss}


def estimate_trial_memory(config: NonlinearConfig, point: Point) -> int:
    """Estimate the peak bytes of one trial: dense training and test features, SVD, kernel matrix."""
    law = config.dataset_configs()[point.params["dataset"]].law()
    n_samples = point.params["n_samples"]
    n_test = config.loss.test_inputs
    finite = [n for n in point.params["n_features"] if math.isfinite(n)]
    scan_max = max(point.params["peak_scan"], default=0.0) * n_samples
    largest = max(finite + [scan_max], default=0.0)
    seen = min(theory.seen_count(law, n_samples), float(law.M))
    test_seen = min(theory.seen_count(law, n_test), float(law.M))
    nnz = (n_samples + n_test) * law.mean_active()
    sampler = 40 * nnz
    features = 8 * largest * (2 * n_samples + n_test + seen + test_seen)
    svd = 8 * 3 * n_samples * max(largest, n_samples) if largest else 0
    kernel = 8 * 4 * n_samples * n_samples if any(math.isinf(n) for n in point.params["n_features"]) else 0
    kernel_test = 8 * 3 * n_samples * min(n_test, 2048) if kernel else 0
    return int(sampler + features + svd + kernel + kernel_test + 50e6)


# ---- analysis ---------------------------------------------------------------------------


STUDENTS = ("linear", "student")


def _statistic(config: NonlinearConfig) -> str:
    if config.analysis.statistic != "auto":
        return config.analysis.statistic
    heavy_tailed = config.teacher.noise > 0 and config.fit.ridge == 0
    return analysis.MEDIAN if heavy_tailed else analysis.MEAN


def _label(n: float) -> str:
    return "inf" if math.isinf(n) else str(int(n))


def analyze(config: NonlinearConfig, points: list[Point], records: dict[int, list[Record]]) -> Summary:
    teacher = config.teacher.teacher()
    statistic = _statistic(config)
    activation = config.student.activation
    summary = Summary(kind=KIND)
    summary.notes.append(
        f"Students: 'linear' (exact population loss) and '{activation}'"
        f"{f' with bias {config.student.bias:g}' if config.student.bias else ''} (Monte Carlo loss over "
        f"{config.loss.test_inputs} fresh test inputs per trial), fitted on the same draws with the same "
        f"columns of Z. Statistic over replicates: {statistic}; intervals: 95% percentile bootstrap over "
        f"replicates ({config.analysis.bootstrap} resamples)."
    )
    if config.teacher.noise > 0 and config.fit.ridge == 0:
        summary.notes.append(
            "Label noise without ridge: the loss is heavy-tailed near the interpolation threshold; "
            "medians and quartiles are reported. Set fit.ridge > 0 for finite means."
        )
    summary.curves["n_sweep"] = []
    summary.curves["d_sweep"] = []
    for label, data in config.dataset_configs().items():
        law = data.law()
        mine = [p for p in points if p.params["dataset"] == label and records.get(p.index)]
        n_points = [p for p in mine if p.params["role"] == "n_sweep"]
        d_points = sorted((p for p in mine if p.params["role"] == "d_sweep"), key=lambda p: p.params["n_samples"])
        context = _Context(config, label, law, teacher, statistic, records, summary)
        if n_points:
            _analyze_n_sweep(context, n_points)
        if d_points:
            _analyze_d_sweep(context, d_points)
        _monte_carlo_table(context, mine)
    summary.notes.append(
        f"Predicted feature rank r_phi (conjecture): rows with two or more active coordinates count once each; "
        f"rows with one active coordinate i collapse, for relu without bias, to one direction per sign of "
        f"their amplitude (for abs to one per coordinate). 'rank' table: r_phi beside rank(X), D and the "
        f"ridgeless peak (scan ridge {config.sweep.n_sweep.peak_scan_ridge if config.sweep.n_sweep else '-'})."
    )
    return summary


class _Context:
    """Inputs shared by the analysis steps of one dataset: config, law, records and theory exponents."""

    def __init__(self, config, label, law, teacher, statistic, records, summary):
        self.config = config
        self.label = label
        self.law = law
        self.teacher = teacher
        self.statistic = statistic
        self.records = records
        self.summary = summary
        self.floor = teacher.noise**2
        self.a_n, self.a_d = theory.exponents(law, teacher)
        self.activation = config.student.activation

    def student_name(self, student: str) -> str:
        return "linear" if student == "linear" else self.activation

    def status(self, student: str) -> str:
        # The linear exponents are derived; that a nonlinear student shares them is the claim under test.
        return "asymptote" if student == "linear" or self.activation == LINEAR else "conjecture"


def _analyze_n_sweep(context: _Context, n_points: list[Point]) -> None:
    config, summary = context.config, context.summary
    rank_rows = summary.tables.setdefault("rank", [])
    gap_rows = summary.tables.setdefault("kernel_gap", [])
    for point in sorted(n_points, key=lambda p: p.params["n_samples"]):
        rows = context.records[point.index]
        n_samples = point.params["n_samples"]
        n_features = np.array(point.params["n_features"], dtype=float)
        rank_data = float(np.mean([r["rank_data"] for r in rows]))
        predicted = float(np.mean([r["feature_rank_predicted"] for r in rows]))
        measured = analysis.stack_field(rows, "student_feature_rank")
        finite = np.isfinite(n_features)
        largest_finite = float(n_features[finite].max()) if finite.any() else math.nan
        measured_at_largest = float(measured[:, np.flatnonzero(finite)[-1]].mean()) if finite.any() else math.nan

        scan_ns = analysis.stack_field(rows, "scan_n_features")
        if scan_ns.size:
            peak, peak_ci = analysis.scan_peak(rows, "scan_loss", "feature_rank_predicted", context.statistic,
                                               config.analysis.bootstrap, config.seed)
            peak_n = float(np.median(scan_ns[:, _scan_argmax(rows, context.statistic)]))
        else:
            peak, peak_ci, peak_n = math.nan, None, math.nan
        rank_rows.append({
            "dataset": context.label, "n_samples": n_samples, "rank_data": rank_data,
            "feature_rank_predicted": predicted,
            "feature_rank_measured": measured_at_largest, "at_n_features": largest_finite,
            "single_row_fraction": float(np.mean([r["single_row_fraction"] for r in rows])),
            "peak_n_features": peak_n, "peak_over_predicted": peak, "peak_over_d": peak_n / n_samples,
            "peak_over_rank_data": peak_n / rank_data if rank_data else math.nan,
        })
        if scan_ns.size:
            summary.laws.append(Law(
                name=f"{context.label}: {context.activation} peak N/r_phi at D={n_samples}", measured=peak,
                ci95=peak_ci, theory=1.0, status="conjecture",
                window=f"scan of N/r_phi in {sorted(set(point.params['peak_scan']))}",
                note=(f"r_phi {predicted:.1f} (predicted), rank(X) {rank_data:.1f}, D {n_samples}; measured "
                      f"feature rank {measured_at_largest:.1f} at N={largest_finite:g}"),
            ))

        curve = {"dataset": context.label, "n_samples": n_samples, "n_features": n_features.tolist(),
                 "rank_data": rank_data, "feature_rank_predicted": predicted}
        for student in STUDENTS:
            losses = analysis.stack_field(rows, f"{student}_loss")
            curve[student] = _curve(losses, context.statistic)
        curve["de"] = [theory.deterministic_equivalent(context.law, context.teacher, n)[1] if np.isfinite(n)
                       else context.floor for n in n_features]
        summary.curves["n_sweep"].append(curve)

        if (~finite).any() and finite.any():
            losses = analysis.stack_field(rows, "student_loss")
            kernel = losses[:, np.flatnonzero(~finite)[0]]
            for column in np.flatnonzero(finite & (n_features >= 2 * predicted)):
                ratio = losses[:, column] / kernel
                n = float(n_features[column])
                gap_rows.append({"dataset": context.label, "n_samples": n_samples, "n_features": n,
                                 "loss_over_kernel_minus_1": float(np.median(ratio) - 1),
                                 "q25": float(np.quantile(ratio, 0.25) - 1),
                                 "q75": float(np.quantile(ratio, 0.75) - 1),
                                 "linear_heuristic_r_over_n_minus_r": predicted / (n - predicted)})

    point = max(n_points, key=lambda p: p.params["n_samples"])
    rows = context.records[point.index]
    n_features = np.array(point.params["n_features"], dtype=float)
    for student in STUDENTS:
        threshold_field = "rank_data" if student == "linear" else "feature_rank_predicted"
        threshold = float(np.mean([r[threshold_field] for r in rows]))
        limit = config.analysis.n_fit_max_rank_fraction * threshold
        window = np.isfinite(n_features) & (n_features >= config.analysis.n_fit_min) & (n_features <= limit)
        name = f"{context.label}: a_N {context.student_name(student)} (D={point.params['n_samples']})"
        text = f"N in [{config.analysis.n_fit_min}, {config.analysis.n_fit_max_rank_fraction:g} x {threshold:.0f}]"
        if window.sum() < 3:
            summary.laws.append(Law(name, None, None, context.a_n, context.status(student), text,
                                    "fewer than 3 values of N in the window; raise D or add small N"))
            continue
        losses = analysis.stack_field(rows, f"{student}_loss")[:, window]
        fit = analysis.fit_log_slope(n_features[window], losses, context.statistic, context.floor,
                                     config.analysis.bootstrap, config.seed)
        summary.laws.append(Law(name, -fit.slope, (-fit.ci95[1], -fit.ci95[0]), context.a_n,
                                context.status(student), text,
                                "theory: a_N = alpha of the linear student, L_DE(N) ~ N^-alpha"))


def _analyze_d_sweep(context: _Context, d_points: list[Point]) -> None:
    config, summary = context.config, context.summary
    n_samples = np.array([p.params["n_samples"] for p in d_points], dtype=float)
    n_features = d_points[0].params["n_features"]
    replicates = min(len(context.records[p.index]) for p in d_points)
    for column, n in enumerate(n_features):
        curve: dict[str, Any] = {"dataset": context.label, "n_features": _label(n),
                                 "n_samples": n_samples.tolist()}
        for student in STUDENTS:
            losses = np.array([[np.asarray(r[f"{student}_loss"], dtype=float)[column]
                                for r in context.records[p.index][:replicates]] for p in d_points]).T
            curve[student] = _curve(losses, context.statistic)
            threshold_field = "rank_data" if student == "linear" else "feature_rank_predicted"
            thresholds = np.array([np.mean([r[threshold_field] for r in context.records[p.index]])
                                   for p in d_points])
            window = n_samples >= config.analysis.d_fit_min
            text = f"D >= {config.analysis.d_fit_min}"
            if math.isfinite(n):
                window &= thresholds <= config.analysis.d_fit_max_rank_fraction * n
                text += f" with threshold <= {config.analysis.d_fit_max_rank_fraction:g} N"
            name = f"{context.label}: a_D {context.student_name(student)} (N={_label(n)})"
            if window.sum() < 3:
                summary.laws.append(Law(name, None, None, context.a_d, context.status(student), text,
                                        "fewer than 3 values of D in the window"))
                continue
            fit = analysis.fit_log_slope(n_samples[window], losses[:, window], context.statistic, context.floor,
                                         config.analysis.bootstrap, config.seed)
            unseen = np.array([theory.unseen_mass(context.law, context.teacher, d) for d in n_samples[window]])
            if np.all(unseen > 0):
                local = f"U(D) over the same window gives {-theory.local_slope(unseen, n_samples[window]):.3f}"
            else:
                local = "U(D) = 0 in the window (every coordinate is seen)"
            summary.laws.append(Law(name, -fit.slope, (-fit.ci95[1], -fit.ci95[0]), context.a_d,
                                    context.status(student), text, f"theory: a_D = alpha/max(1, s); {local}"))
        summary.curves["d_sweep"].append(curve)

    grid = np.geomspace(n_samples.min(), n_samples.max(), 40)
    summary.curves.setdefault("unseen_mass", []).append({
        "dataset": context.label, "n_samples": grid.tolist(),
        "unseen_mass": [theory.unseen_mass(context.law, context.teacher, d) + context.floor for d in grid],
    })


def _curve(losses: np.ndarray, statistic: str) -> dict[str, list]:
    stats = analysis.describe(losses)
    center = analysis.column_statistic(losses, statistic)
    if statistic == analysis.MEAN:
        low = np.maximum(stats["mean"] - 1.96 * stats["sem"], 0.0)
        high = stats["mean"] + 1.96 * stats["sem"]
        band = "95% CI of mean"
    else:
        low, high, band = stats["q25"], stats["q75"], "quartiles"
    return {"center": center.tolist(), "low": low.tolist(), "high": high.tolist(), "band": band}


def _scan_argmax(rows: list[Record], statistic: str) -> int:
    losses = np.log(analysis.stack_field(rows, "scan_loss"))
    return int(np.nanargmax(analysis.column_statistic(losses, statistic)))


def _monte_carlo_table(context: _Context, points: list[Point]) -> None:
    """Tabulate, per sweep, the standard errors of the plain and the reduced Monte Carlo loss."""
    rows_out = context.summary.tables.setdefault("monte_carlo", [])
    for role in ("n_sweep", "d_sweep"):
        mine = [p for p in points if p.params["role"] == role]
        relative, ratios, single = [], [], []
        for point in mine:
            rows = context.records[point.index]
            n_features = np.array(point.params["n_features"], dtype=float)
            if context.activation == LINEAR:
                n_features[~np.isfinite(n_features)] = np.nan
            keep = ~np.isnan(n_features)
            plain_se = analysis.stack_field(rows, "student_loss_plain_se")[:, keep]
            reduced_se = analysis.stack_field(rows, "student_loss_se")[:, keep]
            loss = analysis.stack_field(rows, "student_loss")[:, keep]
            with np.errstate(divide="ignore", invalid="ignore"):
                relative.append((reduced_se / loss).ravel())
                ratios.append(((plain_se / reduced_se) ** 2).ravel())
            single.extend(r["test_single_row_fraction"] for r in rows)
        if not mine:
            continue
        rows_out.append({
            "dataset": context.label, "sweep": role,
            "median_relative_se": float(np.nanmedian(np.concatenate(relative))),
            "median_variance_ratio_plain_over_reduced": float(np.nanmedian(np.concatenate(ratios))),
            "max_variance_ratio": float(np.nanmax(np.concatenate(ratios))),
            "test_single_row_fraction": float(np.mean(single)),
        })


# ---- figure -------------------------------------------------------------------------------


def plot(config, points, records, summary: Summary, directory: Path) -> list[Path]:
    from ..plotting import plot_nonlinear

    path = directory / "nonlinear.png"
    plot_nonlinear(summary, path, title=config.name or KIND, activation=config.student.activation)
    return [path]
