"""A failed trial makes the run exit 1, is listed with its error, and is retried by the next run.

The CLI runs in this process with the serial executor, so that a patched
trial function can fail one chosen trial.
"""

from __future__ import annotations

import sys

import pytest

from cli_helpers import TINY_CONFIG, assert_bitwise_equal, trial_fields
from sparsescale_cli import cli
from sparsescale_cli.experiments import double_descent
from sparsescale_cli.store import read_journal, read_results

FAILING_TRIAL = (1, 2)
TOTAL_TRIALS = 16


def _run_in_process(monkeypatch, capsys, *arguments) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["sparsescale", *map(str, arguments)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def _fail_one_trial(monkeypatch):
    original = double_descent.run_trial

    def run_trial(config, point, replicate):
        if (point.index, replicate) == FAILING_TRIAL:
            raise ValueError("injected failure")
        return original(config, point, replicate)

    monkeypatch.setattr(double_descent, "run_trial", run_trial)


def test_failed_trial_stops_run_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    _fail_one_trial(monkeypatch)
    status, errors = _run_in_process(monkeypatch, capsys, "run", TINY_CONFIG, "--out", tmp_path,
                                     "--executor", "serial", "--no-figures")

    assert status == 1
    assert "point 1 replicate 2: ValueError: injected failure" in errors
    assert "not run" in errors
    records, _, _ = read_journal(tmp_path / "journal.bin")
    assert records[-1].key == FAILING_TRIAL
    assert records[-1].status == "failed"
    assert len(records) < TOTAL_TRIALS


def test_keep_going_finishes_other_trials_first(tmp_path, monkeypatch, capsys):
    _fail_one_trial(monkeypatch)
    status, errors = _run_in_process(monkeypatch, capsys, "run", TINY_CONFIG, "--out", tmp_path,
                                     "--executor", "serial", "--no-figures", "--keep-going")

    assert status == 1
    assert "1 trial(s) failed:" in errors
    assert "1 of 16 trials unfinished" in errors
    attributes = read_results(tmp_path / "results.h5").attributes
    assert attributes["trials_done"] == TOTAL_TRIALS - 1
    assert attributes["trials_failed"] == 1


def test_rerun_retries_only_the_failed_trial(tmp_path, monkeypatch, capsys, serial_reference):
    _fail_one_trial(monkeypatch)
    _run_in_process(monkeypatch, capsys, "run", TINY_CONFIG, "--out", tmp_path, "--executor", "serial",
                    "--no-figures", "--keep-going")
    monkeypatch.undo()

    status, errors = _run_in_process(monkeypatch, capsys, "run", TINY_CONFIG, "--out", tmp_path,
                                     "--executor", "serial", "--no-figures")

    assert status == 0, errors
    records, _, _ = read_journal(tmp_path / "journal.bin")
    assert len(records) == TOTAL_TRIALS + 1
    assert [r.key for r in records if r.key == FAILING_TRIAL] == [FAILING_TRIAL, FAILING_TRIAL]
    assert records[-1].key == FAILING_TRIAL
    assert records[-1].status == "ok"
    assert_bitwise_equal(trial_fields(serial_reference), trial_fields(tmp_path / "results.h5"), "retried run")
