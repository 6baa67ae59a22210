"""Run an experiment: plan trials, execute the missing ones, record, analyse, plot.

Data flows one way: config -> plan (points x replicates) -> executor ->
trial function -> journal -> analysis -> results file and figures. The
runner owns the run directory; experiments never see files or executors.

A run directory contains the resolved config, one journal per writer (the main
``journal.bin`` and one per shard) and ``results.h5``. Every run reads all
journals of its directory, so a trial recorded by any earlier run or shard
is not computed again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import __version__, experiments
from .errors import RunDirectoryError
from .executors import Executor, SerialExecutor, Task, execute_trial, make_executor  # noqa: F401 - re-exported
from .experiments.base import Point
from .loading import config_from_text, config_hash, config_text
from .shards import MAIN_JOURNAL, Shard, journal_paths, shard_of_journal
from .store import Journal, RunLock, TrialRecord, read_journal, write_results

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.h5"
HISTORY_NAME = "history.jsonl"
JOURNAL_NAME = MAIN_JOURNAL
CONFIG_NAME = "config.yaml"


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
class RunOutcome:
    """Result of a run, a shard run or a merge."""

    directory: Path
    results_path: Path
    total: int
    done: int
    computed: int
    failures: list[TrialRecord]
    summary: Any
    figures: list[Path] = field(default_factory=list)
    interrupted: bool = False
    shard: Shard | None = None
    # Planned trials (of the shard, for a shard run) without a finished record, failed ones included.
    missing: list[tuple[int, int]] = field(default_factory=list)


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
    """Create the run directory, or check that it contains a run of the same config."""
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
    # Shards may start at the same moment, so each writes its own temporary file and renames it.
    temporary = stored.with_name(f"{stored.name}.{os.getpid()}.{socket.gethostname()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, stored)


def load_run_config(directory: Path):
    """Read the resolved config stored in a run directory."""
    stored = directory / CONFIG_NAME
    if not stored.exists():
        raise RunDirectoryError(f"{directory}: not a sparsescale run directory ({CONFIG_NAME} not found)")
    return config_from_text(stored.read_text(encoding="utf-8"), str(stored))


def collect_records(directory: Path, own: Journal | None = None) -> dict[tuple[int, int], TrialRecord]:
    """Return the best record of each trial over all journals of ``directory``.

    A finished ("ok") record wins over a failed one, the first finished one
    in journal order wins over later duplicates, and among failed records
    the last one wins. Journals of other writers are only read: a torn tail
    there may be a record being written now, so only its owner truncates it.
    """
    best: dict[tuple[int, int], TrialRecord] = {}
    for path in journal_paths(directory):
        if own is not None and path == own.path:
            records = own.records()
        else:
            records, _, _ = read_journal(path)
        for record in records:
            current = best.get(record.key)
            if current is None or current.status != "ok":
                best[record.key] = record
    return best


def _largest_first(config, tasks: list[Task]) -> list[Task]:
    """Order tasks by the memory estimate of their point, largest first (a proxy for cost).

    Starting the longest trials first keeps workers from idling at the end of a run.
    """
    module = experiments.experiment_module(config.kind)
    cost = {}
    for task in tasks:
        if task.point.index not in cost:
            cost[task.point.index] = module.estimate_trial_memory(config, task.point)
    return sorted(tasks, key=lambda task: -cost[task.point.index])


def run(
    config,
    directory: Path,
    executor: Executor | None = None,
    reporter: Reporter | None = None,
    keep_going: bool = False,
    make_figures: bool = True,
    shard: Shard | None = None,
) -> RunOutcome:
    """Compute every missing trial of ``config`` (or of one shard) into ``directory``, then write results.

    A full run analyses all recorded trials into ``results.h5``. A shard run
    writes its own journal and results file (records only, no analysis);
    ``merge`` analyses the shards together.
    """
    executor = executor or SerialExecutor()
    reporter = reporter or SilentReporter()
    prepare_directory(config, directory)
    started = _now()

    with contextlib.ExitStack() as locks:
        locks.enter_context(RunLock(directory, shared=shard is not None))
        if shard is not None:
            locks.enter_context(RunLock(directory, shard.lock_name))
        journal = Journal(directory / (shard.journal_name if shard else JOURNAL_NAME))
        if journal.torn_bytes:
            logger.warning("%s: discarded a torn final record (%d bytes) from an interrupted run",
                           journal.path, journal.torn_bytes)

        points, tasks = plan_tasks(config)
        mine = shard.select(tasks) if shard else tasks
        finished = {key for key, record in collect_records(directory, journal).items() if record.status == "ok"}
        todo = _largest_first(config, [t for t in mine if t.key not in finished])
        computed = 0
        reporter.start(len(mine), len(mine) - len(todo), config.name or config.kind)

        def on_result(record: TrialRecord) -> bool:
            nonlocal computed
            journal.append(record)
            computed += 1
            reporter.advance(record)
            return record.status == "ok" or keep_going

        interrupted = False
        try:
            executor.run(todo, on_result)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reporter.finish()

        best = collect_records(directory, journal)
        mine_keys = [t.key for t in mine]
        failures = [best[key] for key in mine_keys if key in best and best[key].status != "ok"]
        missing = [key for key in mine_keys if key not in best or best[key].status != "ok"]
        attributes = {"executor": executor.description, "started": started, "trials_computed": computed,
                      "interrupted": interrupted}
        if shard is not None:
            chosen = {key: best[key] for key in mine_keys if key in best}
            results_path = directory / shard.results_name
            attributes.update(shard=shard.label, shard_index=shard.index, shard_count=shard.count)
            _write(config, results_path, points, len(mine), chosen, attributes, summary=None)
            return RunOutcome(directory, results_path, len(mine), len(mine) - len(missing), computed, failures,
                              None, [], interrupted, shard, missing)

        results_path, summary, figures = _finalize(config, directory, points, len(tasks), best, attributes,
                                                   analyze=not interrupted, make_figures=make_figures)
    return RunOutcome(directory, results_path, len(tasks), len(tasks) - len(missing), computed, failures, summary,
                      figures, interrupted, None, missing)


def merge(directory: Path, make_figures: bool = True) -> RunOutcome:
    """Combine every journal of a run directory (the shards' and the main one) into its ``results.h5``."""
    config = load_run_config(directory)
    started = _now()
    with RunLock(directory):
        points, tasks = plan_tasks(config)
        best = collect_records(directory)
        sources = [path.name for path in journal_paths(directory)]
        attributes = {"executor": f"merge of {len(sources)} journal(s)", "merged_journals": ", ".join(sources),
                      "started": started}
        results_path, summary, figures = _finalize(config, directory, points, len(tasks), best, attributes,
                                                   analyze=True, make_figures=make_figures)
    keys = [task.key for task in tasks]
    failures = [best[key] for key in keys if key in best and best[key].status != "ok"]
    missing = [key for key in keys if key not in best or best[key].status != "ok"]
    return RunOutcome(directory, results_path, len(tasks), len(tasks) - len(missing), 0, failures, summary, figures,
                      False, None, missing)


def shard_counts(directory: Path) -> list[int]:
    """Return the shard counts N of the shard journals in ``directory`` (usually one)."""
    counts = {shard.count for path in journal_paths(directory) if (shard := shard_of_journal(path))}
    return sorted(counts)


def _finalize(config, directory: Path, points: list[Point], total: int, best: dict[tuple[int, int], TrialRecord],
              attributes: dict[str, Any], analyze: bool, make_figures: bool):
    """Analyse the finished records, write ``results.h5`` and the figures; return (path, summary, figures)."""
    module = experiments.experiment_module(config.kind)
    ok = {key: record for key, record in best.items() if record.status == "ok"}
    failed = [record for record in best.values() if record.status != "ok"]
    by_point = _by_point(ok)
    fields = {p: [r.fields for r in rows] for p, rows in by_point.items()}

    summary = None
    if analyze and ok:
        summary = module.analyze(config, points, fields)
        failed_rows = [{"point": r.point, "replicate": r.replicate, "error": r.error} for r in failed]
        if failed_rows:
            summary.tables["failed_trials"] = failed_rows
    results_path = directory / RESULTS_NAME
    _write(config, results_path, points, total, best, attributes, summary)

    figures: list[Path] = []
    if summary is not None and make_figures:
        figures = module.plot(config, points, fields, summary, directory)
    return results_path, summary, figures


def _by_point(records: dict[tuple[int, int], TrialRecord]) -> dict[int, list[TrialRecord]]:
    by_point: dict[int, list[TrialRecord]] = {}
    for record in records.values():
        by_point.setdefault(record.point, []).append(record)
    return {point: sorted(rows, key=lambda r: r.replicate) for point, rows in by_point.items()}


def _write(config, path: Path, points: list[Point], total: int, best: dict[tuple[int, int], TrialRecord],
           attributes: dict[str, Any], summary) -> None:
    ok = {key: record for key, record in best.items() if record.status == "ok"}
    info = provenance()
    history = _append_history(path, attributes, info)
    attributes = {
        "kind": config.kind,
        "config_yaml": config_text(config),
        "config_hash": config_hash(config),
        "trials_total": total,
        "trials_done": len(ok),
        "trials_failed": len(best) - len(ok),
        **attributes,
        "finished": _now(),
        "wall_time_total": float(sum(r.fields.get("wall_time", 0.0) for r in ok.values())),
        **info,
        "first_started": history[0]["started"],
        "history": json.dumps(history),
    }
    write_results(path, attributes, points, _by_point(ok), summary.to_json() if summary else None)


def _append_history(results_path: Path, attributes: dict[str, Any], info: dict[str, str]) -> list[dict[str, Any]]:
    """Record this command in the run directory's history.jsonl and return the whole history.

    ``started``, ``finished`` and ``command`` in results.h5 describe the last
    command only; the history keeps every command that wrote to the run.
    """
    entry = {
        "results": results_path.name,
        "started": attributes.get("started"),
        "finished": _now(),
        "executor": attributes.get("executor"),
        "trials_computed": attributes.get("trials_computed"),
        "interrupted": attributes.get("interrupted", False),
        **{key: info[key] for key in ("command", "host", "sparsescale_version", "git_commit")},
    }
    history_path = results_path.parent / HISTORY_NAME
    with open(history_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    history = []
    for line in history_path.read_text(encoding="utf-8").splitlines():
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a crash carries no information worth failing over
    return history


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"


def shards_of_trials(config, keys: list[tuple[int, int]], count: int) -> list[int]:
    """Return the indices of the shards of ``count`` that hold the trials ``keys``."""
    _, tasks = plan_tasks(config)
    wanted = set(keys)
    return sorted({position % count for position, task in enumerate(tasks) if task.key in wanted})
