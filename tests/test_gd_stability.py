"""The rare-spike theory of GD instability and the gd_stability experiment."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sparsescale_cli import runner
from sparsescale_cli.errors import ConfigError
from sparsescale_cli.experiments import gd_stability
from sparsescale_cli.loading import load_config
from sparsescale_cli.model import stability
from sparsescale_cli.model.laws import DataLaw
from sparsescale_cli.store import read_results

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_spike_sum_approaches_gamma_power_law():
    # The asymptote is the integral form of the same sum; they must agree at large D
    # (to 1e-3: the bulk case interpolates P(g^2 W > u) from a table).
    law = DataLaw(alpha=0.5, s=3.0)
    for gain in (stability.SpikeGain.plain(), stability.SpikeGain.from_bulk(np.array([0.1, 0.5, 1.0]), 1.6)):
        exact = stability.instability_rate(law, 1e5, 1.3, gain)
        asymptote = stability.instability_rate_asymptote(law, 1e5, 1.3, gain)
        assert exact == pytest.approx(asymptote, rel=1e-3)


def test_spike_power_law_closed_form_value():
    # alpha = 0.5, s = 3, c = 1, a = 2: b = 4/3, mu = (1/2) Gamma(11/6) / sqrt(pi) D^(-1/3).
    law = DataLaw(alpha=0.5, s=3.0)
    expected = 0.5 * math.gamma(11 / 6) / math.sqrt(math.pi) * 1000.0 ** (-1 / 3)
    assert stability.instability_rate_asymptote(law, 1000.0, 2.0) == pytest.approx(expected, rel=1e-12)
    assert stability.instability_exponent(law) == pytest.approx(-1 / 3)


def test_no_power_law_when_s_below_one_plus_alpha():
    law = DataLaw(alpha=0.5, s=1.4)
    assert math.isnan(stability.instability_exponent(law))
    assert math.isnan(stability.instability_rate_asymptote(law, 1e3, 1.0))
    assert stability.instability_rate(law, 1e3, 1.0) < 1e-100


def test_bulk_gain_mean_matches_resolvent_trace():
    # E[W] = (1/N) sum_k tau / (tau - beta_k).
    bulk = np.array([0.0, 0.2, 0.9])
    gain = stability.SpikeGain.from_bulk(bulk, 1.5, n_samples=200_000)
    assert gain.moment(1.0) == pytest.approx(np.mean(1.5 / (1.5 - bulk)), rel=0.01)
    assert not stability.SpikeGain.from_bulk(bulk, 0.8).stable_bulk


def test_wilson_interval_published_values():
    # Wilson (1927) score interval; 5 of 10 gives [0.2366, 0.7634] (Brown, Cai and DasGupta 2001).
    low, high = gd_stability.wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4)
    assert high == pytest.approx(0.7634, abs=1e-4)
    assert gd_stability.wilson_interval(0, 10)[0] == 0.0


def test_power_law_fit_recovers_exponent():
    d = np.geomspace(100, 1e5, 6)
    draws = np.full(6, 10_000)
    expected = draws * -np.expm1(-0.3 * d**-0.4)
    log_prefactor, exponent = gd_stability.fit_power_law(d, expected, draws)
    assert exponent == pytest.approx(-0.4, abs=1e-4)
    assert math.exp(log_prefactor) == pytest.approx(0.3, rel=1e-3)


def test_fit_without_method_stays_ridge(tmp_path):
    config = load_config(CONFIGS / "quick" / "double_descent.yaml")
    assert config.fit.method == "ridge"
    with pytest.raises(ConfigError, match="supports fit.method 'ridge' only"):
        load_config(CONFIGS / "quick" / "double_descent.yaml", ["fit={method: gradient_descent, eta: 1}"])


def test_record_steps_beyond_steps_rejected():
    with pytest.raises(ConfigError, match="fit.record_steps: .*exceed steps"):
        load_config(CONFIGS / "quick" / "gd_stability.yaml", ["fit.record_steps=[0, 5000]"])


def test_quick_run_records_no_nan_and_resumes(tmp_path):
    config = load_config(CONFIGS / "quick" / "gd_stability.yaml")
    outcome = runner.run(config, tmp_path)
    assert outcome.done == outcome.total
    assert not outcome.failures
    contents = read_results(outcome.results_path)
    for rows in contents.records.values():
        for row in rows:
            assert not np.isnan(row["curve_loss"]).any()
            assert not np.isnan(row["top_eigenvalue"]).any()
    names = [law["name"] for law in contents.summary["laws"]]
    assert any(name.startswith("P(unstable) exponent") for name in names)
    trained = [law for law in contents.summary["laws"] if law["name"].startswith("GD runs")]
    assert trained[0]["measured"] == 0.0
    assert (tmp_path / "gd_stability.png").exists()
    again = runner.run(config, tmp_path, make_figures=False)
    assert again.computed == 0


def test_trial_depends_only_on_point_and_replicate():
    config = load_config(CONFIGS / "quick" / "gd_stability.yaml", ["draws_per_trial=5", "curves_per_trial=1"])
    point = gd_stability.plan(config)[1]
    first = gd_stability.run_trial(config, point, 2)
    gd_stability.run_trial(config, gd_stability.plan(config)[0], 0)
    second = gd_stability.run_trial(config, point, 2)
    np.testing.assert_array_equal(first["top_eigenvalue"], second["top_eigenvalue"])
    np.testing.assert_array_equal(first["curve_loss"], second["curve_loss"])


@pytest.mark.slow
def test_shipped_config_exponent_contains_theory(tmp_path):
    # Reduced version of configs/gd_stability.yaml (1000 draws at D = 1e3, 1e4, 1e5 instead of
    # 6000 at five D); the theory value is -alpha / (s - 1 - alpha) = -1/3.
    config = load_config(CONFIGS / "gd_stability.yaml", [
        "replicates=4", "sweep.n_samples=[1000, 10000, 100000]", "sweep.eta=[1.0]", "curves_per_trial=0",
        "analysis.bootstrap=300",
    ])
    outcome = runner.run(config, tmp_path, make_figures=False)
    law = next(law for law in outcome.summary.laws if law.name.startswith("P(unstable) exponent"))
    assert law.theory == pytest.approx(-1 / 3)
    assert law.ci95[0] <= -1 / 3 <= law.ci95[1]
    assert law.ci95[1] < 0
