"""Config validation: every bad input is one line naming file, line and key, with exit status 2."""

import math
import textwrap

import pytest

from conftest import QUICK_DOUBLE_DESCENT
from sparsescale_cli.errors import ConfigError
from sparsescale_cli.loading import config_from_text, config_text, load_config

VALID = QUICK_DOUBLE_DESCENT.read_text()


def _write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BAD_CONFIGS = [
    ("negative alpha", "kind: double_descent\ndata:\n  alpha: -1\nsweep: {d_sweep: {n_samples: [10, 20]}}\n",
     3, "data.alpha", "greater than 0"),
    ("wrong type", "kind: double_descent\nreplicates: many\nsweep: {d_sweep: {n_samples: [10, 20]}}\n",
     2, "replicates", "valid integer"),
    ("unknown key", "kind: double_descent\ndata:\n  alpha: 1\n  sparsity: 2\nsweep: {d_sweep: {n_samples: [10]}}\n",
     4, "data.sparsity", "unknown key"),
    ("infinite M with s <= 1", "kind: double_descent\ndata:\n  s: 0.8\n  M: inf\nsweep: {d_sweep: {n_samples: [10]}}\n",
     4, "data.M", "M = inf needs s > 1"),
    ("bad sweep value", "kind: double_descent\nsweep:\n  d_sweep:\n    n_samples: [100, -5]\n",
     4, "sweep.d_sweep.n_samples", "positive integer"),
    ("unknown kind", "kind: scaling\n", 1, "kind", "unknown experiment kind"),
    ("missing sweep", "kind: double_descent\nreplicates: 3\n", 1, "sweep", "missing"),
    ("negative ridge", "kind: double_descent\nfit:\n  ridge: -0.1\nsweep: {d_sweep: {n_samples: [10]}}\n",
     3, "fit.ridge", "greater than or equal to 0"),
    ("duplicate key", "kind: double_descent\nseed: 1\nseed: 2\n", 3, "seed", "duplicate key"),
]


@pytest.mark.parametrize("name, text, line, key, message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_config_names_file_line_and_key(tmp_path, name, text, line, key, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.source == str(path)
    assert error.line == line
    assert error.key == key
    assert message in error.message
    assert "\n" not in str(error)


def test_malformed_yaml_reports_line(tmp_path):
    path = _write(tmp_path, "kind: double_descent\ndata: {alpha: 1\nseed: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.line is not None and caught.value.line >= 2
    assert "invalid YAML" in caught.value.message


def test_scientific_notation_and_inf_are_numbers(tmp_path):
    path = _write(tmp_path, VALID.replace("M: inf", "M: 1e6").replace("[300, 3000]", "[3e2, 3e3]"))
    config = load_config(path)
    assert config.data.M == 1_000_000
    assert config.sweep.n_sweep[0].n_samples == [300, 3000]
    assert math.isinf(load_config(QUICK_DOUBLE_DESCENT).data.M)


def test_overrides_replace_values_and_list_items():
    config = load_config(QUICK_DOUBLE_DESCENT, ["data.alpha=0.5", "replicates=3", "sweep.d_sweep.0.n_features=[inf]"])
    assert config.data.alpha == 0.5
    assert config.replicates == 3
    assert config.sweep.d_sweep[0].n_features == [math.inf]


def test_invalid_override_names_the_override():
    with pytest.raises(ConfigError) as caught:
        load_config(QUICK_DOUBLE_DESCENT, ["data.alpha=-2"])
    assert caught.value.source == "--set data.alpha=-2"
    assert caught.value.key == "data.alpha"


def test_resolved_config_round_trips_through_text():
    config = load_config(QUICK_DOUBLE_DESCENT)
    again = config_from_text(config_text(config))
    assert again == config


def test_dense_model_needs_finite_M(tmp_path):
    with pytest.raises(ConfigError, match="M = inf needs s > 1"):
        load_config(QUICK_DOUBLE_DESCENT, ["data.s=0"])
    config = load_config(QUICK_DOUBLE_DESCENT, ["data.s=0", "data.M=500"])
    assert config.data.law().mean_active() == 500


@pytest.mark.parametrize("text, fragment", [
    ("kind: double_descent\ndata:\n  alpha: -1\nsweep: {d_sweep: {n_samples: [10, 20]}}\n", ":3: data.alpha:"),
    ("kind: double_descent\n  bad: [\n", "invalid YAML"),
])
def test_cli_reports_one_line_and_exit_status_two(tmp_path, cli, text, fragment):
    path = _write(tmp_path, text)
    for command in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "run")]):
        result = cli(*command)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {path}")
        assert fragment in lines[0]
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_cli_missing_file_is_one_line(tmp_path, cli):
    result = cli("run", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'absent.yaml'}: file not found"
