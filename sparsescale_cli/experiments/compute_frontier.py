"""IsoFLOP sweeps of the linear random-feature student: the compute-optimal frontier.

For each compute budget C = N D, the student is fitted at N values along the
contour (log-spaced around the theory optimum), each with D = C/N. One
trial is one budget and one replicate: a single draw of the largest D on
the contour, whose first D rows serve every N. Inputs are i.i.d., so these
prefixes are valid draws, and sharing them makes neighbouring points on a
contour comparable. Every point is fitted with each ridge of a small grid.

Why a ridge: the optimum sits just above the interpolation peak (N* about
3 K(D*) by the additive theory), and along a contour the points near
N = rank(X) have a ridgeless loss inflated by N/(N - rank(X)) and a heavy
tail. The analysis uses, at each point, the ridge of the grid with the
lowest mean loss over replicates: an oracle-tuned ridge, which stands in
for a well-tuned one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from .. import analysis, fitting
from ..config import ExperimentBase, SampleCounts, StrictModel
from ..model import theory
from ..model.frontier import AdditiveLaw, dense_counterpart, theory_law
from ..model.linear import LinearProblem, draw_training_set, feature_scale, first_samples, seen_feature_columns
from .base import Law, Point, Record, Summary, trial_seeds

KIND = "compute_frontier"
DEFAULT_RIDGES = [0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]


class ContourSweep(StrictModel):
    """Compute budgets and the N values along each fixed-compute contour."""

    budgets: SampleCounts
    points_per_budget: Annotated[int, Field(ge=5, le=200)] = 13
    span: Annotated[float, Field(gt=1, le=1e4)] = 8.0
    min_samples: Annotated[int, Field(ge=1)] = 10


class RidgeGrid(StrictModel):
    """Ridges fitted at every point (0 = minimum-norm); the analysis keeps the best per point."""

    method: Literal["ridge_grid"] = "ridge_grid"
    ridges: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = DEFAULT_RIDGES


class FrontierAnalysis(StrictModel):
    """Settings of the optimum and law fits."""

    parabola_window: Annotated[float, Field(gt=1)] = 3.0
    statistic: Literal["mean", "median"] = "mean"
    bootstrap: Annotated[int, Field(ge=100, le=100_000)] = 1000
    law_bootstrap: Annotated[int, Field(ge=0, le=10_000)] = 200
    huber_delta: Annotated[float, Field(gt=0)] = fitting.HUBER_DELTA
    floor: Literal["known", "free"] = "known"


class ComputeFrontierConfig(ExperimentBase):
    """IsoFLOP sweeps: for each budget C, N along the contour N D = C."""

    kind: Literal["compute_frontier"]
    sweep: ContourSweep
    fit: RidgeGrid = Field(default_factory=RidgeGrid)
    analysis: FrontierAnalysis = Field(default_factory=FrontierAnalysis)


# ---- plan and trials -------------------------------------------------------------------


def contour(config: ComputeFrontierConfig, budget: float) -> tuple[list[int], list[int]]:
    """Return the N values on the contour of ``budget`` and their D = round(C/N).

    N is log-spaced over [N_c / span, N_c span] around the theory optimum
    N_c, dropping values that round to the same N or leave D below
    ``min_samples``.
    """
    center = theory_additive_law(config).optimum(budget).n_features
    raw = center * np.geomspace(1 / config.sweep.span, config.sweep.span, config.sweep.points_per_budget)
    n_features = sorted({max(1, int(round(n))) for n in raw})
    allowed = [(n, int(round(budget / n))) for n in n_features if budget / n >= config.sweep.min_samples]
    return [n for n, _ in allowed], [d for _, d in allowed]


def theory_additive_law(config: ComputeFrontierConfig) -> AdditiveLaw:
    """Return the additive theory law of the config's model (the dense one for 0 < s <= 1)."""
    law, teacher = config.data.law(), config.teacher.teacher()
    if 0 < law.s <= 1:
        return theory_law(dense_counterpart(law), teacher)
    return theory_law(law, teacher)


def plan(config: ComputeFrontierConfig) -> list[Point]:
    points = []
    for budget in config.sweep.budgets:
        n_features, n_samples = contour(config, budget)
        params = {"budget": budget, "n_features": n_features, "n_samples": n_samples,
                  "ridges": list(config.fit.ridges)}
        points.append(Point(len(points), f"C={budget:.3g}", params))
    return points


