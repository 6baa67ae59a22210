"""One writer per file: a second run, or a merge during shard runs, is rejected with one line and exit 2."""

from __future__ import annotations

import os

from cli_helpers import TINY_CONFIG, run_cli
from sparsescale_cli.loading import load_config
from sparsescale_cli.runner import prepare_directory
from sparsescale_cli.shards import Shard
from sparsescale_cli.store import RunLock


def _prepared(tmp_path):
    directory = tmp_path / "run"
    prepare_directory(load_config(TINY_CONFIG), directory)
    return directory


def test_second_run_on_same_output_is_rejected(tmp_path):
    directory = _prepared(tmp_path)
    with RunLock(directory):
        completed = run_cli("run", TINY_CONFIG, "--out", directory, "--no-figures")

    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert f"another sparsescale process (pid {os.getpid()} on" in lines[0]
    assert not (directory / "journal.bin").exists()


def test_merge_is_rejected_while_a_shard_runs(tmp_path):
    directory = _prepared(tmp_path)
    with RunLock(directory, shared=True):
        completed = run_cli("merge", directory, "--no-figures")

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: {directory}: another sparsescale process (a shard run) is writing to this run; wait for it to "
        "finish or choose another --out"
    ]
    assert not (directory / "results.h5").exists()


def test_other_shards_run_beside_a_running_shard(tmp_path):
    directory = _prepared(tmp_path)
    running = Shard(0, 2)
    with RunLock(directory, shared=True), RunLock(directory, running.lock_name):
        same_shard = run_cli("run", TINY_CONFIG, "--out", directory, "--shard", "0/2")
        other_shard = run_cli("run", TINY_CONFIG, "--out", directory, "--shard", "1/2")

    assert same_shard.returncode == 2
    assert "another sparsescale process" in same_shard.stderr
    assert other_shard.returncode == 0, other_shard.stderr
    assert (directory / Shard(1, 2).results_name).exists()
    assert not (directory / running.journal_name).exists()


def test_merge_of_non_run_directory_fails(tmp_path):
    completed = run_cli("merge", tmp_path, "--no-figures")

    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: {tmp_path}: not a sparsescale run directory (config.yaml not found)"
