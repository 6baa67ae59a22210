"""Executors: where trials run. Every one returns records to the calling process, the only writer.

A trial always computes with one BLAS thread, whichever executor runs it.
OpenBLAS splits work differently with more threads, which changes the last
bits of an SVD, so this rule is what makes serial, process, Dask and shard
runs give bitwise-identical records on one machine type.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from . import __version__, experiments
from .errors import SparsescaleError
from .experiments.base import Point
from .store import TrialRecord

logger = logging.getLogger(__name__)

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
EXECUTOR_NAMES = ("serial", "processes", "dask")

# Called with each finished record; returns False to stop submitting new trials.
ResultCallback = Callable[[TrialRecord], bool]


class ExecutorError(SparsescaleError):
    """An executor cannot start: a missing optional package, an unreachable scheduler, mismatched workers."""


@dataclass
class Task:
    """One trial to compute: the config, a point and a replicate."""

    config: Any
    point: Point
    replicate: int

    @property
    def key(self) -> tuple[int, int]:
        return self.point.index, self.replicate


def _one_blas_thread():
    """Return a context manager that limits every loaded BLAS library to one thread.

    It scans the loaded libraries on each call (about 1 ms). A BLAS library
    that a trial loads while it runs is limited from the next trial on.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def execute_trial(task: Task) -> TrialRecord:
    """Compute one trial with one BLAS thread; an exception becomes a failed record, not a crash of the run."""
    module = experiments.experiment_module(task.config.kind)
    started = time.perf_counter()
    try:
        with _one_blas_thread():
            fields = module.run_trial(task.config, task.point, task.replicate)
    except Exception as error:  # noqa: BLE001 - any failure of one trial is recorded and reported
        message = f"{type(error).__name__}: {error}"
        logger.debug("trial %s/%s failed:\n%s", task.point.index, task.replicate, traceback.format_exc())
        return failed_record(task, message, time.perf_counter() - started)
    fields.setdefault("wall_time", time.perf_counter() - started)
    return TrialRecord(task.point.index, task.replicate, "ok", fields)


def failed_record(task: Task, message: str, wall_time: float = 0.0) -> TrialRecord:
    return TrialRecord(task.point.index, task.replicate, "failed", {"wall_time": wall_time}, message)


