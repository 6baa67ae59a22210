"""Instability of fixed-step gradient descent: P(unstable) against D, with the rare-spike law.

A point is one D; a trial is a batch of independent data draws at that D.
Every draw is judged for every N and eta of the sweep at once: the run
diverges exactly when eta * lambda_max(H) > 2, so a draw needs the sampler,
the seen columns of F and one Lanczos run per N. The first few draws of a
trial are also trained by gradient descent (closed form) for learning curves.

The random-feature matrix F and the teacher are fixed for the whole config
(keyed by the root seed), so P(unstable) is estimated over data draws for one
model, and the relative step unit lambda_max of the population Hessian is the
same in every trial.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import optimize, stats

from ..config import ETA_RELATIVE, ExperimentBase, GradientDescentFit, SampleCounts, StrictModel
from ..model import stability
from ..model.gd import hessian_top_eigenvalue, population_hessian
from ..model.laws import DataLaw
from ..model.linear import LinearProblem, draw_training_set, feature_scale, seen_feature_columns
from .base import Law, Point, Record, Summary, trial_seeds

KIND = "gd_stability"
# spawn_key of the feature and teacher keys shared by all trials; trials use two-element keys.
_SHARED_STREAM = (2**31 - 1,)


class StabilitySweep(StrictModel):
    """The grid: D (one point each), and N and eta (judged on every draw)."""

    n_samples: SampleCounts
    n_features: Annotated[list[Annotated[int, Field(ge=1, le=100_000)]], Field(min_length=1)]
    eta: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] | None = None


class StabilityAnalysis(StrictModel):
    """Where the power law in D is fitted, and how its interval is found."""

    fit_min_samples: Annotated[int, Field(ge=1)] = 1
    bootstrap: Annotated[int, Field(ge=100, le=100_000)] = 1000


class GDStabilityConfig(ExperimentBase):
    """P(unstable) of fixed-step gradient descent over many data draws per D."""

    kind: Literal["gd_stability"]
    fit: GradientDescentFit
    sweep: StabilitySweep
    draws_per_trial: Annotated[int, Field(ge=1, le=100_000)] = 250
    curves_per_trial: Annotated[int, Field(ge=0, le=1000)] = 2
    analysis: StabilityAnalysis = Field(default_factory=StabilityAnalysis)

    @model_validator(mode="after")
    def _curves_within_draws(self) -> GDStabilityConfig:
        if self.curves_per_trial > self.draws_per_trial:
            raise ValueError(f"curves_per_trial ({self.curves_per_trial}) exceeds draws_per_trial "
                             f"({self.draws_per_trial})")
        return self

    def etas(self) -> list[float]:
        return list(self.sweep.eta) if self.sweep.eta is not None else [self.fit.eta]


# ---- plan and trials -------------------------------------------------------------------


def plan(config: GDStabilityConfig) -> list[Point]:
    points = []
    for n_samples in config.sweep.n_samples:
        params = {"n_samples": n_samples, "n_features": config.sweep.n_features, "eta": config.etas()}
        points.append(Point(len(points), f"D={n_samples}", params))
    return points


def shared_keys(root_seed: int) -> tuple[int, int]:
    """Return (feature key, teacher key) shared by every trial of a config."""
    sequence = np.random.SeedSequence(root_seed, spawn_key=_SHARED_STREAM)
    features, teacher = sequence.spawn(2)
    return (int(features.generate_state(1, dtype=np.uint64)[0]),
            int(teacher.generate_state(1, dtype=np.uint64)[0]))


@functools.lru_cache(maxsize=64)
def population_spectrum(law: DataLaw, feature_key: int, n_features: int, normalization: str) -> np.ndarray:
    """Return the eigenvalues (ascending) of the population Hessian of the student with N features."""
    scale = feature_scale(n_features, normalization)
    return np.linalg.eigvalsh(population_hessian(law, feature_key, n_features, scale))


def absolute_steps(config: GDStabilityConfig, law: DataLaw, feature_key: int) -> np.ndarray:
    """Return eta in absolute units, shape (number of N, number of eta)."""
    etas = np.array(config.etas(), dtype=float)
    rows = []
    for n_features in config.sweep.n_features:
        unit = 1.0
        if config.fit.eta_unit == ETA_RELATIVE:
            unit = population_spectrum(law, feature_key, n_features, config.student.normalization)[-1]
        rows.append(etas / unit)
    return np.array(rows)


def run_trial(config: GDStabilityConfig, point: Point, replicate: int) -> Record:
    """Draw ``draws_per_trial`` training sets at this D and find lambda_max(H) of each for every N."""
    started = time.perf_counter()
    law, teacher = config.data.law(), config.teacher.teacher()
    data_rng, _, _ = trial_seeds(config.seed, point.index, replicate)
    feature_key, teacher_key = shared_keys(config.seed)
    n_samples = point.params["n_samples"]
    n_features = [int(n) for n in point.params["n_features"]]
    etas = absolute_steps(config, law, feature_key)
    steps = np.array(config.fit.recorded_steps(), dtype=np.int64)
    scales = [feature_scale(n, config.student.normalization) for n in n_features]

    draws, curves = config.draws_per_trial, config.curves_per_trial
    top = np.empty((draws, len(n_features)))
    seen = np.empty(draws)
    curve_loss = np.empty((curves, len(n_features), etas.shape[1], steps.size))
    curve_crossing = np.empty((curves, len(n_features), etas.shape[1]))
    curve_min_norm = np.empty((curves, len(n_features)))
    for draw in range(draws):
        training = draw_training_set(law, teacher, n_samples, data_rng, teacher_key)
        columns = seen_feature_columns(feature_key, training.batch.coords, max(n_features))
        seen[draw] = training.batch.n_seen
        for column, (n, scale) in enumerate(zip(n_features, scales)):
            start = data_rng.standard_normal(n)
            top[draw, column] = hessian_top_eigenvalue(training.batch.matrix, scale * columns[:n], n_samples, start)

        if draw < curves:
            problem = LinearProblem(law, teacher, training)
            for column, (n, scale) in enumerate(zip(n_features, scales)):
                features = scale * columns[:n]
                curve_min_norm[draw, column] = problem.fit_features(features, 0.0, scale).loss
                for step_index, eta in enumerate(etas[column]):
                    fit = problem.descend_features(features, eta, steps, scale)
                    curve_loss[draw, column, step_index] = fit.loss
                    curve_crossing[draw, column, step_index] = fit.crossing_step

    return {
        "n_samples": n_samples,
        "top_eigenvalue": top,
        "n_seen": seen,
        "eta_absolute": etas,
        "steps": steps.astype(float),
        "curve_loss": curve_loss,
        "curve_crossing_step": curve_crossing,
        "curve_top_eigenvalue": top[:curves],
        "curve_min_norm_loss": curve_min_norm,
        "wall_time": time.perf_counter() - started,
    }


def estimate_trial_memory(config: GDStabilityConfig, point: Point) -> int:
    """Estimate the peak bytes of one trial: one draw's sampler and columns, and the population Hessian."""
    from ..model import theory

    law = config.data.law()
    n_samples = point.params["n_samples"]
    largest = max(point.params["n_features"])
    seen = min(theory.seen_count(law, n_samples), float(law.M))
    nnz = n_samples * law.mean_active()
    sampler = 40 * nnz + (n_samples * min(law.head, law.M) if law.head else 0)
    columns = 8 * 3 * largest * seen
    basis = 8 * 3 * seen * min(seen, n_samples)
    population = 8 * 2 * largest * max(2**14, 64 * largest)
    return int(sampler + columns + basis + population + 50e6)


