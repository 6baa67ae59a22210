"""Helpers for tests that run the CLI as a user would: a child process, a tiny config, stored trials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "data" / "tiny_double_descent.yaml"


def cli_environment(**extra: str) -> dict[str, str]:
    """Return the environment for a CLI child: this checkout first on PYTHONPATH, no progress bar."""
    environment = dict(os.environ)
    paths = [str(REPO)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment.pop("SPARSESCALE_PROGRESS", None)
    environment.update(extra)
    return environment


def cli_command(*arguments: str | Path) -> list[str]:
    return [sys.executable, "-m", "sparsescale_cli", *map(str, arguments)]


def run_cli(*arguments: str | Path, timeout: float = 120, **extra_environment: str) -> subprocess.CompletedProcess:
    """Run ``sparsescale ARGUMENTS`` in a child process and return its exit status and output."""
    return subprocess.run(cli_command(*arguments), env=cli_environment(**extra_environment), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def trial_fields(results_path: Path) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Return every trial's stored fields except its wall time, keyed by (point, replicate)."""
    from sparsescale_cli.store import read_results

    contents = read_results(results_path)
    trials = {}
    for point, rows in contents.records.items():
        for row in rows:
            fields = {name: np.asarray(value) for name, value in row.items() if name != "wall_time"}
            trials[(point, int(row["replicate"]))] = fields
    return trials


def assert_bitwise_equal(expected: dict, actual: dict, label: str) -> None:
    """Assert that two trial_fields() results hold the same trials with bit-identical values."""
    assert sorted(actual) == sorted(expected), f"{label}: different trials recorded"
    for key, fields in expected.items():
        assert sorted(actual[key]) == sorted(fields), f"{label}: trial {key} has other fields"
        for name, value in fields.items():
            other = actual[key][name]
            assert other.dtype == value.dtype, f"{label}: trial {key} field {name} has another dtype"
            assert other.shape == value.shape, f"{label}: trial {key} field {name} has another shape"
            assert other.tobytes() == value.tobytes(), f"{label}: trial {key} field {name} differs"
