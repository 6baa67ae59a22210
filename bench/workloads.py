"""The six benchmark workloads, each a function that returns rows for the report.

Every row compares sparsescale ("ours") with a reference measured in the
same run, as a ratio checked against a target. Speed-up rows have
ratio = reference / ours; flatness rows have ratio = largest / smallest;
the DGEMM row has ratio = our rate / DGEMM rate; the parallel row has
ratio = wall time with --jobs 2 / serial wall time.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.linear import (
    INVERSE_N,
    LinearProblem,
    draw_training_set,
    feature_scale,
    seen_feature_columns,
)
from sparsescale_cli.model.sampler import sample_batch
from sparsescale_cli.model.solvers import range_basis, solve_ridge

from . import measure, reference

REPOSITORY = Path(__file__).resolve().parents[1]
QUICK_CONFIG = REPOSITORY / "configs" / "quick" / "double_descent.yaml"
_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
# s = 1.5 keeps many coordinates in the tail, so the number seen, K(D), is large.
# s = 2 is the law of configs/quick/double_descent.yaml.
TAIL_HEAVY = {"alpha": 1.0, "s": 1.5, "c": 1.0}
QUICK = {"alpha": 1.0, "s": 2.0, "c": 1.0}
TEACHER = Teacher()
FEATURE_SEED = 2
TEACHER_SEED = 1
# scikit-learn's ridge penalty, alpha ||theta||^2 with no 1/D: small enough to leave the fit
# at min-norm least squares wherever the features have full column rank.
SKLEARN_ALPHA = 1e-8


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of every workload: ``FULL`` for the benchmark, ``SMOKE`` to check the harness."""

    sample_n_samples: int
    sample_coordinates: int
    flat_coordinates: tuple[float, ...]
    memory_n_samples: int
    memory_n_features: int
    trial_n_samples: int
    trial_n_features: int
    trial_coordinates: int
    sweep_n_samples: int
    sweep_points: int
    repeats: int
    parallel_overrides: tuple[str, ...] = ()


FULL = Sizes(
    sample_n_samples=10_000,
    sample_coordinates=100_000,
    flat_coordinates=(1e4, 1e5, 1e6, 1e7, 1e8, 1e9, math.inf),
    memory_n_samples=10_000,
    memory_n_features=512,
    trial_n_samples=20_000,
    trial_n_features=1000,
    trial_coordinates=100_000,
    sweep_n_samples=10_000,
    sweep_points=25,
    repeats=5,
)

SMOKE = Sizes(
    sample_n_samples=200,
    sample_coordinates=2000,
    flat_coordinates=(1e3, 1e6, math.inf),
    memory_n_samples=200,
    memory_n_features=16,
    trial_n_samples=300,
    trial_n_features=20,
    trial_coordinates=2000,
    sweep_n_samples=300,
    sweep_points=4,
    repeats=1,
    parallel_overrides=(
        "replicates=2",
        "sweep.n_sweep.n_samples=[100]",
        "sweep.n_sweep.n_features={start: 2, stop: 50, num: 3}",
        "sweep.d_sweep.n_samples={start: 50, stop: 200, num: 3}",
        "analysis.bootstrap=100",
    ),
)


@dataclass
class Settings:
    """How to run the workloads.

    ``clock`` is ``"wall"`` or ``"cpu"``, the CPU seconds of this process,
    which other load on the machine barely changes. Use "cpu" only when BLAS
    runs one thread, because it adds up the time of all threads.
    ``threads`` is the BLAS thread count given to subprocesses, 0 for the
    library default.
    """

    sizes: Sizes
    clock: str = measure.CPU
    threads: int = 1
    config_path: Path = QUICK_CONFIG
    log: Callable[[str], None] = field(default=lambda message: None)


def make_row(workload: str, ours: float, reference_value: float, ratio: float, comparison: str, target: float,
             unit: str, notes: dict[str, Any]) -> dict[str, Any]:
    """Build one report row, met when ``ratio`` is on the ``comparison`` (">=" or "<=") side of ``target``."""
    met = ratio >= target if comparison == ">=" else ratio <= target
    return {
        "workload": workload,
        "ours": ours,
        "reference": reference_value,
        "ratio": ratio,
        "target": f"{comparison} {target:g}",
        "met": bool(met and math.isfinite(ratio)),
        "unit": unit,
        "notes": notes,
    }


def _law(shape: dict[str, float], n_coordinates: float) -> DataLaw:
    return DataLaw(M=n_coordinates, **shape)


