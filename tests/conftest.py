"""Shared fixtures: paths, a command-line runner and one BLAS thread for the tests."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from cli_helpers import REPO, TINY_CONFIG, run_cli as _run_cli

QUICK_DOUBLE_DESCENT = REPO / "configs" / "quick" / "double_descent.yaml"

# The tests solve many small problems, which multithreaded BLAS only slows down.
threadpool_limits(1)

run_cli = partial(_run_cli, timeout=600, COLUMNS="200")


@pytest.fixture
def cli():
    """Run ``sparsescale ARGS`` in a child process, as a user would."""
    return run_cli


@pytest.fixture(scope="session")
def serial_reference(tmp_path_factory) -> Path:
    """Run the tiny config serially once per session; return its results.h5."""
    directory = tmp_path_factory.mktemp("serial-reference")
    completed = _run_cli("run", TINY_CONFIG, "--out", directory, "--executor", "serial", "--no-figures")
    assert completed.returncode == 0, completed.stderr
    return directory / "results.h5"
