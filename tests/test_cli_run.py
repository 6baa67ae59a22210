"""The double-descent run end to end, as a user runs it: results, resume, summary, interruption."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import QUICK_DOUBLE_DESCENT, REPO
from sparsescale_cli.store import read_journal

SMALL = ["--set", "replicates=3", "--set", "sweep.n_sweep.0.n_samples=[300]",
         "--set", "sweep.d_sweep.0.n_samples=[100, 400, 1600, 6400]"]


def _trial_records(path):
    """Return {(point, replicate): {field: array}} from a results file."""
    records = {}
    with h5py.File(path, "r") as handle:
        for name, group in handle["points"].items():
            for row, replicate in enumerate(group["replicate"][()]):
                records[(int(name), int(replicate))] = {k: group[k][row] for k in group if k != "replicate"}
    return records


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("run") / "quick"
    result = run_cli("run", str(QUICK_DOUBLE_DESCENT), *SMALL, "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_writes_results_figure_and_summary(finished_run):
    out, result = finished_run
    assert (out / "results.h5").exists()
    assert (out / "double_descent.png").stat().st_size > 10_000
    assert "measured laws beside theory" in result.stdout
    with h5py.File(out / "results.h5", "r") as handle:
        assert handle.attrs["kind"] == "double_descent"
        assert handle.attrs["trials_done"] == handle.attrs["trials_total"] == 5 * 3
        assert "kind: double_descent" in handle.attrs["config_yaml"]
        for key in ("sparsescale_version", "git_commit", "numpy_version", "scipy_version", "h5py_version", "host",
                    "started", "finished"):
            assert handle.attrs[key], key
        group = handle["points/00000"]
        assert group["loss"].shape == (3, 16)
        assert np.all(np.isfinite(group["expected_loss"][()]))
        assert np.all(group["wall_time"][()] > 0)


def test_summary_json_has_stable_keys(finished_run, cli):
    out, _ = finished_run
    result = cli("summary", str(out / "results.h5"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "double_descent"
    names = [law["name"] for law in summary["laws"]]
    assert "a_D (N=inf)" in names
    assert "a_N" in names
    for law in summary["laws"]:
        assert set(law) >= {"name", "measured", "ci95", "theory"}
        assert law["ci95"] is None or len(law["ci95"]) == 2


def test_rerun_skips_finished_trials(finished_run, cli):
    out, _ = finished_run
    before = _trial_records(out / "results.h5")
    started = time.perf_counter()
    result = cli("run", str(QUICK_DOUBLE_DESCENT), *SMALL, "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "15 of 15 trials already recorded" in result.stdout
    after = _trial_records(out / "results.h5")
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key]["loss"], after[key]["loss"])


def test_other_config_in_same_directory_is_rejected(finished_run, cli):
    out, _ = finished_run
    result = cli("run", str(QUICK_DOUBLE_DESCENT), *SMALL, "--set", "seed=99", "--out", str(out))
    assert result.returncode == 2
    assert "holds a run of a different config" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, cli):
    result = cli("run", str(QUICK_DOUBLE_DESCENT), "--dry-run", "--out", str(tmp_path / "x"))
    assert result.returncode == 0
    assert "trials: 54 (9 points x 6 replicates)" in result.stdout
    assert "peak memory estimate" in result.stdout
    assert not (tmp_path / "x").exists()


def test_killed_run_resumes_to_same_numbers(tmp_path, finished_run):
    reference, _ = finished_run
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "sparsescale_cli", "run", str(QUICK_DOUBLE_DESCENT), *SMALL, "--out", str(out),
               "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.bin"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and len(read_journal(journal)[0]) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    recorded = len(read_journal(journal)[0])
    if recorded == 15:
        pytest.skip("the run finished before it could be killed")
    assert recorded >= 2

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "already recorded" in resumed.stdout
    expected = _trial_records(reference / "results.h5")
    got = _trial_records(out / "results.h5")
    assert expected.keys() == got.keys()
    for key in expected:
        for field in ("loss", "expected_loss", "rank_data", "scan_loss"):
            np.testing.assert_array_equal(expected[key][field], got[key][field])
