"""The IsoFLOP experiment end to end, and the model pieces it adds."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sparsescale_cli import cli, runner
from sparsescale_cli.loading import load_config
from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.linear import draw_training_set, first_samples
from sparsescale_cli.model.solvers import solve_ridge, solve_ridge_path
from sparsescale_cli.store import write_results

QUICK = "configs/quick/compute_frontier.yaml"


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Run trials on one BLAS thread, as the process executor's workers do.

    The matrices here are small; on a busy machine a multithreaded BLAS spends
    most of its time waiting for cores.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.mark.parametrize("shape", [(20, 300), (300, 20), (40, 60)])
def test_ridge_path_matches_single_solves(shape):
    # Reference: solve_ridge, one SVD per ridge; the path shares one (through a QR when wide).
    rng = np.random.default_rng(1)
    design = rng.standard_normal(shape)
    targets = rng.standard_normal(shape[0])
    ridges = [0.0, 1e-4, 1e-1]
    for ridge, path in zip(ridges, solve_ridge_path(design, targets, ridges)):
        single = solve_ridge(design, targets, ridge)
        assert np.allclose(path.theta, single.theta, rtol=1e-8, atol=1e-10)
        assert path.rank == single.rank
        assert path.residual_sq == pytest.approx(single.residual_sq, rel=1e-8, abs=1e-10)


def test_first_samples_is_prefix_of_draw():
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher(noise=0.1)
    full = draw_training_set(law, teacher, 500, np.random.default_rng(2), teacher_seed=3)
    part = first_samples(full, 120)
    dense_full = full.batch.matrix.toarray()
    columns = np.isin(full.batch.coords, part.batch.coords)
    assert np.array_equal(part.batch.matrix.toarray(), dense_full[:120][:, columns])
    assert np.all(part.batch.counts() > 0)
    assert np.array_equal(part.labels, full.labels[:120])
    assert np.array_equal(part.weights, full.weights[columns])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    config = load_config(QUICK)
    directory = tmp_path_factory.mktemp("frontier") / "run"
    outcome = runner.run(config, directory)
    return config, outcome


def test_quick_run_reports_frontier_laws(quick_run):
    _, outcome = quick_run
    assert not outcome.failures
    laws = {law.name: law for law in outcome.summary.laws}
    exponent = laws["N*(C) exponent (parabolas)"]
    assert exponent.theory == pytest.approx(1 / 3)
    assert exponent.status == "asymptote"
    # Small budgets sit before the asymptote; still the sparse optimum grows more slowly than the dense 1/2.
    assert 0.15 < exponent.measured < 0.45
    assert laws["a_N (law fit)"].ci95 is not None
    assert len(outcome.summary.tables["optima"]) == 3
    assert outcome.figures and outcome.figures[0].exists()


def test_results_answer_frontier_with_intervals(quick_run, monkeypatch, capsys):
    _, outcome = quick_run
    monkeypatch.setattr(sys, "argv", ["sparsescale", "frontier", "--budget", "1e5:1e6:2", "--results",
                                      str(outcome.results_path), "--bootstrap", "40", "--json"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    for row in rows:
        assert row["N_ci95"][0] <= row["N"] <= row["N_ci95"][1]
        assert row["theory"]["N_exponent"] == pytest.approx(1 / 3)
        assert row["dense"]["N_exponent"] == pytest.approx(0.5)


def test_results_of_other_kind_rejected(tmp_path, monkeypatch, capsys):
    path = tmp_path / "results.h5"
    write_results(path, {"kind": "double_descent"}, [], {}, None)
    monkeypatch.setattr(sys, "argv", ["sparsescale", "frontier", "--budget", "1e6", "--results", str(path)])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    assert "compute_frontier run" in capsys.readouterr().err


def test_simulated_frontier_exponent_matches_theory(tmp_path):
    # For alpha = 1, s = 2 the theory gives N* ~ C^(1/3) (dense: C^(1/2)); the simulated
    # exponent from IsoFLOP parabolas must lie within 0.05 of 1/3 and well below 1/2.
    config = load_config(QUICK, ["sweep.budgets={start: 1.0e+6, stop: 1.0e+8, num: 3}", "replicates=4",
                                 "analysis.law_bootstrap=0"])
    outcome = runner.run(config, tmp_path / "run", make_figures=False)
    laws = {law.name: law for law in outcome.summary.laws}
    measured = laws["N*(C) exponent (parabolas)"].measured
    assert measured == pytest.approx(1 / 3, abs=0.05), f"measured N*(C) exponent {measured:.3f}"
    assert 0.5 - measured > 0.1, f"measured N*(C) exponent {measured:.3f}"
