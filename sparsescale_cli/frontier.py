"""Compute-optimal N*, D* and loss at given budgets, as ``sparsescale frontier`` prints them.

Three sources of the law L(N, D) = E + A N^-a_N + B D^-a_D:

- theory: the constants the model implies for (alpha, s, c, sigma, beta);
- a results file of a ``compute_frontier`` run: the law fitted to its
  simulated losses (best ridge per point, as the run's analysis does);
- a CSV table of (N, D, loss) rows, for example measured on real networks.

Fitted laws come with 95% percentile bootstrap intervals (over replicates
when the table has them, over rows otherwise).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import fitting
from .errors import FrontierInputError
from .model.frontier import AdditiveLaw, cost_multiplier, dense_counterpart, theory_law
from .model.laws import DataLaw, Teacher

REQUIRED_COLUMNS = ("N", "D", "loss")
REPLICATE_COLUMN = "replicate"
MIN_ROWS = 6
MIN_DISTINCT = 3
MAX_BUDGET_COUNT = 1000


def parse_budgets(text: str) -> list[float]:
    """Parse one budget (``1e9``) or a log-spaced range ``start:stop:count`` (``1e6:1e12:13``)."""
    parts = text.split(":")
    if len(parts) not in (1, 3):
        raise FrontierInputError(f"--budget {text!r}: expected one number or START:STOP:COUNT, e.g. 1e6:1e12:13")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise FrontierInputError(f"--budget {text!r}: expected numbers, e.g. 1e9 or 1e6:1e12:13") from None
    for value in values[:2]:
        if not (math.isfinite(value) and value > 0):
            raise FrontierInputError(f"--budget {text!r}: budgets must be positive and finite, got {value:g}")
    if len(values) == 1:
        return values
    start, stop, count = values
    if count != int(count) or not 1 <= count <= MAX_BUDGET_COUNT:
        raise FrontierInputError(f"--budget {text!r}: COUNT must be an integer from 1 to {MAX_BUDGET_COUNT}, "
                                 f"got {count:g}")
    if stop < start:
        raise FrontierInputError(f"--budget {text!r}: STOP {stop:g} is below START {start:g}")
    return [float(v) for v in np.geomspace(start, stop, int(count))]


def model_law(alpha: float, s: float, c: float, noise: float, beta: float) -> tuple[DataLaw, Teacher]:
    """Return the data law and teacher of the command's model options, rejecting values out of range."""
    checks = [
        (0 < alpha <= 20, f"--alpha must be in (0, 20], got {alpha:g}"),
        (s == 0 or 1 < s <= 50, f"--s must be 0 (the dense model) or in (1, 50], got {s:g}; for 0 < s <= 1 the "
                                "data-limited loss depends on a finite M, which the frontier theory does not model"),
        (c > 0, f"--c must be positive, got {c:g}"),
        (noise >= 0, f"--noise must be non-negative, got {noise:g}"),
        (0 <= beta < 1, f"--beta must be in [0, 1), got {beta:g}"),
    ]
    for valid, message in checks:
        if not (valid and all(math.isfinite(v) for v in (alpha, s, c, noise, beta))):
            raise FrontierInputError(message if not valid else "model options must be finite numbers")
    law = DataLaw(alpha=alpha, s=s, c=c, M=math.inf) if s > 1 else dense_counterpart(DataLaw(alpha, 2.0))
    return law, Teacher(beta=beta, noise=noise)


