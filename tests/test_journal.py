"""The journal: durable trial records whose torn tail is dropped on open, never read as data."""

from __future__ import annotations

import numpy as np
import pytest

from sparsescale_cli.store import Journal, TrialRecord, encode_record, read_journal


def _record(point: int, replicate: int) -> TrialRecord:
    return TrialRecord(point, replicate, "ok", {"loss": np.arange(5.0) * (point + 1), "rank_data": 7.0 + replicate})


def _write_three(path) -> int:
    journal = Journal(path)
    for replicate in range(3):
        journal.append(_record(1, replicate))
    return path.stat().st_size


@pytest.mark.parametrize("kept_bytes", [1, 10, 16, 17, 200, -1])
def test_journal_drops_a_torn_final_record(tmp_path, kept_bytes):
    path = tmp_path / "journal.bin"
    valid_size = _write_three(path)
    partial = encode_record(_record(2, 0))
    with open(path, "ab") as handle:
        handle.write(partial[:kept_bytes])

    journal = Journal(path)

    assert [r.key for r in journal.records()] == [(1, 0), (1, 1), (1, 2)]
    assert journal.torn_bytes == len(partial[:kept_bytes])
    assert path.stat().st_size == valid_size


def test_journal_rejects_a_record_with_a_bad_checksum(tmp_path):
    path = tmp_path / "journal.bin"
    valid_size = _write_three(path)
    entry = bytearray(encode_record(_record(2, 0)))
    entry[-1] ^= 0xFF
    with open(path, "ab") as handle:
        handle.write(bytes(entry))

    records, valid, torn = read_journal(path)

    assert len(records) == 3
    assert valid == valid_size
    assert torn == len(entry)


def test_journal_appends_after_truncating_the_tail(tmp_path):
    path = tmp_path / "journal.bin"
    _write_three(path)
    with open(path, "ab") as handle:
        handle.write(encode_record(_record(2, 0))[:50])

    Journal(path).append(_record(2, 0))
    records, _, torn = read_journal(path)

    assert torn == 0
    assert [r.key for r in records] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    np.testing.assert_array_equal(records[-1].fields["loss"], np.arange(5.0) * 3)
