"""Double descent of the linear random-feature student on sparse data.

Two sweeps share one trial function. In the N sweep, one data draw at fixed
D is fitted by nested students of every N (and by a scan of N around the
draw's own rank, to locate the interpolation peak); in the D sweep, fresh
draws at each D are fitted by students of fixed N, N = inf included.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from .. import analysis
from ..config import ExperimentBase, FeatureCounts, SampleCounts, StrictModel
from ..model import theory
from ..model.linear import LinearProblem, draw_training_set, feature_scale, seen_feature_columns
from .base import Law, Point, Record, Summary, trial_seeds

KIND = "double_descent"
DEFAULT_PEAK_SCAN = [0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2.0]


class NSweep(StrictModel):
    """Loss against N at each fixed D."""

    n_features: FeatureCounts
    n_samples: SampleCounts
    peak_scan: list[Annotated[float, Field(gt=0, le=100)]] = DEFAULT_PEAK_SCAN


class DSweep(StrictModel):
    """Loss against D at each fixed N (N may be inf: the kernel limit)."""

    n_samples: SampleCounts
    n_features: FeatureCounts = [math.inf]


def _as_blocks(value):
    """Accept one sweep block or a list of them."""
    if value is None or isinstance(value, list):
        return value
    return [value]


class Sweep(StrictModel):
    """The two sweeps of a double-descent study; at least one is required.

    Each may be one block or a list of blocks, so that different D can use
    different grids of N (a large D needs only small N for the N-exponent).
    """

    n_sweep: Annotated[list[NSweep] | None, BeforeValidator(_as_blocks)] = None
    d_sweep: Annotated[list[DSweep] | None, BeforeValidator(_as_blocks)] = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Sweep:
        if not self.n_sweep and not self.d_sweep:
            raise ValueError("give n_sweep, d_sweep or both")
        return self


class Analysis(StrictModel):
    """Fit windows, the statistic over replicates and the bootstrap size."""

    n_fit_min: Annotated[int, Field(ge=1)] = 8
    n_fit_max_rank_fraction: Annotated[float, Field(gt=0, le=1)] = 0.05
    d_fit_min: Annotated[int, Field(ge=1)] = 100
    d_fit_max_rank_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1
    statistic: Literal["auto", "mean", "median"] = "auto"
    loss: Literal["expected", "realized"] = "expected"
    bootstrap: Annotated[int, Field(ge=100, le=100_000)] = 1000


class DoubleDescentConfig(ExperimentBase):
    """A double-descent study: N swept at fixed D, D swept at fixed N."""

    kind: Literal["double_descent"]
    sweep: Sweep
    analysis: Analysis = Field(default_factory=Analysis)

    @model_validator(mode="after")
    def _linear_ridge_student(self) -> DoubleDescentConfig:
        # The exact loss and the peak at rank(X) hold for linear features fitted by ridge.
        if self.fit.method != "ridge":
            raise ValueError("double_descent supports fit.method 'ridge' only; gradient descent runs in the "
                             "gd_stability experiment")
        if self.student.activation != "linear" or self.student.bias != 0:
            raise ValueError(
                f"double_descent supports only student.activation: linear without bias (got activation "
                f"{self.student.activation!r}, bias {self.student.bias:g}); run nonlinear students with "
                "kind: nonlinear, for example configs/nonlinear.yaml"
            )
        return self


# ---- plan and trials -------------------------------------------------------------------


def plan(config: DoubleDescentConfig) -> list[Point]:
    points: list[Point] = []
    for block_index, block in enumerate(config.sweep.n_sweep or []):
        for n_samples in block.n_samples:
            params = {"role": "n_sweep", "block": block_index, "n_samples": n_samples,
                      "n_features": block.n_features, "peak_scan": block.peak_scan}
            points.append(Point(len(points), f"N sweep at D={n_samples}", params))
    for block_index, block in enumerate(config.sweep.d_sweep or []):
        for n_samples in block.n_samples:
            params = {"role": "d_sweep", "block": block_index, "n_samples": n_samples,
                      "n_features": block.n_features, "peak_scan": []}
            points.append(Point(len(points), f"D={n_samples}", params))
    return points


def run_trial(config: DoubleDescentConfig, point: Point, replicate: int) -> Record:
    """Draw one training set and fit every student of ``point`` on it."""
    started = time.perf_counter()
    law, teacher = config.data.law(), config.teacher.teacher()
    ridge = config.fit.ridge
    data_rng, feature_key, teacher_key = trial_seeds(config.seed, point.index, replicate)

    training = draw_training_set(law, teacher, point.params["n_samples"], data_rng, teacher_key)
    problem = LinearProblem(law, teacher, training)
    rank = problem.data_rank
    # One scan entry per requested factor, so that entries line up across draws.
    scan = [max(1, int(round(f * rank))) for f in point.params["peak_scan"]] if rank else []

    finite = [int(n) for n in point.params["n_features"] if math.isfinite(n)]
    largest = max(finite + scan, default=0)
    columns = seen_feature_columns(feature_key, training.batch.coords, largest)

    cache: dict[float, object] = {}

    def fit(n_features: float):
        if n_features in cache:
            return cache[n_features]
        if math.isinf(n_features):
            result = problem.fit_kernel_limit(ridge)
        else:
            scale = feature_scale(n_features, config.student.normalization)
            result = problem.fit_features(scale * columns[: int(n_features)], ridge, scale)
        cache[n_features] = result
        return result

    fits = [fit(n) for n in point.params["n_features"]]
    scan_fits = [fit(n) for n in scan]
    record: Record = {
        "n_samples": point.params["n_samples"],
        "rank_data": rank,
        "n_seen": training.batch.n_seen,
        "nnz": training.batch.matrix.nnz,
        "unseen_mass_draw": problem.unseen.weighted,
        "scan_n_features": np.array(scan, dtype=float),
        "scan_loss": np.array([f.loss for f in scan_fits]),
        "scan_condition_number": np.array([f.condition_number for f in scan_fits]),
    }
    record["scan_expected_loss"] = np.array([f.expected_loss for f in scan_fits])
    for field in ("loss", "expected_loss", "seen_loss", "unseen_loss", "train_loss", "feature_rank",
                  "condition_number", "theta_norm"):
        record[field] = np.array([getattr(f, field) for f in fits], dtype=float)
    record["wall_time"] = time.perf_counter() - started
    return record


def estimate_trial_memory(config: DoubleDescentConfig, point: Point) -> int:
    """Estimate the peak bytes of one trial from K(D), the largest N and nnz."""
    law = config.data.law()
    n_samples = point.params["n_samples"]
    seen = min(theory.seen_count(law, n_samples), float(law.M))
    rank = min(seen, n_samples)
    finite = [n for n in point.params["n_features"] if math.isfinite(n)]
    scan_max = max(point.params["peak_scan"], default=0.0) * rank
    largest = max(finite + [scan_max], default=0.0)
    nnz = n_samples * law.mean_active()
    sampler = 40 * nnz + (n_samples * min(law.head, law.M) if law.head else 0)
    basis = 8 * (3 * seen * seen if n_samples > seen else 3 * n_samples * seen)
    features = 8 * largest * seen * 4
    svd = 8 * 3 * rank * max(largest, seen)
    return int(sampler + basis + features + svd + 50e6)


# ---- analysis ---------------------------------------------------------------------------


def _loss_field(config: DoubleDescentConfig) -> str:
    return "expected_loss" if config.analysis.loss == "expected" else "loss"


def _statistic(config: DoubleDescentConfig) -> str:
    if config.analysis.statistic != "auto":
        return config.analysis.statistic
    heavy_tailed = config.teacher.noise > 0 and config.fit.ridge == 0
    return analysis.MEDIAN if heavy_tailed else analysis.MEAN


def analyze(config: DoubleDescentConfig, points: list[Point], records: dict[int, list[Record]]) -> Summary:
    law, teacher = config.data.law(), config.teacher.teacher()
    a_n, a_d = theory.exponents(law, teacher)
    statistic = _statistic(config)
    floor = teacher.noise**2
    summary = Summary(kind=KIND)
    summary.notes.append(
        f"Statistic over replicates: {statistic} of the "
        + ("loss averaged exactly over the teacher's weights and the label noise, given each draw's inputs "
           "and features" if config.analysis.loss == "expected" else "realized loss of each drawn teacher")
        + f". Intervals: 95% percentile bootstrap over replicates ({config.analysis.bootstrap} resamples)."
    )
    if config.teacher.noise > 0 and config.fit.ridge == 0:
        summary.notes.append(
            "Label noise without ridge: a coordinate seen once with a small amplitude g adds about "
            "sigma^2/g^2 to the loss, so the expected loss is infinite and means do not converge. "
            "Medians and quartiles are reported; set fit.ridge > 0 for finite means."
        )

    n_points = [p for p in points if p.params["role"] == "n_sweep" and records.get(p.index)]
    d_points = [p for p in points if p.params["role"] == "d_sweep" and records.get(p.index)]
    if n_points:
        _analyze_n_sweep(config, law, teacher, n_points, records, statistic, floor, a_n, summary)
    if d_points:
        _analyze_d_sweep(config, law, teacher, d_points, records, statistic, floor, a_d, summary)
    _check_unseen_mass(config, law, teacher, points, records, summary)
    return summary


def _analyze_n_sweep(config, law, teacher, n_points, records, statistic, floor, a_n, summary: Summary) -> None:
    peak_rows = []
    heuristic_rows = []
    curves = []
    for point in n_points:
        rows = records[point.index]
        n_samples = point.params["n_samples"]
        n_features = np.array(point.params["n_features"], dtype=float)
        finite = np.isfinite(n_features)
        losses = analysis.stack_field(rows, _loss_field(config))
        stats = analysis.describe(losses)
        center = analysis.column_statistic(losses, statistic)
        ranks = np.array([r["rank_data"] for r in rows], dtype=float)
        rank = float(ranks.mean())
        seen_expected = theory.seen_count(law, n_samples)

        if point.params["peak_scan"]:
            peak_rows.append(_peak_row(config, law, rows, n_samples, n_features, center, ranks, seen_expected,
                                       statistic, summary))

        de = np.array([theory.deterministic_equivalent(law, teacher, n)[1] if np.isfinite(n) else floor
                       for n in n_features])
        limit = theory.unseen_mass(law, teacher, n_samples) + floor
        below = theory.below_peak_curve(de, n_features, rank, teacher.noise)
        above = theory.above_peak_curve(limit, n_features, rank, teacher.noise)
        heuristic_rows.append({
            "n_samples": n_samples,
            "rank_mean": rank,
            "de_error_n_below_rank_over_20": _median_relative_error(center, de, n_features <= 0.05 * rank),
            "below_peak_error_n_below_half_rank": _median_relative_error(center, below, n_features <= 0.5 * rank),
            "above_peak_error_n_above_2_rank": _median_relative_error(center, above, (n_features >= 2 * rank) & finite),
        })
        curves.append({
            "n_samples": n_samples, "n_features": n_features.tolist(), "center": center.tolist(),
            **_band(stats, statistic), "rank": rank,
            "seen_count_theory": seen_expected, "de": de.tolist(), "below": below.tolist(),
            "above": above.tolist(), "limit": limit,
        })

    summary.tables["peaks"] = peak_rows
    summary.tables["heuristics"] = heuristic_rows
    summary.curves["n_sweep"] = curves
    summary.notes.append(
        "Heuristic curves (conjecture): (L_DE(N) - sigma^2) r/(r - N) + sigma^2 below the peak and "
        "U(D) N/(N - r) + sigma^2 above it, r = mean rank(X). The 'heuristics' table gives their median "
        "relative error against the simulation in each regime."
    )
    _fit_parameter_exponent(config, law, teacher, n_points, records, statistic, floor, a_n, summary)


def _peak_row(config, law, rows, n_samples, n_features, center, ranks, seen_expected, statistic, summary) -> dict:
    """Locate the interpolation peak on the grid and, per draw, on the scan around rank(X)."""
    rank = float(ranks.mean())
    finite = np.isfinite(n_features)
    # Small students have a large loss too, so the peak is the maximum near the rank.
    near = finite & (n_features >= 0.25 * rank) & (n_features <= 4 * rank)
    grid_peak = float(n_features[near][np.nanargmax(center[near])]) if near.any() else math.nan
    scan_ratio, scan_ci = analysis.scan_peak(rows, "scan_" + _loss_field(config), "rank_data", statistic,
                                             config.analysis.bootstrap, config.seed)
    scan = sorted(set(rows[0]["scan_n_features"].tolist())) if len(rows) else []
    summary.laws.append(Law(
        name=f"peak N/rank(X), D={n_samples}", measured=scan_ratio, ci95=scan_ci, theory=1.0, status="asymptote",
        window="N/rank(X) scanned per draw",
        note=f"rank(X) {rank:.1f}, K(D) {seen_expected:.1f}, D {n_samples}, grid peak N={grid_peak:g}",
    ))
    return {
        "n_samples": n_samples,
        "rank_mean": rank,
        "rank_sd": float(ranks.std(ddof=1)) if ranks.size > 1 else 0.0,
        "seen_count_theory": seen_expected,
        "grid_peak_n_features": grid_peak,
        "grid_peak_over_rank": grid_peak / rank if rank else math.nan,
        "grid_peak_over_d": grid_peak / n_samples,
        "scan_peak_over_rank": scan_ratio,
        "scan_peak_over_rank_ci95": list(scan_ci),
        "scan_points": len(scan),
    }


def _fit_parameter_exponent(config, law, teacher, n_points, records, statistic, floor, a_n, summary) -> None:
    """Fit a_N at the largest D, far below its peak: the raw slope, and corrected for finite N by L_DE."""
    point = max(n_points, key=lambda p: p.params["n_samples"])
    rows = records[point.index]
    ranks = np.array([r["rank_data"] for r in rows], dtype=float)
    rank = float(ranks.mean())
    n_features = np.array(point.params["n_features"], dtype=float)
    settings = config.analysis
    window = np.isfinite(n_features) & (n_features >= settings.n_fit_min)
    window &= n_features <= settings.n_fit_max_rank_fraction * rank
    text = f"D={point.params['n_samples']}, N in [{settings.n_fit_min}, {settings.n_fit_max_rank_fraction:g} rank(X)]"
    if window.sum() < 3:
        summary.laws.append(Law("a_N", None, None, a_n, "asymptote", text,
                                "fewer than 3 values of N in the window: raise D or add small N"))
        return

    x = n_features[window]
    excess = analysis.stack_field(rows, _loss_field(config))[:, window] - floor
    de_window = np.array([theory.deterministic_equivalent(law, teacher, n)[1] - floor for n in x])
    local = -theory.local_slope(de_window, x)

    raw = analysis.fit_log_slope(x, excess, statistic, 0.0, settings.bootstrap, config.seed)
    measured, low, high = -raw.slope, -raw.ci95[1], -raw.ci95[0]
    summary.laws.append(Law(
        "a_N (raw)", measured, (low, high), local, "asymptote", text,
        f"theory here is the slope of L_DE(N) (D = inf) on this window, {local:.3f}; the asymptotic value is {a_n:g}",
    ))
    # L_DE approaches its power law slowly (its local slope is about a_N - (1 + a_N)/(2N) for M = inf),
    # so the window's slope is shifted by the exact finite-N difference before comparing with a_N.
    shift = a_n - local
    summary.laws.append(Law(
        "a_N", measured + shift, (low + shift, high + shift), a_n, "asymptote", text,
        f"raw slope plus the finite-N correction a_N - (slope of L_DE on this window) = {shift:+.3f}; "
        "the finite-D inflation is not corrected, so keep N far below rank(X)",
    ))


def _band(stats: dict[str, np.ndarray], statistic: str) -> dict[str, list]:
    """Return the error band drawn around the statistic: 95% CI of the mean, or the quartiles."""
    if statistic == analysis.MEAN:
        low = np.maximum(stats["mean"] - 1.96 * stats["sem"], 0.0)
        return {"low": low.tolist(), "high": (stats["mean"] + 1.96 * stats["sem"]).tolist(), "band": "95% CI of mean"}
    return {"low": stats["q25"].tolist(), "high": stats["q75"].tolist(), "band": "quartiles"}


def _median_relative_error(measured: np.ndarray, predicted: np.ndarray, mask: np.ndarray) -> float | None:
    mask = mask & np.isfinite(predicted) & np.isfinite(measured) & (measured > 0)
    if not mask.any():
        return None
    return float(np.median(np.abs(predicted[mask] / measured[mask] - 1)))


def _analyze_d_sweep(config, law, teacher, d_points, records, statistic, floor, a_d, summary: Summary) -> None:
    curves = []
    blocks = sorted({p.params["block"] for p in d_points})
    for block in blocks:
        points = sorted((p for p in d_points if p.params["block"] == block), key=lambda p: p.params["n_samples"])
        for column, n in enumerate(points[0].params["n_features"]):
            curves.append(_d_curve(config, law, teacher, points, records, column, n, statistic, floor, a_d, summary))

    all_samples = np.array([p.params["n_samples"] for p in d_points], dtype=float)
    d_grid = np.geomspace(all_samples.min(), all_samples.max(), 60)
    summary.curves["d_sweep"] = {
        "curves": curves,
        "theory_n_samples": d_grid.tolist(),
        "unseen_mass": [theory.unseen_mass(law, teacher, d) + floor for d in d_grid],
        "unseen_mass_asymptote": [theory.unseen_mass_asymptote(law, teacher, d) + floor for d in d_grid],
    }


def _d_curve(config, law, teacher, points, records, column, n, statistic, floor, a_d, summary) -> dict:
    """Summarize loss against D at one fixed N and fit a_D where N >> rank(X)."""
    n_samples = np.array([p.params["n_samples"] for p in points], dtype=float)
    replicates = min(len(records[p.index]) for p in points)
    field = _loss_field(config)
    losses = np.array([[np.asarray(r[field], dtype=float)[column] for r in records[p.index][:replicates]]
                       for p in points]).T
    ranks = np.array([np.mean([r["rank_data"] for r in records[p.index]]) for p in points])
    stats = analysis.describe(losses)
    center = analysis.column_statistic(losses, statistic)
    label = "inf" if math.isinf(n) else str(int(n))
    curve = {"n_features": label, "n_samples": n_samples.tolist(), "center": center.tolist(),
             **_band(stats, statistic), "rank": ranks.tolist()}

    settings = config.analysis
    window = n_samples >= settings.d_fit_min
    text = f"N={label}, D >= {settings.d_fit_min}"
    if math.isfinite(n):
        window &= ranks <= settings.d_fit_max_rank_fraction * n
        text += f" with rank(X) <= {settings.d_fit_max_rank_fraction:g} N"
    if window.sum() < 3:
        summary.laws.append(Law(f"a_D (N={label})", None, None, a_d, "asymptote", text,
                                "fewer than 3 values of D in the window"))
        return curve
    fit = analysis.fit_log_slope(n_samples[window], losses[:, window], statistic, floor, settings.bootstrap,
                                 config.seed)
    unseen = np.array([theory.unseen_mass(law, teacher, d) for d in n_samples[window]])
    if np.all(unseen > 0):
        note = f"U(D) gives {-theory.local_slope(unseen, n_samples[window]):.3f} on this window"
    else:
        note = "every coordinate is seen (dense inputs): the D-exponent comes from the spectrum, not U(D)"
    summary.laws.append(Law(f"a_D (N={label})", -fit.slope, (-fit.ci95[1], -fit.ci95[0]), a_d, "asymptote", text,
                            note))
    return curve


def _check_unseen_mass(config, law, teacher, points, records, summary: Summary) -> None:
    """Compare the mean per-draw unseen mass with the exact U(D) at each D."""
    by_samples: dict[int, list[float]] = {}
    for point in points:
        for r in records.get(point.index, []):
            by_samples.setdefault(point.params["n_samples"], []).append(float(r["unseen_mass_draw"]))
    rows = []
    for n_samples in sorted(by_samples):
        draws = np.array(by_samples[n_samples])
        expected = theory.unseen_mass(law, teacher, n_samples)
        mean = float(draws.mean())
        sem = float(draws.std(ddof=1) / math.sqrt(draws.size)) if draws.size > 1 else math.nan
        rows.append({"n_samples": n_samples, "simulated_mean": mean, "sem": sem, "exact": expected,
                     "asymptote": theory.unseen_mass_asymptote(law, teacher, n_samples),
                     "z_score": (mean - expected) / sem if sem and sem > 0 else None})
    summary.tables["unseen_mass"] = rows
    if rows and rows[-1]["exact"] > 0:
        largest = rows[-1]
        ci = (largest["simulated_mean"] - 1.96 * largest["sem"], largest["simulated_mean"] + 1.96 * largest["sem"])
        summary.laws.append(Law(
            f"U(D={largest['n_samples']})", largest["simulated_mean"], ci, largest["exact"], "exact",
            "all draws at this D", "mean over draws of the unseen mass, against the exact sum",
        ))


# ---- figure -------------------------------------------------------------------------------


def plot(config, points, records, summary: Summary, directory: Path) -> list[Path]:
    from ..plotting import plot_double_descent

    path = directory / "double_descent.png"
    plot_double_descent(summary, path, title=config.name or KIND)
    return [path]
