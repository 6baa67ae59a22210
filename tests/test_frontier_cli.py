"""The ``sparsescale frontier`` command: optima, JSON keys and one-line errors."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from sparsescale_cli import cli
from sparsescale_cli.model.frontier import AdditiveLaw


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the command line in this process; return (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sparsescale", *args])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


def write_table(path, law: AdditiveLaw, replicates: int = 0, noise: float = 0.02, seed: int = 0):
    rng = np.random.default_rng(seed)
    lines = ["N,D,loss" + (",replicate" if replicates else "")]
    for n in np.geomspace(10, 3000, 6):
        for d in np.geomspace(100, 1e6, 6):
            for r in range(max(replicates, 1)):
                loss = float(law.loss(n, d)) * math.exp(noise * rng.standard_normal())
                lines.append(f"{n:.6g},{d:.6g},{loss:.8g}" + (f",{r}" if replicates else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_theory_json_for_one_budget(monkeypatch, capsys):
    # N* = pi C^(1/3) for alpha = 1, s = 2 (closed form); the dense model has N* = sqrt(C).
    status, out, _ = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e9", "--alpha", "1", "--s", "2",
                             "--json")
    assert status == 0
    rows = json.loads(out)
    assert len(rows) == 1
    row = rows[0]
    assert {"budget", "N", "D", "loss", "dense"} <= set(row)
    assert row["N"] == pytest.approx(math.pi * 1e3, rel=1e-10)
    assert row["D"] == pytest.approx(1e9 / (math.pi * 1e3), rel=1e-10)
    assert row["N_exponent"] == pytest.approx(1 / 3)
    assert row["dense"]["N"] == pytest.approx(math.sqrt(1e9), rel=1e-10)
    assert row["dense"]["N_exponent"] == pytest.approx(0.5)
    assert row["status"]["exponents"] == "asymptote"


def test_budget_range_is_log_spaced(monkeypatch, capsys):
    status, out, _ = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e6:1e12:13", "--json")
    assert status == 0
    budgets = [row["budget"] for row in json.loads(out)]
    assert budgets == pytest.approx(np.geomspace(1e6, 1e12, 13).tolist())


def test_six_nd_cost_divides_budget(monkeypatch, capsys):
    _, plain, _ = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e9", "--json")
    _, scaled, _ = run_cli(monkeypatch, capsys, "frontier", "--budget", "6e9", "--cost", "6nd", "--json")
    assert json.loads(scaled)[0]["N"] == pytest.approx(json.loads(plain)[0]["N"])


def test_table_output_marks_status(monkeypatch, capsys):
    status, out, _ = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e9")
    assert status == 0
    assert "asymptote" in out
    assert "conjecture" in out


def test_csv_fit_recovers_exponent_with_interval(monkeypatch, capsys, tmp_path):
    # Synthetic table from a known law with 2% noise and 4 replicates per point.
    law = AdditiveLaw(0.1, 2.5, 1.0, 0.9, 0.5)
    table = write_table(tmp_path / "losses.csv", law, replicates=4)
    status, out, _ = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e8", "--csv", str(table),
                             "--bootstrap", "100", "--json")
    assert status == 0
    row = json.loads(out)[0]
    # The fitting tests check coverage over many draws. This single draw checks that the
    # command returns a fit close to the truth with a narrow interval around it.
    assert row["N_exponent"] == pytest.approx(1 / 3, abs=0.02)
    low, high = row["N_exponent_ci95"]
    assert low <= row["N_exponent"] <= high
    assert high - low < 0.05
    assert row["N"] == pytest.approx(law.optimum(1e8).n_features, rel=0.2)
    assert row["N_ci95"][0] <= row["N"] <= row["N_ci95"][1]
    assert row["loss_ci95"][0] <= row["loss"] <= row["loss_ci95"][1]
    assert row["fit_status"].startswith("converged")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--budget", "0"], "positive"),
        (["--budget", "-1e9"], "positive"),
        (["--budget", "1e6:1e3:4"], "below START"),
        (["--budget", "abc"], "expected numbers"),
        (["--budget", "1e9", "--alpha", "0"], "--alpha"),
        (["--budget", "1e9", "--alpha", "-1"], "--alpha"),
        (["--budget", "1e9", "--s", "0.5"], "--s"),
        (["--budget", "1e9", "--s", "-2"], "--s"),
        (["--budget", "1e9", "--beta", "1.5"], "--beta"),
        (["--budget", "1e9", "--cost", "nd-steps"], "steps"),
        (["--budget", "1e9", "--cost", "flops"], "cost model"),
    ],
)
def test_bad_options_exit_2_with_one_line(monkeypatch, capsys, args, expected):
    status, out, err = run_cli(monkeypatch, capsys, "frontier", *args)
    assert status == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert expected in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("N,loss\n1,2\n", "missing column(s) D"),
        ("N,D,loss\n10,100,0.5\n20,100,0\n30,100,0.3\n10,200,0.4\n20,200,0.3\n30,300,0.2\n", "positive"),
        ("N,D,loss\n10,100,0.5\n20,-100,0.4\n30,100,0.3\n10,200,0.4\n20,200,0.3\n30,300,0.2\n", "positive"),
        ("N,D,loss\n10,100,0.5\n20,100,x\n", "expected a number"),
        ("N,D,loss\n10,100,0.5\n20,200,0.4\n30,300,0.3\n", "too few rows"),
        ("", "missing column(s)"),
    ],
)
def test_bad_csv_exit_2_with_one_line(monkeypatch, capsys, tmp_path, content, expected):
    table = tmp_path / "bad.csv"
    table.write_text(content)
    status, _, err = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e9", "--csv", str(table))
    assert status == 2
    assert err.count("\n") == 1, err
    assert expected in err


def test_missing_csv_file_exit_2(monkeypatch, capsys, tmp_path):
    status, _, err = run_cli(monkeypatch, capsys, "frontier", "--budget", "1e9", "--csv", str(tmp_path / "no.csv"))
    assert status == 2
    assert "file not found" in err