def _coordinates_label(n_coordinates: float) -> str:
    return "inf" if math.isinf(n_coordinates) else f"{n_coordinates:.0e}"


def _blas_environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    if threads > 0:
        for name in _BLAS_THREAD_VARIABLES:
            env[name] = str(threads)
    return env


# ---- 1. sampling ---------------------------------------------------------------------------


def sampling_rows(settings: Settings) -> list[dict[str, Any]]:
    """Time the sampler against a dense Bernoulli mask, then across M at fixed D."""
    sizes, clock = settings.sizes, settings.clock
    n_samples = sizes.sample_n_samples
    law = _law(TAIL_HEAVY, sizes.sample_coordinates)

    settings.log(f"1. sampling D={n_samples}, M={sizes.sample_coordinates}: sparsescale")
    ours, batch = measure.time_best(lambda: sample_batch(law, n_samples, np.random.default_rng(0)), sizes.repeats,
                                    clock)
    settings.log("1. sampling: naive dense mask")
    naive, dense = measure.time_best(lambda: reference.naive_sample(law, n_samples, np.random.default_rng(0)), 1, clock)
    speed_row = make_row(
        f"1. sample D x M batch (D={n_samples}, M={sizes.sample_coordinates:.0e}) vs naive dense mask",
        ours.seconds(clock), naive.seconds(clock), naive.seconds(clock) / ours.seconds(clock), ">=", 100, "s",
        {"law": TAIL_HEAVY, "naive_coordinates": sizes.sample_coordinates,
         "nnz_ours": int(batch.matrix.nnz), "nnz_naive": int(dense.nnz),
         "wall_ours": ours.wall, "wall_naive": naive.wall},
    )

    settings.log("1. sampling across M")
    per_coordinates = {}
    for n_coordinates in sizes.flat_coordinates:
        law = _law(TAIL_HEAVY, n_coordinates)
        timing, batch = measure.time_best(lambda: sample_batch(law, n_samples, np.random.default_rng(0)),
                                          sizes.repeats, clock)
        per_coordinates[_coordinates_label(n_coordinates)] = {"seconds": timing.seconds(clock),
                                                              "n_seen": batch.n_seen, "nnz": int(batch.matrix.nnz)}
    seconds = [entry["seconds"] for entry in per_coordinates.values()]
    flat_row = make_row(
        f"1. sampler cost from M={sizes.flat_coordinates[0]:.0e} to M=inf (D={n_samples}): max / min",
        max(seconds), min(seconds), max(seconds) / min(seconds), "<=", 2, "s",
        {"law": TAIL_HEAVY, "by_coordinates": per_coordinates},
    )
    return [speed_row, flat_row]


# ---- 2. memory -----------------------------------------------------------------------------


def memory_rows(settings: Settings) -> list[dict[str, Any]]:
    """Measure the peak RSS of one linear trial in a subprocess at each M."""
    sizes = settings.sizes
    env = _blas_environment(1)
    n_samples, n_features = sizes.memory_n_samples, sizes.memory_n_features
    arguments = ["--alpha", str(TAIL_HEAVY["alpha"]), "--s", str(TAIL_HEAVY["s"])]

    settings.log("2. memory: interpreter baseline")
    _, baseline = measure.run_python_json("bench.memory_probe", [str(n_samples), "0", "inf", *arguments], env=env)
    per_coordinates = {}
    for n_coordinates in sizes.flat_coordinates:
        settings.log(f"2. memory: M={_coordinates_label(n_coordinates)}")
        _, output = measure.run_python_json(
            "bench.memory_probe", [str(n_samples), str(n_features), repr(float(n_coordinates)), *arguments], env=env)
        per_coordinates[_coordinates_label(n_coordinates)] = {
            "peak_rss_mib": output["peak_rss_bytes"] / 2**20,
            "above_baseline_mib": (output["peak_rss_bytes"] - baseline["peak_rss_bytes"]) / 2**20,
            "n_seen": output["n_seen"], "nnz": output["nnz"], "rank": output["rank"],
        }
    peaks = [entry["peak_rss_mib"] for entry in per_coordinates.values()]
    return [make_row(
        f"2. peak RSS of one trial (D={n_samples}, N={n_features}) from M={sizes.flat_coordinates[0]:.0e} "
        "to M=inf: max / min",
        max(peaks), min(peaks), max(peaks) / min(peaks), "<=", 1.5, "MiB",
        {"law": TAIL_HEAVY, "interpreter_baseline_mib": baseline["peak_rss_bytes"] / 2**20,
         "by_coordinates": per_coordinates},
    )]


