"""Slurm array jobs: one array task per shard of a run, each running ``sparsescale run --shard I/N``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import SparsescaleError

SCRIPT_NAME = "submit-slurm.sh"
LOG_DIRECTORY = "slurm-logs"
SBATCH_TIMEOUT_SECONDS = 60


class SubmitError(SparsescaleError):
    """The job script cannot be written or sbatch failed."""


@dataclass
class ArrayJob:
    """Settings of a Slurm array job; None leaves a setting to the cluster's defaults."""

    array: int
    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus_per_task: int = 1
    job_name: str = "sparsescale"


def write_array_script(job: ArrayJob, directory: Path, config_path: Path) -> Path:
    """Write the sbatch script of ``job`` into the run ``directory`` and return its path.

    Each task runs the resolved config stored in the run directory with
    ``--shard $SLURM_ARRAY_TASK_ID/N``, so a later edit of the original YAML
    file cannot change a submitted run, and ``sbatch --array=3,17 SCRIPT``
    reruns just those shards.
    """
    directory = directory.resolve()
    config_path = config_path.resolve()
    for label, path in (("run directory", directory), ("config", config_path)):
        if re.search(r"[\s%]", str(path)):
            raise SubmitError(f"{label} {path}: paths with whitespace or '%' do not work in #SBATCH lines; "
                              "choose another --out")
    for label, value in (("--partition", job.partition), ("--time", job.time), ("--mem", job.mem)):
        if value is not None and (not value or re.search(r"\s", value)):
            raise SubmitError(f"invalid {label} {value!r}: expected one word such as 'debug', '2:00:00' or '8G'")

    logs = directory / LOG_DIRECTORY
    logs.mkdir(parents=True, exist_ok=True)
    options = [
        f"--job-name={job.job_name}",
        f"--array=0-{job.array - 1}",
        f"--output={logs}/%A_%a.out",
        "--ntasks=1",
        f"--cpus-per-task={job.cpus_per_task}",
        # Tasks need the submitting shell's PATH and PYTHONPATH to find this Python and package.
        "--export=ALL",
    ]
    options += [f"--{name}={value}" for name, value in (("partition", job.partition), ("time", job.time),
                                                          ("mem", job.mem)) if value is not None]
    command = [
        sys.executable, "-m", "sparsescale_cli", "run", str(config_path), "--out", str(directory),
        "--jobs", str(job.cpus_per_task), "--no-progress",
    ]
    rerun_example = "0" if job.array == 1 else f"0,{job.array - 1}"
    lines = [
        "#!/bin/bash",
        f"# Written by 'sparsescale submit': {job.array} array tasks, one per shard of the run in",
        f"# {directory}. Rerun some shards with: sbatch --array={rerun_example} {directory / SCRIPT_NAME}",
        *[f"#SBATCH {option}" for option in options],
        "set -euo pipefail",
        f'exec {shlex.join(command)} --shard "${{SLURM_ARRAY_TASK_ID}}/{job.array}"',
        "",
    ]
    script = directory / SCRIPT_NAME
    temporary = script.with_name(script.name + ".tmp")
    temporary.write_text("\n".join(lines), encoding="utf-8")
    temporary.chmod(0o755)
    temporary.replace(script)
    return script


def submit(script: Path) -> str:
    """Submit ``script`` with sbatch and return the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SubmitError("sbatch not found on PATH; run this on a Slurm login node, or use --dry-run to only "
                          f"write {script}")
    try:
        completed = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True,
                                   timeout=SBATCH_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SubmitError(f"sbatch timed out after {SBATCH_TIMEOUT_SECONDS} s; is slurmctld reachable?") from None
    if completed.returncode != 0:
        reason = (completed.stderr.strip().splitlines() or ["no error output"])[-1]
        raise SubmitError(f"sbatch failed (exit {completed.returncode}): {reason}")
    # --parsable prints "jobid" or "jobid;cluster".
    return completed.stdout.strip().split(";")[0]
