"""What every experiment kind provides, and the types that pass between them and the runner.

An experiment kind plans a list of points, computes one trial (point x
replicate) at a time from the config alone, and analyses the finished
records. It does not use executors, files or the terminal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Record = dict[str, Any]


@dataclass(frozen=True)
class Point:
    """One setting of a sweep; ``params`` must be JSON-serializable."""

    index: int
    label: str
    params: dict[str, Any]

    def params_json(self) -> str:
        """Return the parameters as strict JSON, with infinite counts written as "inf"."""
        return json.dumps(_strict_json(self.params), sort_keys=True, default=_json_default)


@dataclass
class Law:
    """One measured law beside its theory value, as the summary reports it.

    ``status`` is "exact" (an identity the simulation must reproduce),
    "asymptote" (a derived leading-order law) or "conjecture" (a heuristic
    that we check but have not derived).
    """

    name: str
    measured: float | None
    ci95: tuple[float, float] | None
    theory: float | None
    status: str
    window: str = ""
    note: str = ""

    @property
    def contains_theory(self) -> bool | None:
        if self.ci95 is None or self.theory is None or self.measured is None:
            return None
        return bool(self.ci95[0] <= self.theory <= self.ci95[1])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": _finite_or_none(self.measured),
            "ci95": None if self.ci95 is None else [_finite_or_none(v) for v in self.ci95],
            "theory": _finite_or_none(self.theory),
            "contains_theory": self.contains_theory,
            "status": self.status,
            "window": self.window,
            "note": self.note,
        }


@dataclass
class Summary:
    """The analysis of a run: laws, extra tables, and notes for the reader."""

    kind: str
    laws: list[Law] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "laws": [law.to_json() for law in self.laws],
            "tables": self.tables,
            "notes": self.notes,
            "curves": self.curves,
        }


class ExperimentKind(Protocol):
    """Interface of one experiment module."""

    kind: str
    config_model: type

    def plan(self, config) -> list[Point]: ...

    def run_trial(self, config, point: Point, replicate: int) -> Record: ...

    def analyze(self, config, points: list[Point], records: dict[int, list[Record]]) -> Summary: ...

    def plot(self, config, points: list[Point], records: dict[int, list[Record]], summary: Summary,
             directory: Path) -> list[Path]: ...

    def estimate_trial_memory(self, config, point: Point) -> int: ...


def trial_seeds(root_seed: int, point_index: int, replicate: int) -> tuple[np.random.Generator, int, int]:
    """Return (data generator, feature key, teacher key) of one trial.

    All three come from SeedSequence(root_seed, spawn_key=(point, replicate)),
    so a trial's numbers depend on the config and its index alone, never on
    which worker runs it or in what order.
    """
    sequence = np.random.SeedSequence(root_seed, spawn_key=(point_index, replicate))
    data, features, teacher = sequence.spawn(3)
    feature_key = int(features.generate_state(1, dtype=np.uint64)[0])
    teacher_key = int(teacher.generate_state(1, dtype=np.uint64)[0])
    return np.random.default_rng(data), feature_key, teacher_key


def _strict_json(value: Any) -> Any:
    """Replace float infinities (not valid JSON) by the string "inf", recursively."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return "inf" if math.isinf(value) else value
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")
