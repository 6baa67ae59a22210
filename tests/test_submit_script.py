"""sparsescale submit --dry-run: the sbatch array script it writes, run here without Slurm."""

from __future__ import annotations

import subprocess
import sys

from cli_helpers import TINY_CONFIG, cli_environment, run_cli
from sparsescale_cli.store import read_results


def test_submit_dry_run_writes_array_script(tmp_path):
    completed = run_cli("submit", TINY_CONFIG, "--slurm", "--array", "4", "--out", tmp_path, "--partition", "debug",
                        "--time", "2:00:00", "--mem", "8G", "--dry-run")

    assert completed.returncode == 0, completed.stderr
    script = (tmp_path / "submit-slurm.sh").read_text()
    assert "#SBATCH --array=0-3\n" in script
    assert "#SBATCH --partition=debug\n" in script
    assert "#SBATCH --time=2:00:00\n" in script
    assert "#SBATCH --mem=8G\n" in script
    assert f"#SBATCH --output={tmp_path.resolve()}/slurm-logs/%A_%a.out\n" in script
    assert f"exec {sys.executable} -m sparsescale_cli run {tmp_path.resolve()}/config.yaml" in script
    assert '--shard "${SLURM_ARRAY_TASK_ID}/4"' in script
    assert (tmp_path / "slurm-logs").is_dir()
    assert (tmp_path / "config.yaml").exists()


def test_array_script_runs_its_shard_without_slurm(tmp_path):
    completed = run_cli("submit", TINY_CONFIG, "--slurm", "--array", "3", "--out", tmp_path, "--dry-run")
    assert completed.returncode == 0, completed.stderr

    task = subprocess.run(["bash", str(tmp_path / "submit-slurm.sh")], env=cli_environment(SLURM_ARRAY_TASK_ID="2"),
                          capture_output=True, text=True, timeout=120)

    assert task.returncode == 0, task.stderr
    attributes = read_results(tmp_path / "results-shard-0002-of-0003.h5").attributes
    assert attributes["shard"] == "2/3"
    assert attributes["trials_done"] == 5


def test_submit_rejects_more_tasks_than_trials(tmp_path):
    completed = run_cli("submit", TINY_CONFIG, "--slurm", "--array", "17", "--out", tmp_path, "--dry-run")

    assert completed.returncode == 2
    assert "--array 17 is more than the 16 trials" in completed.stderr
    assert not (tmp_path / "submit-slurm.sh").exists()


def test_submit_without_sbatch_fails_with_advice(tmp_path):
    completed = run_cli("submit", TINY_CONFIG, "--slurm", "--array", "2", "--out", tmp_path, PATH="/nonexistent")

    assert completed.returncode == 2
    assert "sbatch not found on PATH" in completed.stderr
    assert "--dry-run" in completed.stderr
