"""The ``sparsescale`` command line.

Errors in the user's input print one line, ``error: FILE:LINE: KEY: message``,
and exit with status 2; a run with failed trials exits with status 1.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import signal
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
def _console(stderr: bool = False) -> Console:
    """Return a console; output to a file or pipe gets 160 columns (or $COLUMNS), so tables stay whole in logs."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(stderr=stderr, width=width)


console = _console()
error_console = _console(stderr=True)

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
                  f"replicates = {len(tasks)} trials", soft_wrap=True)


class ExecutorName(str, enum.Enum):
    serial = "serial"
    processes = "processes"
    dask = "dask"


@app.command()
def run(
    config: ConfigArgument,
    set_: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: results/<kind>/<name>-<hash>).",
                                                show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a memory estimate; run nothing.")] = False,
    jobs: Annotated[Optional[int], typer.Option(
        min=0, help="Local workers: processes, or Dask LocalCluster workers. 0 means one per available core. "
                    "Default: 1 (runs in this process), or all cores for a Dask LocalCluster.",
        show_default=False)] = None,
    executor: Annotated[Optional[ExecutorName], typer.Option(
        help="Where trials run. Default: dask when --scheduler is given, otherwise processes.",
        show_default=False)] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Dask scheduler address, e.g. tcp://host:8786 (implies --executor dask). Without it, "
             "--executor dask starts a LocalCluster on 127.0.0.1.", show_default=False)] = None,
    shard: Annotated[Optional[str], typer.Option(
        help="Run only shard I/N of the plan (zero-based I), writing its own journal and results file; "
             "'auto' reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT. Combine shards with "
             "'sparsescale merge'.", show_default=False)] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Finish the other trials after a failure.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    figures: Annotated[bool, typer.Option(help="Save PNG figures beside the results.")] = True,
) -> None:
    """Run an experiment, resuming any trials already recorded in its run directory."""
    from . import runner
    from .executors import available_cores
    from .shards import parse_shard

    experiment = load_config(config, set_ or [])
    directory = out if out is not None else runner.default_run_directory(experiment, config)
    selected_shard = parse_shard(shard) if shard is not None else None
    if jobs == 0:
        jobs = available_cores()
    if executor is not None:
        executor_name = executor.value
    elif scheduler is not None:
        executor_name = "dask"
    else:
        executor_name = "processes"
    trial_executor = runner.make_executor(executor_name, jobs, scheduler)
    points, tasks = runner.plan_tasks(experiment)
    if dry_run:
        workers = trial_executor.local_workers
        memory = runner.peak_memory_estimate(experiment, workers)
        console.print(f"kind: {experiment.kind}")
        console.print(f"trials: {len(tasks)} ({len(points)} points x {experiment.replicates} replicates)")
        if selected_shard is not None:
            console.print(f"shard {selected_shard.label}: {len(selected_shard.select(tasks))} trials")
            console.print(f"output: {directory / selected_shard.results_name}")
        else:
            console.print(f"output: {directory / runner.RESULTS_NAME}")
        console.print(f"executor: {trial_executor.description}")
        where = "per Dask worker" if scheduler else f"{workers} worker{'s' if workers > 1 else ''} on this machine"
        console.print(f"peak memory estimate: {runner.format_bytes(memory)} ({where})")
        return

    reporter = ProgressReporter(enabled=progress and console.is_terminal or progress and _force_progress())
    # Slurm ends a job at its time limit with SIGTERM; stop like Ctrl-C so that the journal stays clean.
    signal.signal(signal.SIGTERM, _interrupt)
    outcome = runner.run(experiment, directory, executor=trial_executor, reporter=reporter, keep_going=keep_going,
                         make_figures=figures, shard=selected_shard)
    if outcome.interrupted:
        error_console.print(f"interrupted: {outcome.done} of {outcome.total} trials recorded in {directory}; "
                            "rerun the same command to resume")
        raise typer.Exit(130)
    if outcome.summary is not None:
        print_summary(console, outcome.summary.to_json())
    console.print(f"results: {outcome.results_path}", soft_wrap=True)
    for figure in outcome.figures:
        console.print(f"figure: {figure}", soft_wrap=True)
    if selected_shard is not None:
        console.print(f"shard {selected_shard.label}: {outcome.done} of {outcome.total} trials recorded; when every "
                      f"shard has finished, run: sparsescale merge {directory}", soft_wrap=True)
    _report_unfinished(outcome, "rerun the same command to retry them")
    if outcome.missing:
        raise typer.Exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _report_unfinished(outcome, advice: str, limit: int = 20) -> None:
    """Print the failed trials with their errors and the count of trials never run."""
    if outcome.failures:
        error_console.print(f"{len(outcome.failures)} trial(s) failed:", markup=False)
        for record in outcome.failures[:limit]:
            error_console.print(f"  point {record.point} replicate {record.replicate}: {record.error}", markup=False,
                                highlight=False, soft_wrap=True)
        if len(outcome.failures) > limit:
            error_console.print(f"  ... and {len(outcome.failures) - limit} more (see the failed_trials table)")
    not_run = len(outcome.missing) - len(outcome.failures)
    if not_run and outcome.failures:
        error_console.print(f"{not_run} trial(s) not run (a run without --keep-going stops at the first failure)",
                            markup=False)
    elif not_run:
        error_console.print(f"{not_run} trial(s) have no record yet", markup=False)
    if outcome.missing:
        error_console.print(f"{len(outcome.missing)} of {outcome.total} trials unfinished; {advice}", markup=False,
                            highlight=False, soft_wrap=True)


