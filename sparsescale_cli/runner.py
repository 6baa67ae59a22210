"""Run an experiment: plan trials, execute the missing ones, record, analyse, plot.

Data flows one way: config -> plan (points x replicates) -> executor ->
trial function -> journal -> analysis -> results file and figures. The
runner owns the run directory; experiments never see files or executors.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import multiprocessing

from . import __version__, experiments
from .errors import RunDirectoryError
from .experiments.base import Point
from .loading import config_from_text, config_hash, config_text
from .store import Journal, RunLock, TrialRecord, write_results

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.h5"
JOURNAL_NAME = "journal.bin"
CONFIG_NAME = "config.yaml"
_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


class Reporter(Protocol):
    """Progress sink supplied by the caller (the CLI shows a rich progress bar)."""

    def start(self, total: int, done: int, description: str) -> None: ...

    def advance(self, record: TrialRecord) -> None: ...

    def finish(self) -> None: ...


class SilentReporter:
    def start(self, total: int, done: int, description: str) -> None:
        pass

    def advance(self, record: TrialRecord) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Task:
    """One trial to compute: the config, a point and a replicate."""

    config: Any
    point: Point
    replicate: int


@dataclass
class RunOutcome:
    """What a run produced."""

    directory: Path
    results_path: Path
    total: int
    done: int
    computed: int
    failures: list[TrialRecord]
    summary: Any
    figures: list[Path] = field(default_factory=list)
    interrupted: bool = False


def default_run_directory(config, config_path: str | Path, root: Path = Path("results")) -> Path:
    """Return results/<kind>/<name>-<config hash>: the same config resumes the same run."""
    name = config.name or Path(config_path).stem
    return root / config.kind / f"{name}-{config_hash(config)}"


def plan_tasks(config) -> tuple[list[Point], list[Task]]:
    module = experiments.experiment_module(config.kind)
    points = module.plan(config)
    tasks = [Task(config, point, replicate) for point in points for replicate in range(config.replicates)]
    return points, tasks


def peak_memory_estimate(config, jobs: int = 1) -> int:
    """Estimate the peak bytes of a run: the largest trial times the number of workers."""
    module = experiments.experiment_module(config.kind)
    points = module.plan(config)
    largest = max((module.estimate_trial_memory(config, p) for p in points), default=0)
    return largest * max(1, jobs)


def execute_trial(task: Task) -> TrialRecord:
    """Compute one trial; an exception becomes a failed record, never a crash of the run."""
    module = experiments.experiment_module(task.config.kind)
    started = time.perf_counter()
    try:
        fields = module.run_trial(task.config, task.point, task.replicate)
    except Exception as error:  # noqa: BLE001 - any failure of one trial is recorded and reported
        message = f"{type(error).__name__}: {error}"
        logger.debug("trial %s/%s failed:\n%s", task.point.index, task.replicate, traceback.format_exc())
        return TrialRecord(task.point.index, task.replicate, "failed", {"wall_time": time.perf_counter() - started},
                           message)
    fields.setdefault("wall_time", time.perf_counter() - started)
    return TrialRecord(task.point.index, task.replicate, "ok", fields)


def _worker_init() -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")


class Executor(Protocol):
    def run(self, tasks: list[Task], on_result: Callable[[TrialRecord], bool]) -> None: ...


class SerialExecutor:
    """Runs trials one after another in this process."""

    def run(self, tasks: list[Task], on_result: Callable[[TrialRecord], bool]) -> None:
        for task in tasks:
            if not on_result(execute_trial(task)):
                return


class ProcessExecutor:
    """Runs trials in local worker processes; results return to this process, the only writer.

    Each worker is limited to one BLAS thread, so ``jobs`` workers use ``jobs`` cores.
    """

    def __init__(self, jobs: int):
        self.jobs = jobs

    def run(self, tasks: list[Task], on_result: Callable[[TrialRecord], bool]) -> None:
        saved = {name: os.environ.get(name) for name in _BLAS_THREAD_VARIABLES}
        for name in _BLAS_THREAD_VARIABLES:
            os.environ[name] = "1"
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_worker_init) as pool:
                pending: set[Future] = set()
                queue = iter(tasks)
                stop = False

                def submit_next() -> None:
                    task = next(queue, None)
                    if task is not None:
                        pending.add(pool.submit(execute_trial, task))

                for _ in range(2 * self.jobs):
                    submit_next()
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        pending.discard(future)
                        if not on_result(future.result()):
                            stop = True
                        if not stop:
                            submit_next()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def make_executor(name: str, jobs: int) -> Executor:
    if name == "serial" or (name == "processes" and jobs <= 1):
        return SerialExecutor()
    if name == "processes":
        return ProcessExecutor(jobs)
    raise ValueError(f"unknown executor {name!r}")


def provenance() -> dict[str, str]:
    """Return the package, library and machine versions recorded with every run."""
    import h5py
    import numpy
    import pydantic
    import scipy

    info = {
        "sparsescale_version": __version__,
        "git_commit": _git_commit(),
        "python_version": platform.python_version(),
        "numpy_version": numpy.__version__,
        "scipy_version": scipy.__version__,
        "h5py_version": h5py.__version__,
        "hdf5_version": h5py.version.hdf5_version,
        "pydantic_version": pydantic.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
    }
    return info


def _git_commit() -> str:
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def prepare_directory(config, directory: Path) -> None:
    """Create the run directory, or check that it holds a run of the same config."""
    directory.mkdir(parents=True, exist_ok=True)
    stored = directory / CONFIG_NAME
    text = config_text(config)
    if stored.exists():
        previous = stored.read_text(encoding="utf-8")
        if previous != text:
            previous_hash = config_hash(config_from_text(previous, str(stored)))
            raise RunDirectoryError(
                f"{directory}: holds a run of a different config (hash {previous_hash}, this one "
                f"{config_hash(config)}); choose another --out or remove that directory"
            )
        return
    temporary = stored.with_name(stored.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, stored)


def run(
    config,
    directory: Path,
    executor: Executor | None = None,
    reporter: Reporter | None = None,
    keep_going: bool = False,
    make_figures: bool = True,
) -> RunOutcome:
    """Compute every missing trial of ``config`` into ``directory``, then analyse and write results."""
    executor = executor or SerialExecutor()
    reporter = reporter or SilentReporter()
    module = experiments.experiment_module(config.kind)
    prepare_directory(config, directory)
    started = _now()

    with RunLock(directory):
        journal = Journal(directory / JOURNAL_NAME)
        if journal.torn_bytes:
            logger.warning("%s: discarded a torn final record (%d bytes) from an interrupted run",
                           directory / JOURNAL_NAME, journal.torn_bytes)
        points, tasks = plan_tasks(config)
        finished = {key for key, record in journal.latest().items() if record.status == "ok"}
        todo = [t for t in tasks if (t.point.index, t.replicate) not in finished]
        failures: list[TrialRecord] = []
        computed = 0
        reporter.start(len(tasks), len(tasks) - len(todo), config.name or config.kind)

        def on_result(record: TrialRecord) -> bool:
            nonlocal computed
            journal.append(record)
            computed += 1
            reporter.advance(record)
            if record.status != "ok":
                failures.append(record)
                return keep_going
            return True

        interrupted = False
        try:
            executor.run(todo, on_result)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reporter.finish()

        latest = journal.latest()
        ok = {key: r for key, r in latest.items() if r.status == "ok"}
        by_point: dict[int, list[TrialRecord]] = {}
        for record in ok.values():
            by_point.setdefault(record.point, []).append(record)
        remaining_failures = [r for r in latest.values() if r.status != "ok"]

        summary = None
        if not interrupted and ok:
            fields = {p: [r.fields for r in sorted(rows, key=lambda r: r.replicate)] for p, rows in by_point.items()}
            summary = module.analyze(config, points, fields)
            failed_rows = [{"point": r.point, "replicate": r.replicate, "error": r.error} for r in remaining_failures]
            if failed_rows:
                summary.tables["failed_trials"] = failed_rows
        attributes = {
            "kind": config.kind,
            "config_yaml": config_text(config),
            "config_hash": config_hash(config),
            "trials_total": len(tasks),
            "trials_done": len(ok),
            "trials_failed": len(remaining_failures),
            "started": started,
            "finished": _now(),
            "wall_time_total": float(sum(r.fields.get("wall_time", 0.0) for r in ok.values())),
            **provenance(),
        }
        results_path = directory / RESULTS_NAME
        write_results(results_path, attributes, points, by_point, summary.to_json() if summary else None)

        figures: list[Path] = []
        if summary is not None and make_figures:
            fields = {p: [r.fields for r in sorted(rows, key=lambda r: r.replicate)] for p, rows in by_point.items()}
            figures = module.plot(config, points, fields, summary, directory)

    return RunOutcome(directory, results_path, len(tasks), len(ok), computed, remaining_failures, summary,
                      figures, interrupted)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"
