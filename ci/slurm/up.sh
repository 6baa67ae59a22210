#!/usr/bin/env bash
# ci/slurm/up.sh - start a throwaway single-node Slurm cluster on loopback.
#
# Usage:
#   eval "$(ci/slurm/up.sh STATE_DIR)"      # then sbatch/squeue/sinfo work
#   ...
#   ci/slurm/down.sh STATE_DIR
#
# What it does (as root, on Debian):
#   * installs Debian's slurm-wlm and munge with apt-get if sbatch, slurmctld,
#     slurmd or munged are missing (services are not auto-started by apt);
#   * makes a munge key if there is none and starts munged as the munge user
#     on the default socket /run/munge/munge.socket.2 (an already working
#     munged on that socket is reused and is then left alone by down.sh);
#   * writes STATE_DIR/slurm.conf (everything on 127.0.0.1, no cgroups, no
#     accounting daemon, one node "localhost", one partition "debug") and
#     starts slurmctld and "slurmd -N localhost" with it;
#   * waits (at most SLURM_UP_TIMEOUT seconds, default 90) for the node to
#     be idle, runs one smoke batch job in STATE_DIR/smoke, and prints
#     "export SLURM_CONF=STATE_DIR/slurm.conf" as the last line on stdout.
#     Progress messages go to stderr.
#
# If a step fails after a daemon was started, up.sh runs down.sh itself, so a
# failed up.sh leaves nothing running.
#
# PIDs of what it started are kept in STATE_DIR (slurmctld.pid, slurmd.pid,
# munged.pid); logs are in STATE_DIR/log. down.sh uses the PID files.
#
# Optional environment:
#   SLURM_CTLD_PORT (default 6817), SLURMD_PORT (default 6818),
#   SLURM_UP_TIMEOUT (default 90),
#   SLURM_UP_SMOKE=0 to skip the smoke job (the first job submitted after
#   start then waits about 3 s before slurmctld schedules it).
#
# Exit codes: 0 up; 1 failure (one-line reason on stderr); 2 usage;
#   3 Slurm cannot be provided here (not root, no apt-get, or apt-get failed),
#     which tests should treat as "skip".

set -u -o pipefail

DOWN_SCRIPT=$(dirname -- "$0")/down.sh
STARTED=      # set once this script has started a daemon
say() { printf 'up.sh: %s\n' "$*" >&2; }
die() {
  printf 'up.sh: error: %s\n' "$*" >&2
  if [ -n "$STARTED" ]; then
    timeout 60 bash "$DOWN_SCRIPT" "$STATE" >/dev/null 2>&1
  fi
  exit 1
}
unavailable() { printf 'up.sh: unavailable: %s\n' "$*" >&2; exit 3; }
trap 'die "interrupted by a signal"' INT TERM HUP

[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }

CTLD_PORT=${SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
UP_TIMEOUT=${SLURM_UP_TIMEOUT:-90}
T0=$(date +%s)

# ---------------------------------------------------------------- state dir
mkdir -p -- "$1" || die "failed to create state dir $1"
STATE=$(cd -- "$1" && pwd -P) || die "failed to enter state dir $1"
case $STATE in
  *[[:space:]]*|*'#'*) die "invalid state dir $STATE: slurm.conf paths must not contain spaces or '#'" ;;
esac
CONF=$STATE/slurm.conf
LOG=$STATE/log
mkdir -p "$STATE/state" "$STATE/spool" "$LOG" || die "failed to create state, spool and log dirs under $STATE"

# Succeed if PID exists and is not a zombie waiting to be reaped.
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
pid_from() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }

# Wait up to 10 s for FILE to name a running process.
wait_pidfile() { # FILE
  local pid
  for _ in $(seq 1 50); do
    pid=$(pid_from "$1")
    pid_alive "$pid" && return 0
    sleep 0.2
  done
  return 1
}

last_log_line() { tail -n 1 "$1" 2>/dev/null | cut -c1-200; }

for d in slurmctld slurmd; do
  p=$(pid_from "$STATE/$d.pid")
  if pid_alive "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$d" ]; then
    die "$d already running for $STATE (pid $p); run down.sh first"
  fi
done