@app.command()
def merge(
    run_directory: Annotated[Path, typer.Argument(help="Run directory holding the shards' journals.",
                                                  show_default=False)],
    figures: Annotated[bool, typer.Option(help="Save PNG figures beside the results.")] = True,
) -> None:
    """Combine the shards of a run into its results.h5, analyse it and report missing trials (exit 1 if any)."""
    from . import runner

    outcome = runner.merge(run_directory, make_figures=figures)
    if outcome.summary is not None:
        print_summary(console, outcome.summary.to_json())
    console.print(f"results: {outcome.results_path} ({outcome.done} of {outcome.total} trials)", soft_wrap=True)
    for figure in outcome.figures:
        console.print(f"figure: {figure}", soft_wrap=True)
    if not outcome.missing:
        return
    from .slurm import SCRIPT_NAME

    config_path = run_directory / runner.CONFIG_NAME
    script = run_directory / SCRIPT_NAME
    advice = f"rerun them with: sparsescale run {config_path} --out {run_directory}"
    for count in runner.shard_counts(run_directory):
        shards = runner.shards_of_trials(runner.load_run_config(run_directory), outcome.missing, count)
        listed = ",".join(str(index) for index in shards)
        advice += f"; or rerun shards {listed} of {count} with --shard I/{count}"
        if script.exists():
            advice += f" or: sbatch --array={listed} {script}"
    _report_unfinished(outcome, advice)
    raise typer.Exit(1)


@app.command()
def submit(
    config: ConfigArgument,
    set_: SetOption = None,
    slurm: Annotated[bool, typer.Option("--slurm", help="Submit a Slurm array job (the only scheduler so far).")] = False,
    array: Annotated[int, typer.Option(min=1, help="Number of array tasks, i.e. shards of the run.")] = 1,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: results/<kind>/<name>-<hash>).",
                                                show_default=False)] = None,
    partition: Annotated[Optional[str], typer.Option(help="Slurm partition (default: the cluster's).",
                                                     show_default=False)] = None,
    time: Annotated[Optional[str], typer.Option(help="Time limit per task, e.g. 2:00:00 (default: the "
                                                     "partition's).", show_default=False)] = None,
    mem: Annotated[Optional[str], typer.Option(help="Memory per task, e.g. 8G (default: the cluster's).",
                                               show_default=False)] = None,
    cpus_per_task: Annotated[int, typer.Option(min=1, help="CPUs per task; each task runs that many worker "
                                                           "processes.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write the job script but do not submit it.")] = False,
) -> None:
    """Write a Slurm array job that runs one shard of the run per task, and submit it with sbatch."""
    from . import runner, slurm as slurm_jobs

    if not slurm:
        raise SparsescaleError("give --slurm: Slurm array jobs are the only batch system supported so far")
    experiment = load_config(config, set_ or [])
    directory = out if out is not None else runner.default_run_directory(experiment, config)
    _, tasks = runner.plan_tasks(experiment)
    if array > len(tasks):
        raise SparsescaleError(f"--array {array} is more than the {len(tasks)} trials of {config}; "
                               f"use at most {len(tasks)}")
    runner.prepare_directory(experiment, directory)
    job = slurm_jobs.ArrayJob(array, partition, time, mem, cpus_per_task,
                              job_name=f"sparsescale-{experiment.name or experiment.kind}")
    script = slurm_jobs.write_array_script(job, directory, directory / runner.CONFIG_NAME)
    console.print(f"job script: {script} ({array} tasks, {len(tasks)} trials)", soft_wrap=True)
    if dry_run:
        console.print(f"submit it with: sbatch {script}", soft_wrap=True)
        return
    job_id = slurm_jobs.submit(script)
    console.print(f"submitted array job {job_id}")
    console.print(f"watch it with: squeue -j {job_id}; then combine the shards with: sparsescale merge {directory}",
                  soft_wrap=True)


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