@dataclass
class FittedSource:
    """A law fitted to a table, its bootstrap, and where the table came from."""

    bootstrap: fitting.BootstrapFit
    description: str
    theory: AdditiveLaw | None = None
    dense: AdditiveLaw | None = None
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def read_loss_table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a CSV of (N, D, loss) rows, with an optional ``replicate`` column.

    Returns
    -------
    n_features, n_samples : ndarray, shape (P,)
        The distinct (N, D) points.
    loss_rows : ndarray, shape (R, P)
        Loss of each replicate at each point (nan where missing); R = 1
        without a replicate column, each CSV row then being its own point.
    """
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise FrontierInputError(f"{path}: file not found") from None
    except OSError as error:
        raise FrontierInputError(f"{path}: cannot read the file ({error.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise FrontierInputError(f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                                     f"{', '.join(REQUIRED_COLUMNS)} (found: {', '.join(columns) or 'no header'})")
        reader.fieldnames = columns
        values: list[tuple[float, float, float, str]] = []
        for row in reader:
            line = reader.line_num
            parsed = []
            for name in REQUIRED_COLUMNS:
                text = (row.get(name) or "").strip()
                try:
                    value = float(text)
                except ValueError:
                    raise FrontierInputError(f"{path}:{line}: column {name}: expected a number, got {text!r}") from None
                if not (math.isfinite(value) and value > 0):
                    raise FrontierInputError(f"{path}:{line}: column {name}: values must be positive and finite, "
                                             f"got {text}")
                parsed.append(value)
            replicate = (row.get(REPLICATE_COLUMN) or "").strip() if REPLICATE_COLUMN in columns else ""
            values.append((*parsed, replicate))

    table = np.array([v[:3] for v in values], dtype=float).reshape(-1, 3)
    distinct_n = np.unique(table[:, 0]).size
    distinct_d = np.unique(table[:, 1]).size
    if len(values) < MIN_ROWS or distinct_n < MIN_DISTINCT or distinct_d < MIN_DISTINCT:
        raise FrontierInputError(
            f"{path}: too few rows to fit the law: {len(values)} rows with {distinct_n} distinct N and {distinct_d} "
            f"distinct D; need at least {MIN_ROWS} rows with {MIN_DISTINCT} distinct values of each"
        )
    if REPLICATE_COLUMN not in columns:
        return table[:, 0], table[:, 1], table[:, 2][None, :]

    points = sorted({(n, d) for n, d, _ in table})
    replicates = sorted({v[3] for v in values})
    column = {point: j for j, point in enumerate(points)}
    row_of = {name: i for i, name in enumerate(replicates)}
    loss_rows = np.full((len(replicates), len(points)), np.nan)
    for (n, d, loss), (*_, replicate) in zip(table, values):
        loss_rows[row_of[replicate], column[(n, d)]] = loss
    n_features = np.array([p[0] for p in points])
    n_samples = np.array([p[1] for p in points])
    return n_features, n_samples, loss_rows


def fit_csv(path: Path, floor: float | None, delta: float, n_resamples: int, seed: int) -> FittedSource:
    """Fit the additive law to a CSV table and bootstrap it."""
    n_features, n_samples, loss_rows = read_loss_table(path)
    bootstrap = fitting.bootstrap_additive_law(n_features, n_samples, loss_rows, floor, delta, n_resamples, seed)
    return FittedSource(bootstrap, f"fit to {path} ({loss_rows.shape[0]} replicate(s) x {n_features.size} points)",
                        rows=int(np.isfinite(loss_rows).sum()))


def fit_results(path: Path, delta: float, n_resamples: int, seed: int) -> FittedSource:
    """Fit the additive law to the simulated losses of a ``compute_frontier`` results file."""
    from .experiments import compute_frontier
    from .experiments.base import Point
    from .loading import config_from_text
    from .store import read_results

    contents = read_results(path)
    kind = contents.attributes.get("kind")
    if kind != compute_frontier.KIND:
        raise FrontierInputError(f"{path}: contains a {kind!r} run; --results needs a {compute_frontier.KIND} run "
                                 "(or use --csv with a table of N, D, loss)")
    config = config_from_text(contents.attributes["config_yaml"], f"{path}:config_yaml")
    points = [Point(p["index"], p["label"], p["params"]) for p in contents.points]
    records = {index: rows for index, rows in contents.records.items() if rows}
    if not records:
        raise FrontierInputError(f"{path}: no finished trials to fit")
    n_features, n_samples, loss_rows = compute_frontier.tuned_loss_table(config, points, records)
    law, teacher = config.data.law(), config.teacher.teacher()
    floor = teacher.noise**2 if config.analysis.floor == "known" else None
    bootstrap = fitting.bootstrap_additive_law(n_features, n_samples, loss_rows, floor, delta, n_resamples, seed)
    theory = compute_frontier.theory_additive_law(config)
    dense = theory_law(dense_counterpart(law), teacher)
    return FittedSource(bootstrap, f"fit to the simulated losses in {path}", theory, dense,
                        rows=int(np.isfinite(loss_rows).sum()))


def optimum_row(law: AdditiveLaw, budget: float, multiplier: float) -> dict[str, Any]:
    optimum = law.optimum(budget, multiplier)
    n_exponent, d_exponent = law.frontier_exponents()
    return {"budget": budget, "N": optimum.n_features, "D": optimum.n_samples, "loss": optimum.loss,
            "N_exponent": n_exponent, "D_exponent": d_exponent}


def theory_rows(law: AdditiveLaw, dense: AdditiveLaw, budgets: list[float], multiplier: float) -> list[dict]:
    """Return one row per budget from the theory law, with the dense model beside it."""
    rows = []
    for budget in budgets:
        row = optimum_row(law, budget, multiplier)
        row.update({"N_ci95": None, "D_ci95": None, "loss_ci95": None, "source": "theory",
                    "status": {"N": "conjecture", "D": "conjecture", "loss": "conjecture",
                               "exponents": "asymptote"}})
        row["dense"] = optimum_row(dense, budget, multiplier)
        rows.append(row)
    return rows


def fitted_rows(source: FittedSource, budgets: list[float], multiplier: float) -> list[dict]:
    """Return one row per budget from a fitted law, each value with its 95% bootstrap interval."""
    bootstrap = source.bootstrap
    rows = []
    for budget in budgets:
        row = optimum_row(bootstrap.fit.law, budget, multiplier)
        resampled = [law.optimum(budget, multiplier) for law in bootstrap.resampled]
        row["N_ci95"] = list(fitting.percentile_interval(np.array([o.n_features for o in resampled])))
        row["D_ci95"] = list(fitting.percentile_interval(np.array([o.n_samples for o in resampled])))
        row["loss_ci95"] = list(fitting.percentile_interval(np.array([o.loss for o in resampled])))
        row["N_exponent_ci95"] = list(bootstrap.interval(lambda law: law.frontier_exponents()[0]))
        row["D_exponent_ci95"] = list(bootstrap.interval(lambda law: law.frontier_exponents()[1]))
        row["source"] = "fit"
        row["status"] = {"N": "conjecture", "D": "conjecture", "loss": "conjecture", "exponents": "conjecture"}
        row["fit_status"] = bootstrap.fit.status()
        row["theory"] = optimum_row(source.theory, budget, multiplier) if source.theory else None
        row["dense"] = optimum_row(source.dense, budget, multiplier) if source.dense else None
        rows.append(row)
    return rows


def multiplier_for(cost: str, steps: float | None) -> float:
    """Return k in C = k N D, turning an invalid cost model into a one-line error."""
    try:
        return cost_multiplier(cost, steps)
    except ValueError as error:
        raise FrontierInputError(f"--cost {cost}: {error}") from None