# ---- 3. one trial end to end ----------------------------------------------------------------


def _our_trial(law: DataLaw, n_samples: int, n_features: int, seed: int) -> float:
    training = draw_training_set(law, TEACHER, n_samples, np.random.default_rng(seed), TEACHER_SEED)
    problem = LinearProblem(law, TEACHER, training)
    scale = feature_scale(n_features, INVERSE_N)
    columns = seen_feature_columns(FEATURE_SEED, training.batch.coords, n_features)
    return problem.fit_features(scale * columns, 0.0, scale).loss


def trial_rows(settings: Settings) -> list[dict[str, Any]]:
    """Time one trial against the naive code, and our fit against scikit-learn's Ridge."""
    sizes, clock = settings.sizes, settings.clock
    n_samples, n_features, n_coordinates = sizes.trial_n_samples, sizes.trial_n_features, sizes.trial_coordinates
    law = _law(TAIL_HEAVY, n_coordinates)

    settings.log(f"3. trial D={n_samples}, N={n_features}, M={n_coordinates}: sparsescale")
    ours, our_loss = measure.time_best(lambda: _our_trial(law, n_samples, n_features, 0), sizes.repeats, clock)
    settings.log("3. trial: naive dense reference")
    scale = feature_scale(n_features, INVERSE_N)
    naive, naive_fit = measure.time_best(
        lambda: reference.naive_trial(law, TEACHER, n_samples, n_features, scale, np.random.default_rng(0)), 1, clock)
    rows = [make_row(
        f"3. one trial end to end (D={n_samples}, N={n_features}, M={n_coordinates:.0e}) vs naive dense code",
        ours.seconds(clock), naive.seconds(clock), naive.seconds(clock) / ours.seconds(clock), ">=", 20, "s",
        {"law": TAIL_HEAVY, "loss_ours": our_loss, "loss_naive": naive_fit.loss,
         "wall_ours": ours.wall, "wall_naive": naive.wall,
         "note": "the two losses come from independent draws, so they agree only in distribution"},
    )]
    for shape in (TAIL_HEAVY, QUICK):
        rows.append(_sklearn_row(settings, _law(shape, n_coordinates), shape))
    return rows


def _sklearn_row(settings: Settings, law: DataLaw, shape: dict[str, float]) -> dict[str, Any]:
    from sklearn.linear_model import Ridge

    sizes, clock = settings.sizes, settings.clock
    n_samples, n_features = sizes.trial_n_samples, sizes.trial_n_features
    training = draw_training_set(law, TEACHER, n_samples, np.random.default_rng(1), TEACHER_SEED)
    scale = feature_scale(n_features, INVERSE_N)
    features = scale * seen_feature_columns(FEATURE_SEED, training.batch.coords, n_features)

    settings.log(f"3. fit vs scikit-learn, s={shape['s']:g}")
    ours, fit = measure.time_best(
        lambda: LinearProblem(law, TEACHER, training).fit_features(features, 0.0, scale), sizes.repeats, clock)
    materialize, design = measure.time_call(lambda: np.asarray(training.batch.matrix @ features.T))
    model = Ridge(alpha=SKLEARN_ALPHA, fit_intercept=False)
    sklearn, _ = measure.time_best(lambda: model.fit(design, training.labels), sizes.repeats, clock)
    problem = LinearProblem(law, TEACHER, training)
    return make_row(
        f"3. fit on given features (D={n_samples}, N={n_features}, s={shape['s']:g}) vs scikit-learn Ridge",
        ours.seconds(clock), sklearn.seconds(clock), sklearn.seconds(clock) / ours.seconds(clock), ">=", 2, "s",
        {"law": shape, "n_seen": training.batch.n_seen, "rank": problem.data_rank,
         "sklearn_solver": getattr(model, "solver_", None), "sklearn_alpha": SKLEARN_ALPHA,
         "materialize_features_seconds": materialize.seconds(clock),
         "theta_norm_ours": fit.theta_norm, "theta_norm_sklearn": float(np.linalg.norm(model.coef_)),
         "scope": "ours: range basis, SVD fit and population loss from X, y and F; "
                  "scikit-learn: Ridge.fit on the materialized D x N features (materializing not timed)"},
    )


# ---- 4. dominant dense step against DGEMM ---------------------------------------------------


