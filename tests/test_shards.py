"""Shard selection and --shard parsing."""

from __future__ import annotations

import pytest

from sparsescale_cli.shards import Shard, ShardError, parse_shard


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 17])
def test_shards_partition_the_plan(count):
    plan = list(range(16))
    parts = [Shard(index, count).select(plan) for index in range(count)]
    flattened = sorted(item for part in parts for item in part)
    assert flattened == plan
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shard_selection_is_fixed_by_index():
    plan = list(range(10))
    assert Shard(1, 3).select(plan) == [1, 4, 7]


@pytest.mark.parametrize("text, expected", [("0/1", Shard(0, 1)), ("3/64", Shard(3, 64)), (" 2 / 3 ", Shard(2, 3))])
def test_parse_shard_reads_index_and_count(text, expected):
    assert parse_shard(text, environ={}) == expected


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", "1/2/3", ""])
def test_parse_shard_rejects_invalid_text(text):
    with pytest.raises(ShardError):
        parse_shard(text, environ={})


def test_parse_shard_auto_reads_slurm_array_variables():
    environ = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0",
               "SLURM_ARRAY_TASK_MAX": "7"}
    assert parse_shard("auto", environ) == Shard(5, 8)


def test_parse_shard_auto_one_based_array():
    environ = {"SLURM_ARRAY_TASK_ID": "64", "SLURM_ARRAY_TASK_COUNT": "64", "SLURM_ARRAY_TASK_MIN": "1",
               "SLURM_ARRAY_TASK_MAX": "64"}
    assert parse_shard("auto", environ) == Shard(63, 64)


def test_parse_shard_auto_outside_an_array_job_fails():
    with pytest.raises(ShardError, match="SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT"):
        parse_shard("auto", environ={})


def test_parse_shard_auto_rejects_a_sparse_array():
    # sbatch --array=3,17 starts two tasks, and neither their ids nor their count give the shard count.
    environ = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "3",
               "SLURM_ARRAY_TASK_MAX": "17"}
    with pytest.raises(ShardError, match="contiguous"):
        parse_shard("auto", environ)
