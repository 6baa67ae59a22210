#!/usr/bin/env bash
# Run the Slurm end-to-end test (tests/test_slurm_array.py) on a throwaway
# single-node cluster on 127.0.0.1, with a time limit on every step.
#
# The test brings the cluster up with ci/slurm/up.sh and stops it with
# ci/slurm/down.sh. This script gives it a state directory and runs down.sh
# on that directory again at exit, so the daemons are stopped by PID even if
# pytest is killed by its time limit. Where up.sh cannot provide Slurm (exit
# 3: not root, no apt-get) pytest reports the test as skipped with the reason
# and this script exits 0.
#
# Environment: PYTHON (default .venv/bin/python, else python3),
#   SLURM_TEST_TIMEOUT (seconds for pytest, default 900).

set -u -o pipefail
cd "$(dirname -- "$0")/.." || exit 1

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
STATE=$(mktemp -d "${TMPDIR:-/tmp}/sparsescale-slurm.XXXXXX") || exit 1

stop_cluster() {
  timeout 120 bash ci/slurm/down.sh "$STATE" >&2 ||
    echo "slurm-test: down.sh failed; the daemons' PID files are in $STATE" >&2
}
trap stop_cluster EXIT

SPARSESCALE_SLURM_STATE=$STATE timeout "${SLURM_TEST_TIMEOUT:-900}" \
  "$PYTHON" -m pytest -q -rs tests/test_slurm_array.py
