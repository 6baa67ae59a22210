"""Timers, DGEMM rate, peak memory of a subprocess, and a description of the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

CPU = "cpu"
WALL = "wall"


@dataclass(frozen=True)
class Timing:
    """Seconds spent by one call: wall-clock time and CPU time of this process."""

    wall: float
    cpu: float

    def seconds(self, clock: str) -> float:
        return self.cpu if clock == CPU else self.wall


def time_call(function: Callable[[], Any]) -> tuple[Timing, Any]:
    """Call ``function`` once and return its timing and result."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    result = function()
    return Timing(time.perf_counter() - wall_start, time.process_time() - cpu_start), result


def time_best(function: Callable[[], Any], repeats: int, clock: str) -> tuple[Timing, Any]:
    """Call ``function`` ``repeats`` times and return the fastest timing on ``clock`` with the last result.

    The minimum is the least disturbed by other processes, so it is the
    usual figure for a deterministic computation.
    """
    best: Timing | None = None
    result = None
    for _ in range(max(1, repeats)):
        timing, result = time_call(function)
        if best is None or timing.seconds(clock) < best.seconds(clock):
            best = timing
    return best, result


def gemm_flops(m: int, k: int, n: int) -> float:
    """Return the flops of an (m x k) by (k x n) product, 2 m k n."""
    return 2.0 * m * k * n


def dgemm_rate(m: int, k: int, n: int, repeats: int, clock: str, seed: int = 0) -> float:
    """Measure the GFLOP/s of a float64 (m x k) by (k x n) product on this machine."""
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((m, k))
    right = rng.standard_normal((k, n))
    left @ right  # warm the BLAS threads and caches before timing
    timing, _ = time_best(lambda: left @ right, repeats, clock)
    return gemm_flops(m, k, n) / max(timing.seconds(clock), 1e-9) / 1e9


@dataclass(frozen=True)
class ProcessUsage:
    """Times and output of one finished subprocess."""

    wall: float
    cpu: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(command: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> ProcessUsage:
    """Run ``command`` to completion and return its wall time and CPU time.

    CPU time is user plus system time of this one child and the children it
    waited for, read with os.wait4 so that other children do not mix in.
    Its ru_maxrss is not used: on Linux it starts from the parent's resident
    size at fork, so it cannot show a child smaller than this process.
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return ProcessUsage(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            returncode=process.returncode,
            stdout=stdout.read(),
            stderr=stderr.read(),
        )


def peak_rss_bytes() -> int:
    """Return VmHWM, this process's peak resident memory since it started (Linux only).

    Unlike ru_maxrss, VmHWM belongs to the address space that exec created,
    so a subprocess does not inherit its parent's peak.
    """
    peak = _proc_field("/proc/self/status", "VmHWM")
    if peak is None:
        raise RuntimeError("/proc/self/status has no VmHWM line: peak memory is measured on Linux only")
    return int(peak.split()[0]) * 1024


def run_python_json(module: str, arguments: list[str], env: dict[str, str] | None = None) -> tuple[ProcessUsage, dict]:
    """Run ``python -m module arguments`` and parse the JSON object it prints last."""
    usage = run_measured([sys.executable, "-m", module, *arguments], env=env)
    if usage.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(arguments)} failed with exit status {usage.returncode}:\n"
                           f"{usage.stderr.strip()}")
    lines = [line for line in usage.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{module} {' '.join(arguments)} printed nothing; expected one JSON object")
    return usage, json.loads(lines[-1])


def machine_description() -> dict[str, Any]:
    """Return the CPU, memory, library versions and current load of this machine."""
    import scipy

    description: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        from threadpoolctl import threadpool_info

        description["blas"] = [
            {key: info.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info() if info.get("user_api") == "blas"
        ]
    except ImportError:
        description["blas"] = None
    return description


def _proc_field(path: str, name: str) -> str | None:
    """Return the value after ``name:`` on the first matching line of a /proc file, or None."""
    try:
        with open(path) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        return None
    return None


def _cpu_model() -> str | None:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None


def _memory_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")
    return round(int(total.split()[0]) / 2**20, 1) if total else None
