"""Shards: deterministic slices of a run's plan that separate processes (Slurm array tasks) compute.

Shard i of n takes every n-th trial of the plan, starting at trial i, in plan
order (points, then replicates). Neighbouring trials usually share a point
and so cost about the same, which keeps the shards balanced. Each shard
writes its own journal and HDF5 file in the run directory, and
``sparsescale merge`` combines them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import SparsescaleError

MAIN_JOURNAL = "journal.bin"
_SHARD_JOURNAL = re.compile(r"^journal-shard-(\d+)-of-(\d+)\.bin$")

T = TypeVar("T")


class ShardError(SparsescaleError):
    """An invalid --shard value or Slurm array environment."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (zero-based, like SLURM_ARRAY_TASK_ID of an array 0-(count-1))."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"invalid shard {self.index}/{self.count}: expected I/N with 0 <= I < N")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def stem(self) -> str:
        return f"shard-{self.index:04d}-of-{self.count:04d}"

    @property
    def journal_name(self) -> str:
        return f"journal-{self.stem}.bin"

    @property
    def results_name(self) -> str:
        return f"results-{self.stem}.h5"

    @property
    def lock_name(self) -> str:
        return f".lock-{self.stem}"

    def select(self, items: Sequence[T]) -> list[T]:
        """Return this shard's part of ``items`` (the plan, in plan order)."""
        return list(items[self.index :: self.count])


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """Parse ``I/N`` or ``auto``, which reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT.

    ``auto`` needs an array with contiguous task ids such as 0-63 or 1-64;
    shard i is then the task id minus SLURM_ARRAY_TASK_MIN.
    """
    environ = os.environ if environ is None else environ
    if text.strip() == "auto":
        return _shard_from_slurm(environ)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ShardError(f"invalid --shard {text!r}: expected I/N (for example 3/64, zero-based) or auto")
    return Shard(int(match.group(1)), int(match.group(2)))


def _shard_from_slurm(environ: Mapping[str, str]) -> Shard:
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ShardError(f"--shard auto needs {' and '.join(missing)}, which Slurm sets in array jobs; "
                         "outside an array job give --shard I/N")
    try:
        task_id = int(environ["SLURM_ARRAY_TASK_ID"])
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
        first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        last = int(environ.get("SLURM_ARRAY_TASK_MAX", str(first + count - 1)))
    except ValueError:
        raise ShardError("--shard auto: SLURM_ARRAY_TASK_* variables are not integers") from None
    if last - first + 1 != count:
        raise ShardError(
            f"--shard auto needs contiguous array task ids, but this array has {count} tasks between {first} and "
            f"{last}; give --shard $SLURM_ARRAY_TASK_ID/N with the full shard count N instead"
        )
    return Shard(task_id - first, count)


def journal_paths(directory: Path) -> list[Path]:
    """Return the run's journals: the main one first, then the shard journals in name order."""
    paths = [directory / MAIN_JOURNAL] if (directory / MAIN_JOURNAL).exists() else []
    shard_paths = sorted(path for path in directory.glob("journal-shard-*.bin") if _SHARD_JOURNAL.match(path.name))
    return paths + shard_paths


def shard_of_journal(path: Path) -> Shard | None:
    match = _SHARD_JOURNAL.match(path.name)
    return Shard(int(match.group(1)), int(match.group(2))) if match else None