@contextlib.contextmanager
def one_blas_thread_environment() -> Iterator[None]:
    """Set the BLAS thread variables to 1 while worker processes start, so they inherit it."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Executor(Protocol):
    description: str
    # Workers on this machine, for the memory estimate; 1 for a remote Dask cluster (the estimate is per worker).
    local_workers: int

    def run(self, tasks: list[Task], on_result: ResultCallback) -> None: ...


class SerialExecutor:
    """Runs trials one after another in this process."""

    description = "serial"
    local_workers = 1

    def run(self, tasks: list[Task], on_result: ResultCallback) -> None:
        for task in tasks:
            if not on_result(execute_trial(task)):
                return


def _worker_init() -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")


class ProcessExecutor:
    """Runs trials in ``jobs`` local worker processes (spawned, one BLAS thread each).

    At most two trials per worker are queued, so a stop request leaves little
    to finish. If a worker dies (killed, out of memory), its trials are
    reported as failed and, unless the run stops, a new pool takes the rest.
    """

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.local_workers = jobs
        self.description = f"processes ({jobs} workers)"

    def run(self, tasks: list[Task], on_result: ResultCallback) -> None:
        queue = deque(tasks)
        context = multiprocessing.get_context("spawn")
        while queue:
            with one_blas_thread_environment():
                pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_worker_init)
            try:
                if not self._drain(pool, queue, on_result):
                    return
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _drain(self, pool: ProcessPoolExecutor, queue: deque, on_result: ResultCallback) -> bool:
        """Run queued tasks on ``pool``; return True if the pool broke and the run should go on."""
        pending: dict[Future, Task] = {}
        stop = False

        def submit_next() -> None:
            if queue and not stop:
                task = queue.popleft()
                try:
                    future = pool.submit(execute_trial, task)
                except BrokenProcessPool:
                    queue.appendleft(task)
                    raise
                pending[future] = task

        try:
            for _ in range(2 * self.jobs):
                submit_next()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    # A future leaves ``pending`` only once its record is passed on.
                    record = future.result()
                    del pending[future]
                    if not on_result(record):
                        stop = True
                    submit_next()
        except BrokenProcessPool:
            return self._report_broken_pool(pending, on_result)
        return False

    @staticmethod
    def _report_broken_pool(pending: dict[Future, Task], on_result: ResultCallback) -> bool:
        """Pass on the records of a broken pool: finished trials as they are, the others as failed."""
        message = "a worker process died while this trial was queued or running (killed by a signal or out of memory?)"
        keep_going = True
        lost = 0
        for future, task in pending.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                record = future.result()
            else:
                record = failed_record(task, message)
                lost += 1
            keep_going = on_result(record) and keep_going
        logger.warning("a worker process died; %d trial(s) in flight are recorded as failed", lost)
        return keep_going


class DaskExecutor:
    """Sends trials to a Dask distributed cluster; records stream back to this process as they finish.

    Without a scheduler address, a LocalCluster of ``workers`` single-threaded
    worker processes starts on 127.0.0.1 for the duration of the run. With an
    address, the workers there must run the same sparsescale version, which
    is checked before any trial is sent.
    """

    def __init__(self, scheduler: str | None, workers: int):
        self.scheduler = scheduler
        self.workers = workers
        self.local_workers = 1 if scheduler else workers
        where = scheduler if scheduler else f"local cluster on 127.0.0.1, {workers} workers"
        self.description = f"dask ({where})"

    def run(self, tasks: list[Task], on_result: ResultCallback) -> None:
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise ExecutorError(
                "--executor dask needs the 'distributed' package; install it with "
                "pip install 'sparsescale[dask]'"
            ) from None

        with contextlib.ExitStack() as stack:
            stack.enter_context(_quiet_distributed_logs())
            if self.scheduler is None:
                with one_blas_thread_environment():
                    cluster = stack.enter_context(LocalCluster(
                        n_workers=self.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.ERROR,
                    ))
                address = cluster.scheduler_address
            else:
                address = self.scheduler
            try:
                # The connect timeout is Dask's distributed.comm.timeouts.connect (30 s unless configured).
                client = stack.enter_context(Client(address, set_as_default=False))
            except OSError as error:
                raise ExecutorError(f"failed to connect to the Dask scheduler at {address}: {error}") from None
            self._check_workers(client)

            by_key = {self._future_key(task): task for task in tasks}
            futures = client.map(execute_trial, tasks, key=list(by_key), pure=False)
            remaining = set(futures)
            for future in as_completed(futures, loop=client.loop):
                remaining.discard(future)
                task = by_key[future.key]
                try:
                    record = future.result()
                except Exception as error:  # noqa: BLE001 - a lost worker or task is recorded as a failed trial
                    record = failed_record(task, f"dask: {type(error).__name__}: {error}")
                if not on_result(record):
                    client.cancel(list(remaining))
                    return

    @staticmethod
    def _future_key(task: Task) -> str:
        # Unique per run, so trials of earlier runs still known to a shared scheduler are not reused.
        return f"sparsescale-trial-{task.point.index}-{task.replicate}-{os.getpid()}-{id(task)}"

    @staticmethod
    def _check_workers(client) -> None:
        try:
            versions = client.run(worker_version)
        except Exception as error:  # noqa: BLE001 - any failure here means the workers cannot run trials
            raise ExecutorError(
                f"the Dask workers cannot run sparsescale ({type(error).__name__}: {error}); install sparsescale "
                f"{__version__} on them"
            ) from None
        if not versions:
            raise ExecutorError("the Dask cluster has no workers; start some with 'dask worker ADDRESS'")
        mismatched = {worker: version for worker, version in versions.items() if version != __version__}
        if mismatched:
            raise ExecutorError(
                f"Dask workers run another sparsescale version than this one ({__version__}): {mismatched}; "
                "install the same version everywhere"
            )


@contextlib.contextmanager
def _quiet_distributed_logs() -> Iterator[None]:
    """Keep the scheduler's and client's INFO messages (start, connect, close) out of the run's output."""
    distributed_logger = logging.getLogger("distributed")
    level = distributed_logger.level
    distributed_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        distributed_logger.setLevel(level)


def worker_version() -> str:
    """Return the sparsescale version of the process that calls it (run on each Dask worker)."""
    return __version__


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_executor(name: str, jobs: int | None = None, scheduler: str | None = None) -> Executor:
    """Build the executor ``name`` (serial, processes or dask).

    ``jobs`` is the number of local workers: processes, or LocalCluster
    workers when ``scheduler`` is None (default there: all available cores).
    ``processes`` with one job runs in this process, like ``serial``.
    """
    if scheduler is not None and name != "dask":
        raise ExecutorError(f"--scheduler needs --executor dask, not --executor {name}")
    if name == "serial":
        return SerialExecutor()
    if name == "processes":
        count = jobs or 1
        return SerialExecutor() if count <= 1 else ProcessExecutor(count)
    if name == "dask":
        return DaskExecutor(scheduler, jobs or available_cores())
    raise ExecutorError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTOR_NAMES)}")