# ---- analysis ---------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion (95% by default)."""
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    denominator = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """Return the exact (Garwood) interval of a Poisson mean from one observed count."""
    tail = (1 - level) / 2
    low = 0.0 if count == 0 else stats.chi2.ppf(tail, 2 * count) / 2
    high = stats.chi2.ppf(1 - tail, 2 * count + 2) / 2
    return float(low), float(high)


def _negative_log_likelihood(params: np.ndarray, log_d: np.ndarray, unstable: np.ndarray,
                             draws: np.ndarray) -> float:
    rate = np.exp(np.clip(params[0] + params[1] * log_d, -700, 50))
    log_unstable = np.log(-np.expm1(-np.maximum(rate, 1e-300)))
    return float(-np.sum(unstable * log_unstable - (draws - unstable) * rate))


def fit_power_law(n_samples: np.ndarray, unstable: np.ndarray, draws: np.ndarray) -> tuple[float, float] | None:
    """Fit P(unstable) = 1 - exp(-A D^b) by maximum likelihood; return (log A, b), or None.

    Needs unstable draws at two or more values of D.
    """
    n_samples, unstable, draws = (np.asarray(v, dtype=float) for v in (n_samples, unstable, draws))
    observed = unstable > 0
    if observed.sum() < 2:
        return None
    log_d = np.log(n_samples)
    rates = -np.log1p(-np.minimum(unstable[observed] / draws[observed], 1 - 1e-12))
    start = np.polyfit(log_d[observed], np.log(rates), 1)[::-1]
    result = optimize.minimize(_negative_log_likelihood, start, args=(log_d, unstable, draws), method="Nelder-Mead",
                               options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    return float(result.x[0]), float(result.x[1])


def _deviance(params, n_samples, unstable, draws) -> float:
    """Return twice the log-likelihood gap between the power law and the saturated model."""
    log_d = np.log(np.asarray(n_samples, dtype=float))
    saturated = 0.0
    for k, n in zip(unstable, draws):
        if 0 < k < n:
            saturated += k * math.log(k / n) + (n - k) * math.log(1 - k / n)
    return 2 * (saturated + _negative_log_likelihood(np.asarray(params), log_d, np.asarray(unstable, dtype=float),
                                                     np.asarray(draws, dtype=float)))


def _bootstrap_exponent(n_samples, unstable, draws, resamples: int, seed: int) -> tuple[float, float]:
    """Return the 95% percentile interval of b under parametric resampling of the counts."""
    rng = np.random.default_rng(seed)
    frequencies = np.asarray(unstable) / np.asarray(draws)
    slopes = []
    for _ in range(resamples):
        counts = rng.binomial(np.asarray(draws, dtype=np.int64), frequencies)
        fit = fit_power_law(n_samples, counts, draws)
        if fit is not None:
            slopes.append(fit[1])
    if len(slopes) < resamples // 2:
        return math.nan, math.nan
    low, high = np.percentile(slopes, [2.5, 97.5])
    return float(low), float(high)


def analyze(config: GDStabilityConfig, points: list[Point], records: dict[int, list[Record]]) -> Summary:
    law = config.data.law()
    feature_key, _ = shared_keys(config.seed)
    etas_relative = config.etas()
    etas = absolute_steps(config, law, feature_key)
    n_features = config.sweep.n_features
    points = sorted((p for p in points if records.get(p.index)), key=lambda p: p.params["n_samples"])
    exponent = stability.instability_exponent(law)
    summary = Summary(kind=KIND)
    summary.notes.append(
        "Loss convention: (1/(2D)) ||Phi theta - y||^2, so GD diverges exactly when eta * lambda_max(H) > 2, "
        "H = Phi^T Phi / D. eta " + ("is relative to lambda_max of the population Hessian F diag(E x_i^2) F^T "
                                     "of the fixed feature matrix F." if config.fit.eta_unit == ETA_RELATIVE
                                     else "is absolute.")
    )
    summary.notes.append(
        "P(unstable): fraction of draws with eta * lambda_max(H) > 2, Wilson 95% intervals. Exponent: maximum-"
        "likelihood fit of P = 1 - exp(-A D^b), 95% interval by parametric bootstrap of the counts "
        f"({config.analysis.bootstrap} resamples). 'spike' is the rare-spike sum mu(D) with the bulk left out; "
        "'spike+bulk' adds the push of the rest of H on the spike (both conjecture)."
    )
    if math.isnan(exponent):
        summary.notes.append(
            f"s = {law.s:g} <= 1 + alpha = {1 + law.effective_alpha:g}: the loud coordinates are frequent ones, "
            "so no power law in D is predicted; P(unstable) falls faster than any power of D. The exponent "
            "fitted anyway and the goodness-of-fit p-value show how far the data are from a power law."
        )

    rows = []
    curves = {"points": [], "steps": [], "learning": []}
    for n_index, n in enumerate(n_features):
        scale = feature_scale(n, config.student.normalization)
        spectrum = population_spectrum(law, feature_key, n, config.student.normalization)
        for e_index, eta_relative in enumerate(etas_relative):
            eta = float(etas[n_index, e_index])
            threshold = stability.spike_threshold(eta, scale, n)
            gain = stability.SpikeGain.from_bulk(spectrum, 2.0 / eta)
            series = _series(points, records, n_index, eta, law, threshold, gain)
            for entry in series:
                rows.append({"N": n, "eta": eta_relative, **entry})
            _add_laws(config, summary, series, n, eta_relative, exponent)
            curves["points"].append({
                "n_features": n, "eta": eta_relative, "eta_absolute": eta, "gain_mean": gain.moment(1.0),
                "n_samples": [s["D"] for s in series], "p_unstable": [s["p_unstable"] for s in series],
                "low": [s["ci95"][0] for s in series], "high": [s["ci95"][1] for s in series],
                "spike": [s["p_spike"] for s in series], "spike_bulk": [s["p_spike_bulk"] for s in series],
                **_asymptote_curve(law, points, threshold, gain),
            })
    summary.tables["p_unstable"] = rows
    _learning_curves(config, points, records, curves, summary)
    summary.curves = curves
    return summary


def _series(points, records, n_index, eta, law, threshold, gain) -> list[dict]:
    series = []
    for point in points:
        rows = records[point.index]
        top = np.concatenate([np.asarray(r["top_eigenvalue"], dtype=float).reshape(-1, np.shape(
            r["eta_absolute"])[0])[:, n_index] for r in rows])
        unstable = int(np.count_nonzero(eta * top > 2))
        draws = int(top.size)
        d = point.params["n_samples"]
        spike = stability.unstable_probability(stability.instability_rate(law, d, threshold))
        spike_bulk = stability.unstable_probability(stability.instability_rate(law, d, threshold, gain))
        series.append({
            "D": d, "draws": draws, "unstable": unstable, "p_unstable": unstable / draws,
            "ci95": list(wilson_interval(unstable, draws)), "p_spike": spike, "p_spike_bulk": spike_bulk,
            "median_top_eigenvalue_x_eta": float(np.median(top) * eta),
        })
    return series


def _add_laws(config, summary: Summary, series, n_features, eta_relative, exponent) -> None:
    window = [s for s in series if s["D"] >= config.analysis.fit_min_samples]
    label = f"N={n_features}, eta={eta_relative:g}"
    text = f"D in [{window[0]['D']}, {window[-1]['D']}]" if window else "no D in the window"
    theory = None if math.isnan(exponent) else exponent
    d = np.array([s["D"] for s in window], dtype=float)
    unstable = np.array([s["unstable"] for s in window])
    draws = np.array([s["draws"] for s in window])
    fit = fit_power_law(d, unstable, draws) if window else None
    if fit is None:
        summary.laws.append(Law(f"P(unstable) exponent in D ({label})", None, None, theory, "asymptote", text,
                                "fewer than 2 values of D with an unstable draw"))
    else:
        ci = _bootstrap_exponent(d, unstable, draws, config.analysis.bootstrap, config.seed)
        deviance = _deviance(fit, d, unstable, draws)
        dof = max(len(window) - 2, 1)
        p_value = float(stats.chi2.sf(deviance, dof))
        note = f"power-law goodness of fit: deviance {deviance:.1f} on {dof} dof, p = {p_value:.3g}"
        if theory is None:
            note += "; no power law predicted (s <= 1 + alpha)"
        summary.laws.append(Law(f"P(unstable) exponent in D ({label})", fit[1], ci, theory, "asymptote", text, note))

    if theory is None:
        # The spike sums are astronomically small here; the unstable draws come from the bulk of H at small D.
        return
    total = int(unstable.sum())
    for name, key in (("spike", "p_spike"), ("spike+bulk", "p_spike_bulk")):
        expected = float(sum(s["draws"] * s[key] for s in window))
        if expected <= 0 or not math.isfinite(expected):
            continue
        low, high = poisson_interval(total)
        summary.laws.append(Law(
            f"level: unstable / predicted, {name} ({label})", total / expected, (low / expected, high / expected),
            1.0, "conjecture", text, f"{total} unstable draws against {expected:.1f} predicted",
        ))


def _asymptote_curve(law, points, threshold, gain) -> dict:
    if not points:
        return {"theory_n_samples": [], "asymptote": [], "asymptote_bulk": []}
    d_min = min(p.params["n_samples"] for p in points)
    d_max = max(p.params["n_samples"] for p in points)
    grid = np.geomspace(d_min, d_max, 40)
    plain = [stability.unstable_probability(stability.instability_rate_asymptote(law, d, threshold)) for d in grid]
    bulk = [stability.unstable_probability(stability.instability_rate_asymptote(law, d, threshold, gain))
            for d in grid]
    return {"theory_n_samples": grid.tolist(), "asymptote": plain, "asymptote_bulk": bulk}


def _learning_curves(config, points, records, curves, summary: Summary) -> None:
    """Summarize the GD runs: learning curves of stable runs, divergence checks, GD at T against min-norm."""
    if config.curves_per_trial == 0:
        return
    etas_relative = config.etas()
    check_rows = []
    for point in points:
        rows = records[point.index]
        steps = np.asarray(rows[0]["steps"], dtype=float)
        curves["steps"] = steps.tolist()
        loss = np.concatenate([np.asarray(r["curve_loss"], dtype=float) for r in rows])
        crossing = np.concatenate([np.asarray(r["curve_crossing_step"], dtype=float) for r in rows])
        top = np.concatenate([np.asarray(r["curve_top_eigenvalue"], dtype=float) for r in rows])
        min_norm = np.concatenate([np.asarray(r["curve_min_norm_loss"], dtype=float) for r in rows])
        eta_absolute = np.asarray(rows[0]["eta_absolute"], dtype=float)
        for n_index, n in enumerate(config.sweep.n_features):
            for e_index, eta_relative in enumerate(etas_relative):
                unstable = eta_absolute[n_index, e_index] * top[:, n_index] > 2
                crossed = crossing[:, n_index, e_index] >= 0
                stable = ~unstable
                runs = loss[stable, n_index, e_index]
                entry = {"n_samples": point.params["n_samples"], "n_features": n, "eta": eta_relative,
                         "stable_runs": int(stable.sum())}
                if stable.any():
                    entry["median"] = np.median(runs, axis=0).tolist()
                    entry["q25"] = np.quantile(runs, 0.25, axis=0).tolist()
                    entry["q75"] = np.quantile(runs, 0.75, axis=0).tolist()
                    entry["min_norm_median"] = float(np.median(min_norm[stable, n_index]))
                curves["learning"].append(entry)
                final_gap = (runs[:, -1] - min_norm[stable, n_index]) / min_norm[stable, n_index] if stable.any() \
                    else np.zeros(0)
                check_rows.append({
                    "D": point.params["n_samples"], "N": n, "eta": eta_relative, "runs": int(unstable.size),
                    "unstable_runs": int(unstable.sum()), "unstable_that_crossed": int((unstable & crossed).sum()),
                    "stable_that_crossed": int((stable & crossed).sum()),
                    "median_rel_gap_to_min_norm_at_T": float(np.median(final_gap)) if final_gap.size else None,
                })
    summary.tables["gd_runs"] = check_rows
    stable_crossed = sum(r["stable_that_crossed"] for r in check_rows)
    stable_total = sum(r["runs"] - r["unstable_runs"] for r in check_rows)
    if stable_total:
        summary.laws.append(Law(
            "GD runs with eta*lambda_max <= 2 that crossed 1e6 x start", stable_crossed / stable_total,
            wilson_interval(stable_crossed, stable_total), 0.0, "exact", f"{stable_total} trained runs",
            "a run diverges only if eta * lambda_max(H) > 2",
        ))
    summary.notes.append(
        f"Learning curves: the first {config.curves_per_trial} draws of each trial are trained for "
        f"{config.fit.steps} steps (closed form). Unstable runs are recorded with the step where the training loss "
        "crossed 1e6 times its start and +inf after it; they are left out of the learning curves, never averaged. "
        "'median rel gap to min norm at T' compares the final population loss of stable runs with the "
        "minimum-norm solution on the same draw."
    )


# ---- figure -------------------------------------------------------------------------------


def plot(config, points, records, summary: Summary, directory: Path) -> list[Path]:
    from ..plotting import plot_gd_stability

    path = directory / "gd_stability.png"
    plot_gd_stability(summary, path, title=config.name or KIND)
    return [path]
