"""Benchmark: wall time of ``--jobs 2`` against a serial run of the quick double-descent config.

Not a test. Prints two ratios (jobs 2 / serial, lower is better), each the
median over --repeats alternating runs:

* command: the whole ``sparsescale run`` command in a fresh process
  (imports, trials, analysis, results file, figures), into a new directory;
* trials: only the executor phase (process start-up included), timed in
  this process on the full plan, without analysis or writing.

Usage: python benchmarks/jobs_speedup.py [--config FILE] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def time_command(config: Path, jobs: int) -> float:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sparsescale_cli", "run", str(config), "--out", directory, "--jobs",
                        str(jobs), "--no-progress"], env=environment, check=True, stdout=subprocess.DEVNULL,
                       cwd=REPO)
        return time.perf_counter() - started


def time_trials(config: Path, jobs: int) -> float:
    sys.path.insert(0, str(REPO))
    from sparsescale_cli.executors import make_executor
    from sparsescale_cli.loading import load_config
    from sparsescale_cli.runner import plan_tasks

    experiment = load_config(config)
    _, tasks = plan_tasks(experiment)
    executor = make_executor("processes", jobs)
    started = time.perf_counter()
    executor.run(tasks, lambda record: True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "quick" / "double_descent.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()

    for label, measure in (("command", time_command), ("trials", time_trials)):
        serial, parallel = [], []
        for _ in range(arguments.repeats):
            serial.append(measure(arguments.config, 1))
            parallel.append(measure(arguments.config, 2))
        ratio = statistics.median(parallel) / statistics.median(serial)
        print(f"{label}: serial {statistics.median(serial):.2f} s, --jobs 2 {statistics.median(parallel):.2f} s, "
              f"ratio {ratio:.2f} (median of {arguments.repeats}; serial runs {[round(t, 2) for t in serial]}, "
              f"--jobs 2 runs {[round(t, 2) for t in parallel]})")
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
