"""The ``sparsescale`` command line.

Errors in the user's input print one line, ``error: FILE:LINE: KEY: message``,
and exit with status 2; a run with failed trials exits with status 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .errors import SparsescaleError
from .loading import load_config
from .report import print_summary

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Scaling-law experiments of random-feature regression on sparse inputs.",
)
console = Console()
error_console = Console(stderr=True)

ConfigArgument = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config value, e.g. --set data.alpha=0.5 (repeatable).",
                 show_default=False),
]


class ProgressReporter:
    """Shows trials done, elapsed and remaining time on a rich progress bar."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress: Progress | None = None
        self.task = None
        self.failed = 0

    def start(self, total: int, done: int, description: str) -> None:
        if done:
            console.print(f"resuming: {done} of {total} trials already recorded")
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=done)

    def advance(self, record) -> None:
        if record.status != "ok":
            self.failed += 1
            error_console.print(f"[red]trial failed[/red] point {record.point} replicate {record.replicate}: "
                                f"{record.error}")
        if self.progress is not None:
            self.progress.advance(self.task)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _version(value: bool) -> None:
    if value:
        console.print(f"sparsescale {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Scaling-law experiments of random-feature regression on sparse inputs."""


@app.command()
def validate(config: ConfigArgument, set_: SetOption = None) -> None:
    """Check a config file and print what it would run."""
    from .runner import plan_tasks

    experiment = load_config(config, set_ or [])
    points, tasks = plan_tasks(experiment)
    console.print(f"{config}: valid {experiment.kind} config: {len(points)} points x {experiment.replicates} "
                  f"replicates = {len(tasks)} trials")


@app.command()
def run(
    config: ConfigArgument,
    set_: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: results/<kind>/<name>-<hash>).",
                                                show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a memory estimate; run nothing.")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes (1 runs in this process).")] = 1,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Finish the other trials after a failure.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    figures: Annotated[bool, typer.Option(help="Save PNG figures beside the results.")] = True,
) -> None:
    """Run an experiment, resuming any trials already recorded in its run directory."""
    from . import runner

    experiment = load_config(config, set_ or [])
    directory = out if out is not None else runner.default_run_directory(experiment, config)
    points, tasks = runner.plan_tasks(experiment)
    if dry_run:
        memory = runner.peak_memory_estimate(experiment, jobs)
        console.print(f"kind: {experiment.kind}")
        console.print(f"trials: {len(tasks)} ({len(points)} points x {experiment.replicates} replicates)")
        console.print(f"output: {directory / runner.RESULTS_NAME}")
        console.print(f"peak memory estimate: {runner.format_bytes(memory)} ({jobs} worker{'s' if jobs > 1 else ''})")
        return

    executor = runner.make_executor("processes", jobs)
    reporter = ProgressReporter(enabled=progress and console.is_terminal or progress and _force_progress())
    outcome = runner.run(experiment, directory, executor=executor, reporter=reporter, keep_going=keep_going,
                         make_figures=figures)
    if outcome.interrupted:
        error_console.print(f"interrupted: {outcome.done} of {outcome.total} trials recorded in {directory}; "
                            "rerun the same command to resume")
        raise typer.Exit(130)
    if outcome.summary is not None:
        print_summary(console, outcome.summary.to_json())
    console.print(f"results: {outcome.results_path}")
    for figure in outcome.figures:
        console.print(f"figure: {figure}")
    if outcome.failures:
        error_console.print(f"{len(outcome.failures)} trial(s) failed (listed above); rerun the same command to "
                            "retry them")
        raise typer.Exit(1)


def _force_progress() -> bool:
    return os.environ.get("SPARSESCALE_PROGRESS") == "1"


@app.command()
def summary(
    results: Annotated[Path, typer.Argument(help="A results.h5 file written by 'sparsescale run'.",
                                            show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON for scripts.")] = False,
) -> None:
    """Print the summary table of a finished run again."""
    from .store import read_results

    contents = read_results(results)
    stored = dict(contents.summary)
    stored.pop("curves", None)
    stored.setdefault("kind", contents.attributes.get("kind"))
    stored["run"] = {
        key: contents.attributes.get(key)
        for key in ("config_hash", "trials_total", "trials_done", "trials_failed", "started", "finished",
                    "sparsescale_version", "git_commit")
    }
    if json_output:
        print(json.dumps(stored, indent=2))
        return
    if not stored.get("laws"):
        console.print(f"{results}: no analysis stored ({stored['run']['trials_done']} of "
                      f"{stored['run']['trials_total']} trials recorded)")
        return
    print_summary(console, stored)


def main() -> None:
    """Entry point: run the app and turn input errors into one line and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        status = app(standalone_mode=False)
    except SparsescaleError as error:
        error_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except typer.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except typer.Abort:
        error_console.print("aborted", markup=False)
        sys.exit(130)
    except typer.TyperException as error:
        # Usage errors of the command line itself (unknown option, missing argument).
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        error_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(getattr(error, "exit_code", 2) or 2)
    sys.exit(status if isinstance(status, int) else 0)
