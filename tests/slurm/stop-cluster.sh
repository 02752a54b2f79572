#!/usr/bin/env bash
# Stop the one-node test cluster started by tests/slurm/start-cluster.sh:
# slurmd and slurmctld (by the pids in $PS_SLURM_DIR), and munged if that
# script started it. Safe to run when nothing is running. Leaves the logs.
# PS_SLURM_KEEP_MUNGE=1 leaves munged running.
set -uo pipefail
DIR=${PS_SLURM_DIR:-/tmp/pertscore-slurm}

stop_pid() {   # stop_pid NAME PIDFILE
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  # Only a process that is really that daemon (pid files outlive reboots).
  if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop-cluster: $name ($pid) ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidfile"
}

# Cancel any jobs still in this cluster first, so their steps end cleanly.
if [ -s "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
  export SLURM_CONF=$DIR/slurm.conf
  ids=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "${ids// /}" ]; then
    echo "stop-cluster: cancelling jobs $ids" >&2
    # shellcheck disable=SC2086
    timeout 10 scancel $ids 2>/dev/null
    for _ in $(seq 1 30); do [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break; sleep 1; done
  fi
fi
stop_pid slurmd "$DIR/slurmd.pid"
stop_pid slurmctld "$DIR/slurmctld.pid"
if [ "${PS_SLURM_KEEP_MUNGE:-0}" != 1 ] && [ -e "$DIR/munged.started-by-us" ]; then
  stop_pid munged /run/munge/munged.pid
  rm -f "$DIR/munged.started-by-us"
fi
exit 0