def tridiagonal_reduction_flops(n: int) -> float:
    """Return 4/3 n^3, the leading flop count of DSYTRD (LAPACK Working Note 41, appendix C)."""
    return 4.0 / 3.0 * n**3


def bidiagonal_reduction_flops(m: int, n: int) -> float:
    """Return 4 m n^2 - 4/3 n^3 for m >= n, the leading flop count of DGEBRD (LAPACK Working Note 41)."""
    m, n = max(m, n), min(m, n)
    return 4.0 * m * n**2 - 4.0 / 3.0 * n**3


def dense_step_rows(settings: Settings) -> list[dict[str, Any]]:
    """Time each dense step of one trial and compare its rate with a same-size DGEMM."""
    sizes, clock = settings.sizes, settings.clock
    n_samples, n_features = sizes.trial_n_samples, sizes.trial_n_features
    law = _law(TAIL_HEAVY, sizes.trial_coordinates)
    training = draw_training_set(law, TEACHER, n_samples, np.random.default_rng(0), TEACHER_SEED)
    scale = feature_scale(n_features, INVERSE_N)
    features = scale * seen_feature_columns(FEATURE_SEED, training.batch.coords, n_features)

    settings.log("4. dense steps of one trial")
    basis_time, basis = measure.time_best(lambda: range_basis(training.batch.matrix, training.labels),
                                          sizes.repeats, clock)
    design_time, design = measure.time_best(lambda: basis.coefficients @ features.T, sizes.repeats, clock)
    solve_time, _ = measure.time_best(lambda: solve_ridge(design, basis.targets, 0.0, n_samples=n_samples),
                                      sizes.repeats, clock)
    n_seen, rank = training.batch.n_seen, basis.rank
    tall, short = max(rank, n_features), min(rank, n_features)
    # Each step with its time, nominal flops and the shape (m, k, n) of a same-size product.
    steps = {
        f"range basis: eigh of the {n_seen} x {n_seen} Gram": (
            basis_time, tridiagonal_reduction_flops(n_seen), (n_seen, n_seen, n_seen)),
        f"min-norm solve: SVD of the {rank} x {n_features} design": (
            solve_time, bidiagonal_reduction_flops(tall, short), (short, tall, short)),
        f"design C F^T: ({rank} x {n_seen}) times ({n_seen} x {n_features})": (
            design_time, measure.gemm_flops(rank, n_seen, n_features), (rank, n_seen, n_features)),
    }
    details = {}
    for name, (timing, flops, shape) in steps.items():
        seconds = timing.seconds(clock)
        rate = flops / max(seconds, 1e-9) / 1e9
        gemm = measure.dgemm_rate(*shape, repeats=max(2, sizes.repeats), clock=clock)
        details[name] = {"seconds": seconds, "nominal_gflop": flops / 1e9, "gflops": rate,
                         "dgemm_gflops": gemm, "gemm_shape": list(shape), "fraction": rate / gemm}
    dominant = max(details, key=lambda name: details[name]["seconds"])
    chosen = details[dominant]
    return [make_row(
        f"4. dominant dense step of a trial ({dominant}) vs same-size DGEMM rate",
        chosen["gflops"], chosen["dgemm_gflops"], chosen["fraction"], ">=", 0.5, "GFLOP/s",
        {"law": TAIL_HEAVY, "steps": details,
         "flop_counts": "eigh and SVD are credited with the leading flop count of their reduction to "
                        "tridiagonal (4/3 n^3) or bidiagonal (4 m n^2 - 4/3 n^3) form only (LAPACK Working "
                        "Note 41), a lower bound on their work, so their fraction is a lower bound too"},
    )]


# ---- 5. sweep over N -------------------------------------------------------------------------


def _sweep_reusing(law: DataLaw, n_samples: int, grid: list[int]) -> list[float]:
    training = draw_training_set(law, TEACHER, n_samples, np.random.default_rng(0), TEACHER_SEED)
    problem = LinearProblem(law, TEACHER, training)
    columns = seen_feature_columns(FEATURE_SEED, training.batch.coords, max(grid))
    losses = []
    for n_features in grid:
        scale = feature_scale(n_features, INVERSE_N)
        losses.append(problem.fit_features(scale * columns[:n_features], 0.0, scale).loss)
    return losses


def _sweep_recomputing(law: DataLaw, n_samples: int, grid: list[int]) -> list[float]:
    return [_our_trial(law, n_samples, n_features, 0) for n_features in grid]


