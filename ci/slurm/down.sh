#!/usr/bin/env bash
# ci/slurm/down.sh - stop the cluster that ci/slurm/up.sh started.
#
# Usage:
#   ci/slurm/down.sh STATE_DIR
#
# Cancels jobs still in the queue, then stops slurmd, slurmctld and (only if
# up.sh started it) munged, using the PID files in STATE_DIR. Each daemon gets
# SIGTERM, and SIGKILL if it is still there after DOWN_TIMEOUT seconds
# (default 20). A PID is signalled only while /proc shows the expected
# program name for it, so a reused PID is left alone. Nothing is stopped by name.
# STATE_DIR itself (config, logs, job state) is left for inspection.
#
# Exit codes: 0 everything stopped (or nothing was running); 1 a daemon
# failed to stop; 2 usage.

set -u -o pipefail

say() { printf 'down.sh: %s\n' "$*" >&2; }

[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[ -d "$1" ] || { say "no state dir $1, nothing to stop"; exit 0; }
STATE=$(cd -- "$1" && pwd -P) || { say "failed to enter state dir $1"; exit 1; }
DOWN_TIMEOUT=${DOWN_TIMEOUT:-20}
export PATH=$PATH:/usr/sbin:/sbin

pid_from() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }
# Succeed if PID is alive, is not a zombie waiting to be reaped, and has the
# command name NAME.
is_running_as() {
  [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

failed=0

# Stop the daemon NAME whose PID is in PIDFILE: SIGTERM first, then SIGKILL.
stop_daemon() { # NAME PIDFILE
  local name=$1 file=$2 pid
  pid=$(pid_from "$file") || pid=
  if [ -z "$pid" ]; then
    return 0
  fi
  if ! is_running_as "$pid" "$name"; then
    say "$name (pid $pid) is not running"
    rm -f "$file"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  local end=$(( $(date +%s) + DOWN_TIMEOUT ))
  while is_running_as "$pid" "$name" && [ "$(date +%s)" -lt "$end" ]; do
    sleep 0.2
  done
  if is_running_as "$pid" "$name"; then
    say "$name (pid $pid) ignored SIGTERM for ${DOWN_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 1 25); do is_running_as "$pid" "$name" || break; sleep 0.2; done
  fi
  if is_running_as "$pid" "$name"; then
    say "failed to stop $name (pid $pid); kill it by hand"
    failed=1
  else
    say "stopped $name (pid $pid)"
    rm -f "$file"
  fi
}

# Cancel leftover jobs while the daemons are still up, so that their slurmstepd
# and job processes end with the cluster. After DOWN_TIMEOUT seconds this goes on regardless.
if [ -f "$STATE/slurm.conf" ] && is_running_as "$(pid_from "$STATE/slurmctld.pid")" slurmctld; then
  export SLURM_CONF=$STATE/slurm.conf
  job_ids=$(timeout 10 squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "$job_ids" ]; then
    say "cancelling jobs: $job_ids"
    # shellcheck disable=SC2086  # one argument per job id
    timeout 15 scancel $job_ids 2>/dev/null
    end=$(( $(date +%s) + DOWN_TIMEOUT ))
    while [ -n "$(timeout 10 squeue -h -o '%A' 2>/dev/null)" ] && [ "$(date +%s)" -lt "$end" ]; do
      sleep 0.5
    done
  fi
fi

stop_daemon slurmd "$STATE/slurmd.pid"
stop_daemon slurmctld "$STATE/slurmctld.pid"
stop_daemon munged "$STATE/munged.pid"

exit $failed
