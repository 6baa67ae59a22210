"""A trial's numbers depend only on the config and its (point, replicate) index.

Serial, process-pool, Dask and sharded runs of one config must store
bitwise-identical trial records (wall times aside). Dask runs only on
127.0.0.1.
"""

from __future__ import annotations

import pytest

from cli_helpers import TINY_CONFIG, assert_bitwise_equal, cli_environment, run_cli, trial_fields
from sparsescale_cli.store import read_results


def test_process_pool_matches_serial(tmp_path, serial_reference):
    completed = run_cli("run", TINY_CONFIG, "--out", tmp_path, "--jobs", "2", "--no-figures")

    assert completed.returncode == 0, completed.stderr
    results = read_results(tmp_path / "results.h5")
    assert results.attributes["executor"] == "processes (2 workers)"
    assert_bitwise_equal(trial_fields(serial_reference), trial_fields(tmp_path / "results.h5"), "processes")


def test_three_shards_and_merge_match_serial(tmp_path, serial_reference):
    for index in (0, 2):
        completed = run_cli("run", TINY_CONFIG, "--out", tmp_path, "--shard", f"{index}/3")
        assert completed.returncode == 0, completed.stderr

    incomplete = run_cli("merge", tmp_path, "--no-figures")

    assert incomplete.returncode == 1
    assert "5 of 16 trials unfinished" in incomplete.stderr
    assert "rerun shards 1 of 3 with --shard I/3" in incomplete.stderr
    assert "sbatch" not in incomplete.stderr
    assert read_results(tmp_path / "results.h5").attributes["trials_done"] == 11

    last_shard = run_cli("run", TINY_CONFIG, "--out", tmp_path, "--shard", "1/3")
    assert last_shard.returncode == 0, last_shard.stderr
    assert read_results(tmp_path / "results-shard-0001-of-0003.h5").attributes["trials_done"] == 5
    merged = run_cli("merge", tmp_path, "--no-figures")

    assert merged.returncode == 0, merged.stderr
    assert "16 of 16 trials" in merged.stdout
    assert_bitwise_equal(trial_fields(serial_reference), trial_fields(tmp_path / "results.h5"), "3 shards + merge")
    assert read_results(tmp_path / "results.h5").summary == read_results(serial_reference).summary


def test_dask_local_cluster_matches_serial(tmp_path, serial_reference):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    completed = run_cli("run", TINY_CONFIG, "--out", tmp_path, "--executor", "dask", "--jobs", "2", "--no-figures")

    assert completed.returncode == 0, completed.stderr
    executor = read_results(tmp_path / "results.h5").attributes["executor"]
    assert executor == "dask (local cluster on 127.0.0.1, 2 workers)"
    assert_bitwise_equal(trial_fields(serial_reference), trial_fields(tmp_path / "results.h5"), "dask LocalCluster")


def test_dask_scheduler_address_matches_serial(tmp_path, serial_reference, monkeypatch):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    # The workers are spawned from this process and must import this checkout of sparsescale_cli.
    monkeypatch.setenv("PYTHONPATH", cli_environment()["PYTHONPATH"])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        completed = run_cli("run", TINY_CONFIG, "--out", tmp_path, "--scheduler", address, "--no-figures")
        worker_count = len(cluster.workers)

    assert completed.returncode == 0, completed.stderr
    assert worker_count == 2
    assert read_results(tmp_path / "results.h5").attributes["executor"] == f"dask ({address})"
    assert_bitwise_equal(trial_fields(serial_reference), trial_fields(tmp_path / "results.h5"), "dask scheduler")


def test_unreachable_scheduler_fails_with_one_line(tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    # Port 9 (discard) on loopback: nothing listens there in a test environment.
    completed = run_cli("run", TINY_CONFIG, "--out", tmp_path, "--scheduler", "tcp://127.0.0.1:9", "--no-figures",
                        DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1].startswith(
        "error: failed to connect to the Dask scheduler at tcp://127.0.0.1:9")
    assert not (tmp_path / "journal.bin").exists()