def feature_grid(rank: int, points: int) -> list[int]:
    """Return ``points`` distinct N, geometrically spaced from 2 to 4 x rank(X), across the peak at N = rank."""
    top = max(4 * rank, 2 * points)
    grid = np.unique(np.round(np.geomspace(2, top, points)).astype(int))
    # Rounding merges neighbours among the small N; fill the gaps with the smallest unused integers.
    missing = points - grid.size
    extra = [n for n in range(2, top) if n not in set(grid.tolist())][:missing]
    return sorted(grid.tolist() + extra)


def sweep_rows(settings: Settings) -> list[dict[str, Any]]:
    """Time a sweep over N that reuses one draw and nested features against one trial per N."""
    sizes, clock = settings.sizes, settings.clock
    n_samples = sizes.sweep_n_samples
    rows = []
    for shape in (TAIL_HEAVY, QUICK):
        law = _law(shape, math.inf)
        training = draw_training_set(law, TEACHER, n_samples, np.random.default_rng(0), TEACHER_SEED)
        rank = LinearProblem(law, TEACHER, training).data_rank
        grid = feature_grid(rank, sizes.sweep_points)
        settings.log(f"5. sweep over {len(grid)} values of N, s={shape['s']:g}")
        # One repeat: a sweep lasts seconds, so timer noise is small beside it.
        reusing, reused_losses = measure.time_call(lambda: _sweep_reusing(law, n_samples, grid))
        recomputing, fresh_losses = measure.time_call(lambda: _sweep_recomputing(law, n_samples, grid))
        difference = float(np.max(np.abs(np.array(reused_losses) / np.array(fresh_losses) - 1)))
        rows.append(make_row(
            f"5. sweep over {len(grid)} values of N (D={n_samples}, M=inf, s={shape['s']:g}): "
            "reuse vs recompute",
            reusing.seconds(clock), recomputing.seconds(clock), recomputing.seconds(clock) / reusing.seconds(clock),
            ">=", 5, "s",
            {"law": shape, "rank": rank, "n_features": grid, "max_relative_loss_difference": difference},
        ))
    return rows


# ---- 6. parallel runs ------------------------------------------------------------------------


def parallel_rows(settings: Settings) -> list[dict[str, Any]]:
    """Time ``sparsescale run`` on the quick config serially and with --jobs 2."""
    sizes = settings.sizes
    env = _blas_environment(settings.threads)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="sparsescale-bench-") as scratch:
        for jobs in (1, 2):
            settings.log(f"6. sparsescale run --jobs {jobs}")
            command = [sys.executable, "-m", "sparsescale_cli", "run", str(settings.config_path),
                       "--out", str(Path(scratch) / f"jobs{jobs}"), "--no-progress", "--jobs", str(jobs)]
            for override in sizes.parallel_overrides:
                command += ["--set", override]
            usage = measure.run_measured(command, env=env, cwd=str(REPOSITORY))
            if usage.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed with exit status {usage.returncode}:\n"
                                   f"{usage.stderr.strip()}")
            timings[jobs] = usage
        trial_seconds = _trial_wall_seconds(Path(scratch) / "jobs1" / "results.h5")
    serial, parallel = timings[1], timings[2]
    return [make_row(
        f"6. sparsescale run {settings.config_path.name}: --jobs 2 vs serial wall time",
        parallel.wall, serial.wall, parallel.wall / serial.wall, "<=", 0.65, "s",
        {"config": str(settings.config_path.relative_to(REPOSITORY) if settings.config_path.is_relative_to(REPOSITORY)
                       else settings.config_path),
         "overrides": list(sizes.parallel_overrides), "blas_threads_serial": settings.threads or "library default",
         "cpu_seconds_serial": serial.cpu, "cpu_seconds_jobs2": parallel.cpu,
         "trial_wall_seconds_serial": trial_seconds,
         "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    )]


def _trial_wall_seconds(results_path: Path) -> float:
    """Return the summed wall time of the trials in a results file: the part that --jobs can split."""
    from sparsescale_cli.store import read_results

    records = read_results(results_path).records
    return float(sum(float(record["wall_time"]) for point in records.values() for record in point))


WORKLOADS: dict[str, Callable[[Settings], list[dict[str, Any]]]] = {
    "1": sampling_rows,
    "2": memory_rows,
    "3": trial_rows,
    "4": dense_step_rows,
    "5": sweep_rows,
    "6": parallel_rows,
}
