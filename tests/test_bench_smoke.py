"""The benchmark harness runs on tiny sizes and writes well-formed rows.

These tests check the shape of the report only: the benchmark reports
figures and never fails on them, so no timing threshold appears here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.console import Console

pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")

from bench import __main__ as bench_main  # noqa: E402
from bench import reference  # noqa: E402
from sparsescale_cli.model.keyed import keyed_normal  # noqa: E402
from sparsescale_cli.model.laws import DataLaw, Teacher  # noqa: E402
from sparsescale_cli.model.linear import LinearProblem, draw_training_set, teacher_weights  # noqa: E402

REQUIRED_KEYS = {"workload", "ours", "reference", "ratio", "target", "met", "unit"}


def _run_bench(tmp_path, only: str) -> tuple[list[dict], list[dict]]:
    output = tmp_path / "latest.json"
    arguments = bench_main.parse_arguments(["--smoke", "--only", only, "--output", str(output)])
    with open(tmp_path / "console.txt", "w") as console_file:
        rows = bench_main.run(arguments, Console(width=160, file=console_file))
    return rows, json.loads(output.read_text())


def _check_rows(rows: list[dict]) -> None:
    for row in rows:
        assert REQUIRED_KEYS <= set(row), row["workload"]
        assert isinstance(row["met"], bool), row["workload"]
        assert row["ours"] > 0, row["workload"]
        assert math.isfinite(row["ours"]), row["workload"]
        assert row["reference"] > 0, row["workload"]
        assert math.isfinite(row["reference"]), row["workload"]
        assert math.isfinite(row["ratio"]), row["workload"]
        assert row["target"].split()[0] in (">=", "<="), row["workload"]
        assert row["unit"] in ("s", "MiB", "GFLOP/s"), row["workload"]
        assert "machine" in row["notes"], row["workload"]


def test_bench_workloads_1_to_5_rows(tmp_path):
    rows, written = _run_bench(tmp_path, "1,2,3,4,5")

    assert [row["workload"][0] for row in written] == ["1", "1", "2", "3", "3", "3", "4", "5", "5"]
    assert len(written) == len(rows)
    _check_rows(written)


def test_bench_sweep_losses_match(tmp_path):
    rows, _ = _run_bench(tmp_path, "5")

    for row in rows:
        # Reusing one draw and nested features must not change any loss.
        assert row["notes"]["max_relative_loss_difference"] < 1e-9


@pytest.mark.slow
def test_bench_parallel_row(tmp_path):
    rows, written = _run_bench(tmp_path, "6")

    assert len(written) == 1
    _check_rows(written)
    assert written[0]["notes"]["cpu_seconds_serial"] > 0


def test_bench_rejects_unknown_workload(tmp_path):
    with pytest.raises(SystemExit, match="unknown workload 9"):
        _run_bench(tmp_path, "9")


def test_naive_loss_matches_seen_loss():
    # Fed the product's own draw, F and teacher over all M coordinates, the naive
    # min-norm fit and full-F loss must reproduce the product's loss on the seen
    # coordinates (the product replaces the unseen part by its expectation).
    law = DataLaw(alpha=1.0, s=1.5, c=1.0, M=400)
    teacher = Teacher()
    n_samples, n_features = 60, 15
    training = draw_training_set(law, teacher, n_samples, np.random.default_rng(3), 7)
    coords = np.arange(1, 401, dtype=float)
    scale = 1.0 / math.sqrt(n_features)
    features = scale * keyed_normal(11, coords, n_features)
    weights = teacher_weights(teacher, 7, coords)
    inputs = np.zeros((n_samples, 400))
    inputs[:, training.batch.coords.astype(int) - 1] = training.batch.matrix.toarray()

    theta = np.linalg.lstsq(inputs @ features.T, inputs @ weights, rcond=None)[0]
    seen = np.zeros(400, dtype=bool)
    seen[training.batch.coords.astype(int) - 1] = True
    covariance = np.where(seen, law.covariance(coords), 0.0)
    naive_seen_loss = reference.naive_population_loss(features, theta, weights, covariance, 0.0)

    problem = LinearProblem(law, teacher, training)
    fit = problem.fit_features(features[:, seen], 0.0, scale)
    assert naive_seen_loss == pytest.approx(fit.seen_loss, rel=1e-8)


def test_naive_sample_rejects_infinite_m():
    law = DataLaw(alpha=1.0, s=1.5, c=1.0)
    with pytest.raises(ValueError, match="finite M"):
        reference.naive_sample(law, 10, np.random.default_rng(0))


def test_naive_sample_counts_match_probabilities():
    # Column means of the dense-mask draw must match p_i within sampling error.
    law = DataLaw(alpha=1.0, s=1.5, c=1.0, M=50)
    sample = reference.naive_sample(law, 4000, np.random.default_rng(0))
    frequency = np.asarray((sample != 0).mean(axis=0)).ravel()
    expected = law.activation_probability(np.arange(1, 51, dtype=float))
    assert np.all(np.abs(frequency - expected) < 5 * np.sqrt(expected * (1 - expected) / 4000) + 1e-12)