[ "$(id -u)" -eq 0 ] || unavailable "must run as root to start munged and slurmd"

# ---------------------------------------------------------------- packages
have_slurm_commands() {
  command -v sbatch >/dev/null && command -v squeue >/dev/null &&
  command -v sinfo >/dev/null && command -v slurmctld >/dev/null &&
  command -v slurmd >/dev/null && command -v munged >/dev/null &&
  command -v munge >/dev/null && command -v scancel >/dev/null
}
export PATH=$PATH:/usr/sbin:/sbin
if ! have_slurm_commands; then
  command -v apt-get >/dev/null || unavailable "slurm/munge missing and apt-get not found"
  say "installing slurm-wlm and munge with apt-get"
  # A policy-rc.d that exits 101 keeps apt from starting the distro services.
  # An existing policy-rc.d is left as it is.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d &&
      made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_ok=1
  timeout 300 apt-get update -q >"$STATE/apt.log" 2>&1 || apt_ok=0
  if [ $apt_ok = 1 ]; then
    timeout 600 apt-get install -y -q --no-install-recommends slurm-wlm munge \
      >>"$STATE/apt.log" 2>&1 || apt_ok=0
  fi
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ $apt_ok = 1 ] || unavailable "apt-get update/install of slurm-wlm munge failed (see $STATE/apt.log)"
  hash -r
  have_slurm_commands || unavailable "slurm-wlm/munge installed but commands still missing"
  say "packages installed in $(( $(date +%s) - T0 ))s"
fi

# ---------------------------------------------------------------- ports
# ss comes with iproute2. Without it a busy port shows up as a slurmctld or
# slurmd start failure instead.
if command -v ss >/dev/null; then
  for port in "$CTLD_PORT" "$SLURMD_PORT"; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
      die "TCP port $port is already in use, maybe by another Slurm; run its down.sh or set SLURM_CTLD_PORT and SLURMD_PORT"
    fi
  done
fi

# ---------------------------------------------------------------- munge
getent passwd munge >/dev/null || die "user munge not found; reinstall the munge package"
install -d -o munge -g munge -m 0700 /etc/munge || die "failed to create /etc/munge"
install -d -o munge -g munge -m 0755 /run/munge || die "failed to create /run/munge"
install -d -o munge -g munge -m 0711 /var/lib/munge || die "failed to create /var/lib/munge"
install -d -o munge -g munge -m 0700 /var/log/munge || die "failed to create /var/log/munge"
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then
    timeout 30 mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 ||
      die "mungekey --create failed"
  else
    timeout 30 dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none ||
      die "failed to write /etc/munge/munge.key"
  fi
fi
if ! { chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key; }; then
  die "failed to set owner and mode of /etc/munge/munge.key"
fi

munge_works() { timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; }

# NOTE: all clusters on this machine share the munged on /run/munge. A second
# up.sh with other ports reuses the first one's munged, which stops when the
# first cluster's down.sh runs.
rm -f "$STATE/munged.pid"
if munge_works; then
  say "reusing the munged already serving /run/munge (down.sh will not stop it)"
else
  # munged warns about an existing socket unless run with --force (munged(8)),
  # so remove the socket and pid file left by a munged that is gone.
  oldpid=$(pid_from /run/munge/munged.pid)
  if ! pid_alive "$oldpid"; then
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  fi
  STARTED=1
  if command -v runuser >/dev/null; then
    timeout 30 runuser -u munge -- munged </dev/null >"$LOG/munged.start" 2>&1
  else
    timeout 30 setpriv --reuid=munge --regid=munge --init-groups munged \
      </dev/null >"$LOG/munged.start" 2>&1
  fi
  rc=$?
  [ $rc -eq 0 ] || die "munged failed to start (rc $rc): $(tail -n 1 "$LOG/munged.start" 2>/dev/null)"
  rm -f "$LOG/munged.start"
  wait_pidfile /run/munge/munged.pid || die "munged pid file /run/munge/munged.pid missing or stale"
  mpid=$(pid_from /run/munge/munged.pid)
  echo "$mpid" >"$STATE/munged.pid"
  for _ in $(seq 1 50); do munge_works && break; sleep 0.2; done
  munge_works || die "munged started, but the credential check 'munge -n | unmunge' failed"
  say "munged started (pid $mpid)"
