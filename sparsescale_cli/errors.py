"""Exceptions that the command line reports as one line with exit status 2."""

from __future__ import annotations


class SparsescaleError(Exception):
    """Base class: an error in the user's input or environment, not a bug."""

    exit_code = 2


class ConfigError(SparsescaleError):
    """An invalid config file or override, located by source, line and key where known."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        super().__init__(self.format())

    def format(self) -> str:
        place = ""
        if self.source:
            place = self.source if self.line is None else f"{self.source}:{self.line}"
        parts = [part for part in (place, self.key) if part]
        return ": ".join(parts + [self.message])


class RunDirectoryError(SparsescaleError):
    """The output directory cannot be used: locked, or holding a different run."""


class ResultsFileError(SparsescaleError):
    """A results file is missing, unreadable or not written by sparsescale."""


class FrontierInputError(SparsescaleError):
    """An invalid option or input table of ``sparsescale frontier``."""
