"""The nonlinear experiment kind, end to end through the runner and the command line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsescale_cli import runner
from sparsescale_cli.errors import ConfigError
from sparsescale_cli.experiments import nonlinear
from sparsescale_cli.loading import load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "quick" / "nonlinear.yaml"
SHIPPED = ROOT / "configs" / "nonlinear.yaml"


def _laws(summary) -> dict:
    return {law.name: law for law in summary.laws}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    config = load_config(QUICK)
    directory = tmp_path_factory.mktemp("quick-nonlinear")
    return config, runner.run(config, directory)


def test_quick_run_reports_relu_beside_linear(quick_run):
    config, outcome = quick_run
    laws = _laws(outcome.summary)
    assert outcome.done == outcome.total
    assert not outcome.failures
    assert (outcome.directory / "nonlinear.png").exists()
    kernel = laws["data: a_D relu (N=inf)"]
    assert kernel.status == "conjecture"
    assert kernel.theory == pytest.approx(0.5)
    # The relu kernel's data exponent for alpha = 1, s = 2 (a_D = alpha/s = 0.5 for the linear student).
    assert kernel.ci95[0] < 0.5 < kernel.ci95[1]
    assert laws["data: a_D linear (N=inf)"].status == "asymptote"


def test_quick_run_peak_sits_at_predicted_feature_rank(quick_run):
    # The predicted relu feature rank (about D/2 here) is where the ridgeless loss peaks, far
    # from D and from rank(X).
    _, outcome = quick_run
    (row,) = outcome.summary.tables["rank"]
    assert row["feature_rank_measured"] == row["feature_rank_predicted"]
    assert 0.4 < row["feature_rank_predicted"] / row["n_samples"] < 0.6
    assert row["peak_over_predicted"] == pytest.approx(1.0, abs=0.1)
    assert row["peak_over_rank_data"] > 3


def test_quick_run_finite_n_is_above_kernel(quick_run):
    # At N = 800, about 4 r_phi, the relu student is still above its N = inf limit on the same
    # draws. The linear student's above-peak law L(N) = L(inf) N/(N - r) would put the gap at
    # r/(N - r), about 1/3; the relu student is measured below it.
    _, outcome = quick_run
    (gap,) = outcome.summary.tables["kernel_gap"]
    assert gap["n_features"] == 800
    assert gap["q25"] > 0
    assert gap["loss_over_kernel_minus_1"] < gap["linear_heuristic_r_over_n_minus_r"]


def test_double_descent_rejects_nonlinear_student(tmp_path):
    path = tmp_path / "dd.yaml"
    text = (ROOT / "configs" / "quick" / "double_descent.yaml").read_text().replace(
        "activation: linear", "activation: relu")
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "kind: nonlinear" in str(caught.value)
    assert "relu" in str(caught.value)


def test_kernel_limit_rejected_for_tanh():
    data = {"kind": "nonlinear", "student": {"activation": "tanh"},
            "sweep": {"d_sweep": {"n_samples": [100, 200], "n_features": ["inf"]}}}
    with pytest.raises(ConfigError) as caught:
        validate_config(data, "inline.yaml")
    assert "activation relu" in str(caught.value)


def test_noise_without_ridge_warns_once(caplog, monkeypatch):
    monkeypatch.setattr(nonlinear, "_warned_noise_without_ridge", False)
    config = load_config(QUICK, ["teacher.noise=0.1", "fit.ridge=0"])
    with caplog.at_level(logging.WARNING, logger=nonlinear.__name__):
        nonlinear.plan(config)
        nonlinear.plan(config)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "fit.ridge" in messages[0]


def test_noise_with_ridge_does_not_warn(caplog, monkeypatch):
    monkeypatch.setattr(nonlinear, "_warned_noise_without_ridge", False)
    config = load_config(QUICK, ["teacher.noise=0.1", "fit.ridge=1e-4"])
    with caplog.at_level(logging.WARNING, logger=nonlinear.__name__):
        nonlinear.plan(config)
    assert not caplog.records


def test_cli_validates_shipped_config():
    completed = subprocess.run([sys.executable, "-m", "sparsescale_cli", "validate", str(SHIPPED)],
                               capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "valid nonlinear config" in completed.stdout


def _shipped_data_sweep(replicates: int, stop: int, test_inputs: int):
    """Return the shipped config with only its D sweep, optionally reduced in size."""
    import yaml

    data = yaml.safe_load(SHIPPED.read_text())
    data["sweep"].pop("n_sweep")
    data["sweep"]["d_sweep"]["n_samples"] = {"start": 100, "stop": stop, "num": 6 if stop < 3000 else 7}
    data["replicates"] = replicates
    data["loss"]["test_inputs"] = test_inputs
    data["analysis"]["bootstrap"] = 500
    return validate_config(data, str(SHIPPED))


def _check_relu_data_exponents(summary) -> None:
    # The claim under test: the relu kernel keeps the sparse data exponent alpha/s
    # (alpha = 1: 0.5 at s = 2, 1/3 at s = 3), while the dense relu kernel decays faster.
    laws = _laws(summary)
    dense = laws["dense: a_D relu (N=inf)"]
    for label, expected in (("s2", 0.5), ("s3", 1 / 3)):
        law = laws[f"{label}: a_D relu (N=inf)"]
        assert law.theory == pytest.approx(expected)
        assert law.ci95[0] <= expected <= law.ci95[1], (label, law.ci95)
        assert law.ci95[1] < dense.ci95[0], (label, law.ci95, dense.ci95)


def test_shipped_config_relu_data_exponents_reduced(tmp_path):
    # The shipped D sweep up to D = 1700 instead of 3000, with 1500 test inputs instead of 3000.
    config = _shipped_data_sweep(replicates=8, stop=1700, test_inputs=1500)
    outcome = runner.run(config, tmp_path, executor=runner.make_executor("processes", 2), make_figures=False)
    assert not outcome.failures
    _check_relu_data_exponents(outcome.summary)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SPARSESCALE_FULL_CHECKS") != "1",
                    reason="full shipped D sweep takes minutes; set SPARSESCALE_FULL_CHECKS=1")
def test_shipped_config_relu_data_exponents_full(tmp_path):
    config = _shipped_data_sweep(replicates=8, stop=3000, test_inputs=3000)
    assert config.sweep.d_sweep.n_samples[-1] == 3000
    outcome = runner.run(config, tmp_path, executor=runner.make_executor("processes", 2), make_figures=False)
    assert not outcome.failures
    _check_relu_data_exponents(outcome.summary)
