"""Durable trial records and the run's HDF5 results file.

Each finished trial is appended to ``journal.bin`` in the run directory and
fsync'ed before the runner reports it done. A record is framed as
MAGIC | payload length (8 bytes) | CRC-32 (4 bytes) | payload, the payload
being an uncompressed ``.npz`` archive (no pickles). A write torn by a crash
fails its length or CRC check. Reading stops there and the next writer
truncates the torn tail, so a killed run loses at most the trials in flight.

``results.h5`` is rebuilt from the journal when a run finishes (written to a
temporary file, fsync'ed, then renamed over the old one, so readers never
see a partial file). Layout::

    /                       attrs: kind, config_yaml, config_hash, provenance, trials_*
    /points/<index:05d>     attrs: label, params (JSON)
        replicate           (R,) int   replicate index of each row
        wall_time           (R,) float seconds
        <field>             (R, ...) one row per finished replicate
    /summary                attrs: json (the analysis, as ``summary --json`` prints it)
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ResultsFileError, RunDirectoryError

MAGIC = b"SSJ1"
_HEADER = struct.Struct("<4sQI")
_META_KEY = "__meta__"
FORMAT_VERSION = 1


@dataclass
class TrialRecord:
    """One trial's outcome: its index, status, wall time and fields."""

    point: int
    replicate: int
    status: str
    fields: dict[str, Any]
    error: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return self.point, self.replicate


def encode_record(record: TrialRecord) -> bytes:
    """Serialize a record to a framed journal entry."""
    arrays = {name: np.asarray(value) for name, value in record.fields.items()}
    meta = {"point": record.point, "replicate": record.replicate, "status": record.status, "error": record.error}
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> TrialRecord:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        fields = {name: archive[name] for name in archive.files if name != _META_KEY}
        meta = json.loads(bytes(archive[_META_KEY]).decode())
    fields = {name: (value.item() if value.ndim == 0 else value) for name, value in fields.items()}
    return TrialRecord(meta["point"], meta["replicate"], meta["status"], fields, meta.get("error", ""))


def read_journal(path: Path) -> tuple[list[TrialRecord], int, int]:
    """Return (records, bytes of valid prefix, bytes of torn tail) of a journal file."""
    records: list[TrialRecord] = []
    if not path.exists():
        return records, 0, 0
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            records.append(decode_payload(payload))
        except (ValueError, KeyError, OSError, json.JSONDecodeError):
            break
        offset = start + length
    return records, offset, len(data) - offset


class Journal:
    """Append-only, fsync'ed record of finished trials for one run or shard."""

    def __init__(self, path: Path):
        self.path = path
        records, valid, torn = read_journal(path)
        self.torn_bytes = torn
        if torn:
            with open(path, "r+b") as handle:
                handle.truncate(valid)
                handle.flush()
                os.fsync(handle.fileno())
        self._records = records

    def records(self) -> list[TrialRecord]:
        return list(self._records)

    def latest(self) -> dict[tuple[int, int], TrialRecord]:
        """Return the last record of each trial (a retried failure is superseded)."""
        latest: dict[tuple[int, int], TrialRecord] = {}
        for record in self._records:
            latest[record.key] = record
        return latest

    def append(self, record: TrialRecord) -> None:
        entry = encode_record(record)
        with open(self.path, "ab") as handle:
            handle.write(entry)
            handle.flush()
            os.fsync(handle.fileno())
        self._records.append(record)