def run_trial(config: ComputeFrontierConfig, point: Point, replicate: int) -> Record:
    """Draw the contour's largest D once and fit every (N, D = C/N) and ridge on its prefixes."""
    started = time.perf_counter()
    law, teacher = config.data.law(), config.teacher.teacher()
    data_rng, feature_key, teacher_key = trial_seeds(config.seed, point.index, replicate)
    n_features = point.params["n_features"]
    n_samples = point.params["n_samples"]
    ridges = point.params["ridges"]

    full = draw_training_set(law, teacher, max(n_samples), data_rng, teacher_key)
    columns = seen_feature_columns(feature_key, full.batch.coords, max(n_features))
    losses = np.full((len(n_features), len(ridges)), np.nan)
    ranks = np.zeros(len(n_features))
    conditions = np.zeros(len(n_features))
    for j, (n, d) in enumerate(zip(n_features, n_samples)):
        training = first_samples(full, d)
        problem = LinearProblem(law, teacher, training)
        active = np.isin(full.batch.coords, training.batch.coords, assume_unique=True)
        scale = feature_scale(n, config.student.normalization)
        fits = problem.fit_features_path(scale * columns[:n, active], ridges, scale)
        losses[j] = [f.loss for f in fits]
        ranks[j] = problem.data_rank
        conditions[j] = fits[0].condition_number

    return {
        "n_features": np.array(n_features, dtype=float),
        "n_samples": np.array(n_samples, dtype=float),
        "loss": losses,
        "rank_data": ranks,
        "condition_number": conditions,
        "wall_time": time.perf_counter() - started,
    }


def estimate_trial_memory(config: ComputeFrontierConfig, point: Point) -> int:
    """Estimate the peak bytes of one trial from K(D_max), the largest N and nnz."""
    law = config.data.law()
    largest_d = max(point.params["n_samples"])
    largest_n = max(point.params["n_features"])
    seen = min(theory.seen_count(law, largest_d), float(law.M))
    nnz = largest_d * law.mean_active()
    sampler = 40 * nnz + (largest_d * min(law.head, law.M) if law.head else 0)
    basis = 8 * 3 * seen * min(seen, largest_d)
    features = 8 * largest_n * seen * 4
    return int(sampler + basis + features + 50e6)


# ---- analysis ---------------------------------------------------------------------------