@app.command()
def frontier(
    budget: Annotated[str, typer.Option(help="Compute budget C, or a log-spaced range START:STOP:COUNT "
                                             "(e.g. 1e6:1e12:13).", show_default=False)],
    alpha: Annotated[Optional[float], typer.Option(help="Spectral exponent alpha (theory and --csv; default 1).",
                                                   show_default=False)] = None,
    s: Annotated[Optional[float], typer.Option("--s", help="Sparsity exponent s: 0 (dense) or above 1 (default 2).",
                                               show_default=False)] = None,
    c: Annotated[float, typer.Option(help="Activation prefactor c of p_i = min(1, c i^-s).")] = 1.0,
    noise: Annotated[float, typer.Option(help="Label noise sigma; the loss floor is sigma^2.")] = 0.0,
    beta: Annotated[float, typer.Option(help="Teacher weight exponent beta, E[w_i^2] = i^-beta, in [0, 1).")] = 0.0,
    cost: Annotated[str, typer.Option(help="Compute model: nd (C = N D), 6nd (C = 6 N D) or nd-steps "
                                           "(C = N D T for T gradient-descent steps).")] = "nd",
    steps: Annotated[Optional[float], typer.Option(help="T, the gradient-descent steps of --cost nd-steps.",
                                                   show_default=False)] = None,
    results: Annotated[Optional[Path], typer.Option(help="Fit the law to a compute_frontier results.h5.",
                                                    show_default=False)] = None,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Fit the law to a CSV with columns N, D, loss "
                                                     "(and optionally replicate).", show_default=False)] = None,
    floor: Annotated[Optional[float], typer.Option(help="Hold the loss floor E at this value in a --csv fit "
                                                        "(fitted when omitted).", show_default=False)] = None,
    bootstrap: Annotated[int, typer.Option(min=20, max=100_000, help="Bootstrap resamples of a fitted law.")] = 200,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the bootstrap resampling.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print a list of rows as JSON for scripts.")] = False,
) -> None:
    """Print the compute-optimal N*, D* and loss at each budget, from theory or from a fitted law."""
    from . import fitting
    from . import frontier as answers
    from .errors import FrontierInputError
    from .experiments.base import Law
    from .model.frontier import dense_counterpart, theory_law
    from .report import laws_table, rows_table

    budgets = answers.parse_budgets(budget)
    multiplier = answers.multiplier_for(cost, steps)
    if results is not None and csv_file is not None:
        raise FrontierInputError("give --results or --csv, not both")
    if floor is not None and not (floor >= 0 and floor < float("inf")):
        raise FrontierInputError(f"--floor must be a non-negative number, got {floor:g}")

    if results is not None:
        if alpha is not None or s is not None:
            raise FrontierInputError("--alpha and --s come from the run's config with --results; omit them")
        source = answers.fit_results(results, fitting.HUBER_DELTA, bootstrap, seed)
    elif csv_file is not None:
        source = answers.fit_csv(csv_file, floor, fitting.HUBER_DELTA, bootstrap, seed)
        if alpha is not None or s is not None:
            law, teacher = answers.model_law(1.0 if alpha is None else alpha, 2.0 if s is None else s, c, noise, beta)
            source.theory = theory_law(law, teacher)
            source.dense = theory_law(dense_counterpart(law), teacher)
    else:
        source = None
        law, teacher = answers.model_law(1.0 if alpha is None else alpha, 2.0 if s is None else s, c, noise, beta)
        sparse_law, dense_law = theory_law(law, teacher), theory_law(dense_counterpart(law), teacher)

    if source is None:
        rows = answers.theory_rows(sparse_law, dense_law, budgets, multiplier)
        laws = _frontier_theory_laws(sparse_law, dense_law, Law)
        notes = ["N*, D* and the loss use the additive law L = E + A N^-a_N + B D^-a_D (conjecture: it ignores "
                 "the interpolation peak at N ~ K(D)); the exponents hold for any scaling form (asymptote)."]
    else:
        rows = answers.fitted_rows(source, budgets, multiplier)
        laws = _frontier_fitted_laws(source, Law)
        notes = [f"Law {source.description}: {source.bootstrap.fit.status()}. Intervals: 95% percentile bootstrap "
                 f"over {source.bootstrap.unit} ({len(source.bootstrap.resampled)} usable of {bootstrap} resamples)."]

    if json_output:
        print(json.dumps(rows, indent=2))
        return
    console.print(laws_table({"kind": "frontier", "laws": [law.to_json() for law in laws]}))
    console.print(rows_table(f"compute-optimal allocation (cost {cost})", _frontier_display_rows(rows)))
    for note in notes:
        console.print(f"[dim]note:[/dim] {note}")


