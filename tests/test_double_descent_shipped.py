"""The shipped double-descent config reproduces the laws it is meant to show.

The full config has 30 replicates; this check runs the same sizes with 12,
so its intervals are wider than in the full study but must still contain
the theory: a_N = alpha = 1, a_D = alpha / s = 0.5, peak at N = rank(X).
"""

import json

import pytest

from conftest import REPO


@pytest.mark.slow
def test_shipped_config_shows_both_exponents_and_peak(tmp_path, cli):
    result = cli("run", str(REPO / "configs" / "double_descent.yaml"), "--set", "replicates=12",
                 "--out", str(tmp_path / "run"), "--jobs", "2", "--no-progress", "--no-figures")
    assert result.returncode == 0, result.stderr
    summary = json.loads(cli("summary", str(tmp_path / "run" / "results.h5"), "--json").stdout)
    laws = {law["name"]: law for law in summary["laws"]}

    a_n = laws["a_N"]
    assert a_n["theory"] == 1.0
    assert a_n["ci95"][0] <= 1.0 <= a_n["ci95"][1], a_n

    a_d = laws["a_D (N=inf)"]
    assert a_d["theory"] == 0.5
    assert a_d["ci95"][0] <= 0.5 <= a_d["ci95"][1], a_d

    for n_samples in (1000, 10000):
        peak = laws[f"peak N/rank(X), D={n_samples}"]
        assert peak["measured"] == pytest.approx(1.0, abs=0.05), peak

    peaks = {row["n_samples"]: row for row in summary["tables"]["peaks"]}
    for n_samples, row in peaks.items():
        # The peak follows the rank of the data, about K(D), far below N = D.
        assert row["rank_mean"] == pytest.approx(row["seen_count_theory"], rel=0.05)
        assert row["grid_peak_over_d"] < 0.1
        assert row["grid_peak_over_rank"] == pytest.approx(1.0, abs=0.1)
