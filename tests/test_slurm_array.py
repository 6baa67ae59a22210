"""End to end on a real single-node Slurm on 127.0.0.1: submit an array job, rerun a failed shard, merge.

ci/slurm/up.sh brings the cluster up (installing slurm-wlm and munge with
apt-get when they are missing) and ci/slurm/down.sh stops its daemons by
PID. The test is skipped, with up.sh's reason, where up.sh exits 3 (not
root, or no apt-get); any other failure of up.sh fails the test.
Set SPARSESCALE_SLURM_STATE to choose the state directory (.ci/slurm-test.sh
does, so that it can stop the daemons itself if the test is killed).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import REPO, TINY_CONFIG, assert_bitwise_equal, run_cli, trial_fields
from sparsescale_cli.loading import load_config
from sparsescale_cli.runner import prepare_directory
from sparsescale_cli.shards import Shard
from sparsescale_cli.store import RunLock

UP_SCRIPT = REPO / "ci" / "slurm" / "up.sh"
DOWN_SCRIPT = REPO / "ci" / "slurm" / "down.sh"
UP_TIMEOUT_SECONDS = 600  # apt-get install on a fresh machine is most of it
DOWN_TIMEOUT_SECONDS = 90
JOB_TIMEOUT_SECONDS = 180


def _free_loopback_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _stop_cluster(state: Path) -> None:
    subprocess.run(["bash", str(DOWN_SCRIPT), str(state)], capture_output=True, text=True,
                   timeout=DOWN_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """Bring up a single-node Slurm on 127.0.0.1 for this module; yield its SLURM_CONF path."""
    if not UP_SCRIPT.exists() or not DOWN_SCRIPT.exists():
        pytest.skip(f"{UP_SCRIPT} or {DOWN_SCRIPT} not found")
    state = Path(os.environ.get("SPARSESCALE_SLURM_STATE") or tmp_path_factory.mktemp("slurm"))
    controller_port, node_port = _free_loopback_ports(2)
    environment = dict(os.environ, SLURM_CTLD_PORT=str(controller_port), SLURMD_PORT=str(node_port))

    started = time.monotonic()
    try:
        up = subprocess.run(["bash", str(UP_SCRIPT), str(state)], capture_output=True, text=True, env=environment,
                            timeout=UP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _stop_cluster(state)
        pytest.fail(f"ci/slurm/up.sh timed out after {UP_TIMEOUT_SECONDS} s (logs in {state}/log)")
    reason = (up.stderr.strip().splitlines() or ["no output"])[-1]
    if up.returncode == 3:
        pytest.skip(f"Slurm is unavailable here: {reason}")
    if up.returncode != 0:
        pytest.fail(f"ci/slurm/up.sh failed with exit {up.returncode}: {reason}")
    print(f"\nSlurm bring-up took {time.monotonic() - started:.1f} s")

    last_line = up.stdout.strip().splitlines()[-1]
    assert last_line.startswith("export SLURM_CONF="), up.stdout
    try:
        yield last_line.split("=", 1)[1]
    finally:
        _stop_cluster(state)


def _wait_for_job(job_id: str, slurm_conf: str) -> dict[str, str]:
    """Wait until the array job leaves the queue; return each task's JobState and ExitCode."""
    environment = dict(os.environ, SLURM_CONF=slurm_conf)
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while True:
        queue = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, env=environment,
                               timeout=30)
        if queue.returncode == 0 and not queue.stdout.strip():
            break
        assert time.monotonic() < deadline, f"array job {job_id} still queued after {JOB_TIMEOUT_SECONDS} s"
        time.sleep(0.5)
    # slurmctld keeps finished jobs for MinJobAge (300 s by default), so scontrol still shows them.
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                           env=environment, timeout=30)
    assert shown.returncode == 0, shown.stderr
    states = {}
    for line in shown.stdout.splitlines():
        task = re.search(r"\bArrayTaskId=(\d+)", line)
        state = re.search(r"\bJobState=(\S+)", line)
        exit_code = re.search(r"\bExitCode=(\S+)", line)
        if task and state and exit_code:
            states[task.group(1)] = f"{state.group(1)} {exit_code.group(1)}"
    return states


@pytest.mark.slow
def test_slurm_array_job_then_merge(slurm_conf, tmp_path, serial_reference):
    directory = tmp_path / "run"
    prepare_directory(load_config(TINY_CONFIG), directory)

    # Shard 1 finds its lock taken, exits 2, and Slurm marks that task FAILED.
    with RunLock(directory, Shard(1, 3).lock_name):
        submitted = run_cli("submit", TINY_CONFIG, "--slurm", "--array", "3", "--out", directory,
                            "--time", "0:10:00", SLURM_CONF=slurm_conf)
        assert submitted.returncode == 0, submitted.stderr
        job_id = re.search(r"submitted array job (\d+)", submitted.stdout).group(1)
        states = _wait_for_job(job_id, slurm_conf)

    assert states == {"0": "COMPLETED 0:0", "1": "FAILED 2:0", "2": "COMPLETED 0:0"}
    incomplete = run_cli("merge", directory, "--no-figures")
    assert incomplete.returncode == 1
    assert f"sbatch --array=1 {directory / 'submit-slurm.sh'}" in incomplete.stderr

    rerun = subprocess.run(["sbatch", "--parsable", "--array=1", str(directory / "submit-slurm.sh")],
                           capture_output=True, text=True, env=dict(os.environ, SLURM_CONF=slurm_conf), timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert _wait_for_job(rerun.stdout.strip().split(";")[0], slurm_conf) == {"1": "COMPLETED 0:0"}
    merged = run_cli("merge", directory, "--no-figures")

    assert merged.returncode == 0, merged.stderr
    assert "16 of 16 trials" in merged.stdout
    assert sorted(path.name for path in (directory / "slurm-logs").iterdir()) == [
        f"{job_id}_0.out", f"{job_id}_1.out", f"{job_id}_2.out", f"{rerun.stdout.strip().split(';')[0]}_1.out"]
    assert_bitwise_equal(trial_fields(serial_reference), trial_fields(directory / "results.h5"), "Slurm array")
