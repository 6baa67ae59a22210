"""Crash safety: a run killed with SIGKILL at random moments resumes to the numbers of an uninterrupted run.

Each attempt starts the CLI, waits until its journal has grown (so most
kills land while trials are being written), then kills the whole process
group after a random delay. A third of the attempts use two worker
processes. After every kill the journal may contain each trial at most once.
A second test kills one worker of a process pool: its trials fail, and the
others finish.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from cli_helpers import REPO, assert_bitwise_equal, cli_command, cli_environment, run_cli, trial_fields
from sparsescale_cli.store import read_journal, read_results

CONFIG = REPO / "tests" / "data" / "kill_resume.yaml"
TOTAL_TRIALS = 64
ATTEMPTS = 12


def _journal_size(directory: Path) -> int:
    path = directory / "journal.bin"
    return path.stat().st_size if path.exists() else 0


def _kill_once(directory: Path, delay: float, jobs: int) -> bool:
    """Start a run, kill it ``delay`` s after its journal next grows; return False if it finished first."""
    start_size = _journal_size(directory)
    child = subprocess.Popen(cli_command("run", CONFIG, "--out", directory, "--jobs", str(jobs), "--no-figures"),
                             env=cli_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and _journal_size(directory) == start_size and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        finished = child.poll() is not None
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        finished = True
    finally:
        child.wait(timeout=30)
    return not finished


def _assert_each_trial_at_most_once(directory: Path) -> int:
    records, _, _ = read_journal(directory / "journal.bin")
    counts = Counter(record.key for record in records if record.status == "ok")
    duplicated = {key: count for key, count in counts.items() if count > 1}
    assert not duplicated, f"trials recorded more than once: {duplicated}"
    return len(records)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    reference = tmp_path / "uninterrupted"
    completed = run_cli("run", CONFIG, "--out", reference, "--no-figures")
    assert completed.returncode == 0, completed.stderr

    directory = tmp_path / "killed"
    generator = random.Random(20240611)
    landed = 0
    recorded_after_kill = []
    for attempt in range(ATTEMPTS):
        jobs = 2 if attempt % 3 == 2 else 1
        if _kill_once(directory, generator.uniform(0.0, 0.4), jobs):
            landed += 1
        recorded_after_kill.append(_assert_each_trial_at_most_once(directory))

    resumed = run_cli("run", CONFIG, "--out", directory, "--no-figures")

    assert resumed.returncode == 0, resumed.stderr
    print(f"\nkill-resume: {landed} of {ATTEMPTS} kills landed mid-run; trials in the journal after each kill: "
          f"{recorded_after_kill}; torn tail reported on resume: {'torn final record' in resumed.stderr}")
    assert landed >= ATTEMPTS // 2
    assert _assert_each_trial_at_most_once(directory) == TOTAL_TRIALS
    attributes = read_results(directory / "results.h5").attributes
    assert attributes["trials_done"] == TOTAL_TRIALS
    assert attributes["trials_failed"] == 0
    assert_bitwise_equal(trial_fields(reference / "results.h5"), trial_fields(directory / "results.h5"),
                         "resumed after SIGKILL")


@pytest.mark.slow
def test_dead_worker_fails_its_trials_only(tmp_path):
    psutil = pytest.importorskip("psutil", reason="psutil finds the worker processes")
    directory = tmp_path / "run"
    child = subprocess.Popen(cli_command("run", CONFIG, "--out", directory, "--jobs", "2", "--keep-going",
                                         "--no-figures"),
                             env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _journal_size(directory) == 0 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        workers = [process for process in psutil.Process(child.pid).children()
                   if "spawn_main" in " ".join(process.cmdline())]
        assert workers, "no worker process found; the run ended before the kill"
        workers[0].kill()
        _, errors = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)

    assert child.returncode == 1
    assert "a worker process died while this trial was queued or running" in errors
    records, _, _ = read_journal(directory / "journal.bin")
    failed = [record for record in records if record.status != "ok"]
    # The broken pool fails every trial it held: at most two per worker.
    assert 1 <= len(failed) <= 4
    assert len(records) == TOTAL_TRIALS

    resumed = run_cli("run", CONFIG, "--out", directory, "--no-figures")
    assert resumed.returncode == 0, resumed.stderr
    assert read_results(directory / "results.h5").attributes["trials_done"] == TOTAL_TRIALS