class _Contours:
    """The finished trials as arrays: per budget, N, D and losses (replicates, N, ridges)."""

    def __init__(self, points: list[Point], records: dict[int, list[Record]]):
        self.points = [p for p in points if records.get(p.index)]
        self.replicates = min(len(records[p.index]) for p in self.points)
        self.budgets = np.array([p.params["budget"] for p in self.points], dtype=float)
        self.n_features = [np.array(p.params["n_features"], dtype=float) for p in self.points]
        self.n_samples = [np.array(p.params["n_samples"], dtype=float) for p in self.points]
        self.losses = [np.array([np.asarray(r["loss"], dtype=float) for r in records[p.index][: self.replicates]])
                       for p in self.points]
        self.ranks = [np.mean([np.asarray(r["rank_data"], dtype=float) for r in records[p.index]], axis=0)
                      for p in self.points]

    def tuned(self, rows: np.ndarray | None, statistic: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Return per budget the loss with the best ridge at each N, and that ridge's index.

        ``rows`` selects replicates (a bootstrap resample); None takes all.
        """
        centers, choices = [], []
        for losses in self.losses:
            sample = losses if rows is None else losses[rows]
            with np.errstate(all="ignore"):
                per_ridge = np.nanmedian(sample, axis=0) if statistic == analysis.MEDIAN else np.nanmean(sample, axis=0)
            choice = np.nanargmin(np.where(np.isfinite(per_ridge), per_ridge, np.inf), axis=1)
            centers.append(per_ridge[np.arange(per_ridge.shape[0]), choice])
            choices.append(choice)
        return centers, choices


def _tuned_rows(contours: _Contours, statistic: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_features = np.concatenate(contours.n_features)
    n_samples = np.concatenate(contours.n_samples)
    # Each replicate's loss at the ridge chosen on all replicates, so that replicates can be resampled.
    _, choices = contours.tuned(None, statistic)
    rows = np.concatenate(
        [losses[:, np.arange(losses.shape[1]), choice] for losses, choice in zip(contours.losses, choices)], axis=1
    )
    return n_features, n_samples, rows


def tuned_loss_table(config: ComputeFrontierConfig, points: list[Point], records: dict[int, list[Record]]):
    """Return (N, D, losses of shape (replicates, points)) of a run, each point at its best ridge."""
    return _tuned_rows(_Contours(points, records), config.analysis.statistic)


def _optima(contours: _Contours, centers: list[np.ndarray], window: float) -> tuple[np.ndarray, list]:
    fits = [fitting.contour_minimum(n, c, window) for n, c in zip(contours.n_features, centers)]
    return np.array([math.exp(f.log_vertex) if f.interior else math.nan for f in fits]), fits


def analyze(config: ComputeFrontierConfig, points: list[Point], records: dict[int, list[Record]]) -> Summary:
    law, teacher = config.data.law(), config.teacher.teacher()
    settings = config.analysis
    summary = Summary(kind=KIND)
    contours = _Contours(points, records)
    theory_additive = theory_additive_law(config)
    dense = theory_law(dense_counterpart(law), teacher)
    n_exponent_theory, d_exponent_theory = theory_additive.frontier_exponents()
    loss_exponent_theory = -(theory_additive.feature_exponent * theory_additive.data_exponent
                             / (theory_additive.feature_exponent + theory_additive.data_exponent))
    dense_n_exponent = dense.frontier_exponents()[0]
    summary.notes.append(
        f"Each point uses the ridge of {list(config.fit.ridges)} with the lowest {settings.statistic} loss over "
        "replicates (oracle-tuned): ridgeless losses near N = rank(X) are inflated by the interpolation peak."
    )
    summary.notes.append(
        f"Optima: vertex of a parabola in (log N, log L) fitted within a factor {settings.parabola_window:g} of "
        "each contour's lowest point (Chinchilla approach 2). Intervals: 95% percentile bootstrap over replicates "
        f"({settings.bootstrap} resamples; {settings.law_bootstrap} for the law fit)."
    )

    centers, choices = contours.tuned(None, settings.statistic)
    optima, parabolas = _optima(contours, centers, settings.parabola_window)
    rng = np.random.default_rng(config.seed)
    resampled_optima = []
    for _ in range(settings.bootstrap):
        rows = rng.integers(0, contours.replicates, contours.replicates)
        resampled_optima.append(_optima(contours, contours.tuned(rows, settings.statistic)[0],
                                        settings.parabola_window)[0])
    resampled_optima = np.array(resampled_optima)

    # Frontier exponents from the optima (approach 2).
    n_slope, n_intercept = fitting.log_log_slope(contours.budgets, optima)
    slopes = np.array([fitting.log_log_slope(contours.budgets, row)[0] for row in resampled_optima])
    usable = int(np.isfinite(optima).sum())
    window_text = f"{usable} of {len(optima)} budgets with an interior optimum, C in " \
                  f"[{contours.budgets.min():.3g}, {contours.budgets.max():.3g}]"
    n_ci = fitting.percentile_interval(slopes)
    summary.laws.append(Law("N*(C) exponent (parabolas)", n_slope, n_ci, n_exponent_theory, "asymptote",
                            window_text, f"dense model: {dense_n_exponent:.3g}"))
    summary.laws.append(Law("D*(C) exponent (parabolas)", 1 - n_slope, (1 - n_ci[1], 1 - n_ci[0]),
                            d_exponent_theory, "asymptote", window_text,
                            f"D* = C/N*; dense model: {1 - dense_n_exponent:.3g}"))

    best_losses = np.array([math.exp(f.log_loss_at_vertex) if f.interior else math.nan for f in parabolas])
    floor = teacher.noise**2
    loss_slope = fitting.log_log_slope(contours.budgets, best_losses - floor)[0]
    summary.laws.append(Law("L*(C) - sigma^2 exponent (parabolas)", loss_slope, None, loss_exponent_theory,
                            "asymptote", window_text, "-a_N a_D/(a_N + a_D)"))

    rows = _budget_rows(contours, centers, choices, optima, resampled_optima, parabolas, theory_additive, law,
                        config.fit.ridges)
    summary.tables["optima"] = rows
    largest = rows[-1]
    if largest["n_opt_over_seen"] is not None:
        summary.laws.append(Law(
            f"N*/K(D*) at C={largest['budget']:.3g}", largest["n_opt_over_seen"], None,
            theory_additive.optimum(largest["budget"]).n_features
            / theory.seen_count(law, theory_additive.optimum(largest["budget"]).n_samples) if law.s > 1 else None,
            "conjecture", "largest budget", "theory from the additive law",
        ))

    _fit_law(config, contours, summary, theory_additive, floor)
    summary.curves = _curves(contours, centers, parabolas, optima, n_slope, n_intercept, theory_additive, dense)
    edge = [r["budget"] for r in rows if not r["interior"]]
    if edge:
        summary.notes.append(
            f"No interior optimum at C = {', '.join(f'{b:.3g}' for b in edge)}: the lowest loss is at an end of "
            "the contour or the parabola opens downwards; widen sweep.span."
        )
    return summary


def _budget_rows(contours, centers, choices, optima, resampled, parabolas, theory_additive, law, ridges) -> list[dict]:
    rows = []
    for b, budget in enumerate(contours.budgets):
        expected = theory_additive.optimum(budget)
        ci = fitting.percentile_interval(resampled[:, b])
        grid_best = int(np.nanargmin(centers[b]))
        n_opt = optima[b]
        seen = theory.seen_count(law, budget / n_opt) if np.isfinite(n_opt) and law.s > 1 else None
        rows.append({
            "budget": float(budget),
            "n_opt": _float(n_opt),
            "n_opt_ci95": [_float(ci[0]), _float(ci[1])],
            "d_opt": _float(budget / n_opt),
            "loss_opt": _float(math.exp(parabolas[b].log_loss_at_vertex)) if parabolas[b].interior else None,
            "n_opt_theory": expected.n_features,
            "loss_opt_theory": expected.loss,
            "n_grid_best": float(contours.n_features[b][grid_best]),
            "ridge_at_grid_best": float(ridges[int(choices[b][grid_best])]),
            "n_opt_over_seen": _float(n_opt / seen) if seen else None,
            "interior": bool(parabolas[b].interior),
        })
    return rows


def _float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _fit_law(config, contours: _Contours, summary: Summary, theory_additive: AdditiveLaw, floor: float):
    """Fit the additive law to every point of every contour and report its exponents."""
    settings = config.analysis
    n_features, n_samples, tuned_rows = _tuned_rows(contours, settings.statistic)
    known_floor = floor if settings.floor == "known" else None
    bootstrap = fitting.bootstrap_additive_law(n_features, n_samples, tuned_rows, known_floor, settings.huber_delta,
                                               settings.law_bootstrap, config.seed)
    fitted = bootstrap.fit.law
    status = bootstrap.fit.status()
    has_intervals = bool(bootstrap.resampled)

    def interval(quantity):
        return bootstrap.interval(quantity) if has_intervals else None

    window = f"all {n_features.size} points, E {'fixed to sigma^2' if known_floor is not None else 'fitted'}"
    summary.laws.append(Law("a_N (law fit)", fitted.feature_exponent, interval(lambda l: l.feature_exponent),
                            theory_additive.feature_exponent, "asymptote", window, status))
    summary.laws.append(Law("a_D (law fit)", fitted.data_exponent, interval(lambda l: l.data_exponent),
                            theory_additive.data_exponent, "asymptote", window, status))
    summary.laws.append(Law("N*(C) exponent (law fit)", fitted.frontier_exponents()[0],
                            interval(lambda l: l.frontier_exponents()[0]), theory_additive.frontier_exponents()[0],
                            "asymptote", window, "a_D/(a_N + a_D) of the fitted law"))
    summary.tables["law_fit"] = [{
        "E": fitted.floor, "A": fitted.feature_prefactor, "a_N": fitted.feature_exponent,
        "B": fitted.data_prefactor, "a_D": fitted.data_exponent,
        "A_theory": theory_additive.feature_prefactor, "B_theory": theory_additive.data_prefactor,
        "status": status, "bootstrap_failed": bootstrap.failed,
    }]
    summary.notes.append(
        "Law fit (conjecture as a whole): L = E + A N^-a_N + B D^-a_D, Huber loss on log residuals "
        f"(delta {settings.huber_delta:g}), variable projection for E, A, B, grid of starting exponents. "
        "Each term is an asymptote of the model; their sum ignores the interpolation peak at N ~ K(D)."
    )


def _curves(contours, centers, parabolas, optima, n_slope, n_intercept, theory_additive, dense) -> dict:
    isoflops = []
    for b, budget in enumerate(contours.budgets):
        isoflops.append({
            "budget": float(budget),
            "n_features": contours.n_features[b].tolist(),
            "loss": centers[b].tolist(),
            "theory": theory_additive.loss(contours.n_features[b], budget / contours.n_features[b]).tolist(),
            "parabola": {"log_vertex": parabolas[b].log_vertex, "curvature": parabolas[b].curvature,
                         "log_loss_at_vertex": parabolas[b].log_loss_at_vertex, "interior": parabolas[b].interior},
        })
    grid = np.geomspace(contours.budgets.min(), contours.budgets.max(), 40)
    return {
        "isoflops": isoflops,
        "budgets": contours.budgets.tolist(),
        "n_opt": [_float(v) for v in optima],
        "fit": {"slope": n_slope, "intercept": n_intercept},
        "theory_budgets": grid.tolist(),
        "theory_n_opt": [theory_additive.optimum(c).n_features for c in grid],
        "dense_n_opt": [dense.optimum(c).n_features for c in grid],
    }


# ---- figure -------------------------------------------------------------------------------


def plot(config, points, records, summary: Summary, directory: Path) -> list[Path]:
    from ..plotting_frontier import plot_compute_frontier

    path = directory / "compute_frontier.png"
    plot_compute_frontier(summary, path, title=config.name or KIND)
    return [path]
