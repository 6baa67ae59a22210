"""Run the benchmarks: ``python -m bench [--smoke] [--only 1,3] [--output PATH]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from . import measure, report, workloads

DEFAULT_OUTPUT = Path("results/bench/latest.json")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark sparsescale against naive "
                                     "code, scikit-learn and this machine's DGEMM rate.")
    parser.add_argument("--smoke", action="store_true",
                        help="run tiny sizes that only check the harness, so the figures mean nothing")
    parser.add_argument("--only", default=",".join(workloads.WORKLOADS),
                        help="comma-separated workload numbers to run (default: all, 1 to 6)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write the rows to")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads per process (default 1). Any value other than 1 times in wall-clock "
                             "seconds instead of CPU seconds, and 0 keeps the library default")
    return parser.parse_args(argv)


def run(arguments: argparse.Namespace, console: Console) -> list[dict]:
    """Run the selected workloads, print the table, write the JSON file and return the rows."""
    from threadpoolctl import threadpool_limits

    selected = [name.strip() for name in arguments.only.split(",") if name.strip()]
    unknown = [name for name in selected if name not in workloads.WORKLOADS]
    if unknown:
        raise SystemExit(f"error: unknown workload {', '.join(unknown)}, choose from {', '.join(workloads.WORKLOADS)}")

    settings = workloads.Settings(
        sizes=workloads.SMOKE if arguments.smoke else workloads.FULL,
        clock=measure.CPU if arguments.threads == 1 else measure.WALL,
        threads=arguments.threads,
        log=lambda message: console.log(message),
    )
    machine = measure.machine_description()
    started = time.perf_counter()
    rows: list[dict] = []
    with threadpool_limits(limits=arguments.threads if arguments.threads > 0 else None, user_api="blas"):
        for name in selected:
            rows.extend(workloads.WORKLOADS[name](settings))
    machine["load_average_after"] = machine_load()
    machine["clock"] = settings.clock
    machine["blas_threads"] = arguments.threads or "library default"
    machine["bench_wall_seconds"] = time.perf_counter() - started

    title = (f"sparsescale benchmarks ({settings.clock} seconds, {machine['blas_threads']} BLAS thread(s), "
             f"{machine['usable_cpus']} CPUs{', smoke sizes' if arguments.smoke else ''})")
    report.print_table(console, rows, title)
    report.write_json(arguments.output, rows, machine)
    console.print(f"rows written to {arguments.output} in {machine['bench_wall_seconds']:.0f} s")
    return rows


def machine_load() -> list[float] | None:
    import os

    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> None:
    console = Console(log_path=False)
    if not console.is_terminal:
        # Rich wraps at 80 columns when output goes to a pipe or a file, which folds every row.
        console = Console(width=160, log_path=False)
    run(parse_arguments(argv), console)


if __name__ == "__main__":
    main(sys.argv[1:])