def _frontier_theory_laws(sparse_law, dense_law, law_class) -> list:
    n_exponent, d_exponent = sparse_law.frontier_exponents()
    dense_n, dense_d = dense_law.frontier_exponents()
    return [
        law_class("N*(C) exponent", None, None, n_exponent, "asymptote", "a_D/(a_N + a_D)",
                  f"a_N = {sparse_law.feature_exponent:g}, a_D = {sparse_law.data_exponent:g}"),
        law_class("D*(C) exponent", None, None, d_exponent, "asymptote", "a_N/(a_N + a_D)"),
        law_class("N*(C) exponent, dense model", None, None, dense_n, "asymptote", "s = 0"),
        law_class("D*(C) exponent, dense model", None, None, dense_d, "asymptote", "s = 0"),
    ]


def _frontier_fitted_laws(source, law_class) -> list:
    bootstrap = source.bootstrap
    fitted = bootstrap.fit.law
    theory = source.theory
    entries = [
        ("a_N", fitted.feature_exponent, lambda law: law.feature_exponent,
         theory.feature_exponent if theory else None),
        ("a_D", fitted.data_exponent, lambda law: law.data_exponent, theory.data_exponent if theory else None),
        ("N*(C) exponent", fitted.frontier_exponents()[0], lambda law: law.frontier_exponents()[0],
         theory.frontier_exponents()[0] if theory else None),
        ("D*(C) exponent", fitted.frontier_exponents()[1], lambda law: law.frontier_exponents()[1],
         theory.frontier_exponents()[1] if theory else None),
    ]
    laws = []
    for name, value, quantity, expected in entries:
        interval = bootstrap.interval(quantity) if bootstrap.resampled else None
        laws.append(law_class(f"{name} (fit)", value, interval, expected, "conjecture",
                              f"{source.rows} losses", "additive law fitted in log space (Huber)"))
    return laws


def _frontier_display_rows(rows: list[dict]) -> list[dict]:
    display = []
    for row in rows:
        entry = {"budget": row["budget"], "N*": row["N"], "D*": row["D"], "loss": row["loss"]}
        if row.get("N_ci95") is not None:
            entry.update({"N* 95% CI": row["N_ci95"], "D* 95% CI": row["D_ci95"], "loss 95% CI": row["loss_ci95"]})
        if row.get("theory"):
            entry.update({"N* theory": row["theory"]["N"], "loss theory": row["theory"]["loss"]})
        if row.get("dense"):
            entry.update({"N* dense": row["dense"]["N"], "loss dense": row["dense"]["loss"]})
        display.append(entry)
    return display


def main() -> None:
    """Entry point: run the app and turn input errors into one line and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    # Trials run with one BLAS thread each, so that their bits are reproducible. The analysis
    # and the small solves of the main process gain nothing from more threads either.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
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
