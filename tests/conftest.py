"""Session fixtures shared by the runner tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import TINY_CONFIG, run_cli


@pytest.fixture(scope="session")
def serial_reference(tmp_path_factory) -> Path:
    """Run the tiny config serially once per session; return its results.h5."""
    directory = tmp_path_factory.mktemp("serial-reference")
    completed = run_cli("run", TINY_CONFIG, "--out", directory, "--executor", "serial", "--no-figures")
    assert completed.returncode == 0, completed.stderr
    return directory / "results.h5"