class RunLock:
    """An advisory flock on a run directory, held while a process writes to it.

    A full run or a merge holds the lock exclusively. Shards of one run hold
    it shared, so they can run side by side while a full run or a merge of
    the same directory is rejected until they finish.
    """

    def __init__(self, directory: Path, name: str = ".lock", shared: bool = False):
        self.path = directory / name
        self.shared = shared
        self._handle = None

    def __enter__(self) -> RunLock:
        self._handle = open(self.path, "a+")
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self._handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            # Only exclusive holders write their pid, and they clear it on release.
            owner = self._handle.read().strip() or "a shard run"
            self._close()
            raise RunDirectoryError(
                f"{self.path.parent}: another sparsescale process ({owner}) is writing to this run; "
                "wait for it to finish or choose another --out"
            ) from None
        except OSError as error:
            self._close()
            raise RunDirectoryError(
                f"{self.path}: failed to lock the run directory ({error.strerror}); the file system may not "
                "support flock (Lustre needs the 'flock' mount option)"
            ) from None
        if not self.shared:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            self._handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is None:
            return
        if not self.shared:
            self._handle.truncate(0)
            self._handle.flush()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_results(
    path: Path,
    attributes: dict[str, Any],
    points: list,
    records: dict[int, list[TrialRecord]],
    summary: dict[str, Any] | None,
) -> None:
    """Write the results file atomically from finished records."""
    import h5py

    temporary = path.with_name(path.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        handle.attrs["format_version"] = FORMAT_VERSION
        for name, value in attributes.items():
            handle.attrs[name] = value
        group = handle.create_group("points")
        for point in points:
            rows = sorted(records.get(point.index, []), key=lambda r: r.replicate)
            entry = group.create_group(f"{point.index:05d}")
            entry.attrs["label"] = point.label
            entry.attrs["params"] = point.params_json()
            entry.create_dataset("replicate", data=np.array([r.replicate for r in rows], dtype=np.int64))
            for name in _field_names(rows):
                values = [np.asarray(r.fields[name], dtype=float) for r in rows]
                entry.create_dataset(name, data=_stack_ragged(values))
        summary_group = handle.create_group("summary")
        summary_group.attrs["json"] = json.dumps(summary if summary is not None else {}, default=_json_number)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _field_names(rows: list[TrialRecord]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row.fields:
            if name not in names:
                names.append(name)
    return [n for n in names if all(n in r.fields for r in rows)]


def _stack_ragged(values: list[np.ndarray]) -> np.ndarray:
    """Stack arrays of one field, padding with nan where lengths differ (e.g. per-draw scans)."""
    if not values:
        return np.zeros(0)
    shapes = {v.shape for v in values}
    if len(shapes) == 1:
        return np.stack(values)
    width = max(v.size for v in values)
    out = np.full((len(values), width), np.nan)
    for row, v in enumerate(values):
        out[row, : v.size] = v.ravel()
    return out


def _json_number(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")


@dataclass
class ResultsFile:
    """The contents of a results file, as read back."""

    attributes: dict[str, Any]
    points: list[dict[str, Any]]
    records: dict[int, list[dict[str, Any]]]
    summary: dict[str, Any]


def read_results(path: Path) -> ResultsFile:
    """Read a results file written by :func:`write_results`."""
    import h5py

    if not path.exists():
        raise ResultsFileError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ResultsFileError(f"{path}: not a readable HDF5 file ({error})") from None
    with handle:
        if "format_version" not in handle.attrs or "points" not in handle:
            raise ResultsFileError(f"{path}: not a sparsescale results file (no format_version or /points)")
        attributes = {name: _plain(value) for name, value in handle.attrs.items()}
        points = []
        records: dict[int, list[dict[str, Any]]] = {}
        for name in sorted(handle["points"]):
            entry = handle["points"][name]
            index = int(name)
            points.append({"index": index, "label": str(entry.attrs["label"]), "params": json.loads(entry.attrs["params"])})
            fields = {key: entry[key][()] for key in entry}
            replicates = fields.get("replicate", np.zeros(0))
            rows = []
            for row in range(len(replicates)):
                rows.append({key: (value[row].item() if value.ndim == 1 else value[row]) for key, value in fields.items()})
            records[index] = rows
        summary = json.loads(handle["summary"].attrs["json"]) if "summary" in handle else {}
    return ResultsFile(attributes, points, records, summary)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