fi

# ---------------------------------------------------------------- slurm.conf
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)
TOTAL_MB=$(free -m | awk '/^Mem:/ {print $2}')
if ! [ "${TOTAL_MB:-0}" -gt 0 ] 2>/dev/null; then
  die "failed to read total memory from free -m (got '${TOTAL_MB:-}')"
fi
# Use 90% of the total so that RealMemory stays below what slurmd detects.
REAL_MB=$(( TOTAL_MB * 90 / 100 ))
[ "$REAL_MB" -ge 1 ] || REAL_MB=1
DEF_MEM_PER_CPU=$(( REAL_MB / CPUS ))

rm -f "$STATE/slurmctld.pid" "$STATE/slurmd.pid"

cat >"$CONF" <<EOF
# Written by ci/slurm/up.sh - throwaway single-node cluster on loopback.
ClusterName=sparsescale-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# batch_sched_delay defaults to 3 s (slurm.conf(5)), which delays array tasks.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$CONF

# ---------------------------------------------------------------- daemons
say "starting slurmctld (port $CTLD_PORT)"
STARTED=1
timeout 30 slurmctld -c -f "$CONF" </dev/null >"$LOG/slurmctld.start" 2>&1 ||
  die "slurmctld failed to start: $(last_log_line "$LOG/slurmctld.start") (see $LOG)"
wait_pidfile "$STATE/slurmctld.pid" ||
  die "slurmctld exited after start: $(last_log_line "$LOG/slurmctld.log") (see $LOG)"

say "starting slurmd -N localhost (port $SLURMD_PORT)"
timeout 30 slurmd -N localhost -f "$CONF" </dev/null >"$LOG/slurmd.start" 2>&1 ||
  die "slurmd failed to start: $(last_log_line "$LOG/slurmd.start") (see $LOG)"
wait_pidfile "$STATE/slurmd.pid" ||
  die "slurmd exited after start: $(last_log_line "$LOG/slurmd.log") (see $LOG)"

# ---------------------------------------------------------------- wait idle
deadline=$(( $(date +%s) + UP_TIMEOUT ))
state=
while :; do
  state=$(timeout 10 sinfo -h -n localhost -o '%T' 2>/dev/null | head -n 1)
  case $state in
    idle) break ;;
  esac
  for d in slurmctld slurmd; do
    pid_alive "$(pid_from "$STATE/$d.pid")" ||
      die "$d exited while waiting for the node: $(last_log_line "$LOG/$d.log")"
  done
  [ "$(date +%s)" -lt "$deadline" ] ||
    die "timed out after ${UP_TIMEOUT}s waiting for node localhost to be idle (state '${state:-none}', see $LOG)"
  sleep 0.5
done

say "node localhost idle after $(( $(date +%s) - T0 ))s"

# ---------------------------------------------------------------- smoke job
# A tiny batch job proves that slurmstepd can run jobs on this machine. It also
# waits out the first seconds after start (about 3 s with Slurm 22.05.8), when
# slurmctld schedules nothing.
if [ "${SLURM_UP_SMOKE:-1}" != 0 ]; then
  mkdir -p "$STATE/smoke" || die "failed to create $STATE/smoke"
  rm -f "$STATE/smoke/ok"
  jid=$(timeout 30 sbatch --parsable --job-name=up-smoke --chdir="$STATE/smoke" \
        --output=/dev/null --wrap 'echo ok > ok' 2>"$LOG/smoke.sbatch") ||
    die "smoke job: sbatch failed: $(last_log_line "$LOG/smoke.sbatch")"
  jid=${jid%%;*}
  while [ -n "$(timeout 10 squeue -h -j "$jid" 2>/dev/null)" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${UP_TIMEOUT}s waiting for smoke job $jid (see $LOG)"
    sleep 0.3
  done
  [ "$(cat "$STATE/smoke/ok" 2>/dev/null)" = ok ] ||
    die "smoke job $jid finished without writing $STATE/smoke/ok, so jobs fail to run (see $LOG/slurmd.log)"
fi

say "cluster up in $(( $(date +%s) - T0 ))s"
echo "export SLURM_CONF=$CONF"
