#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurm-wlm + munge),
# for tests/slurm. Run as root. Idempotent: if the cluster in $PS_SLURM_DIR is
# already up and idle, it is left alone; stale daemons from a killed run are
# stopped and started again.
#
#   bash tests/slurm/start-cluster.sh     # then: export SLURM_CONF=$PS_SLURM_DIR/slurm.conf
#
# Everything Slurm writes (config, state, spool, logs, pid files) lives under
# $PS_SLURM_DIR (default /tmp/pertscore-slurm); /etc/slurm is not touched, so
# clients must be given SLURM_CONF. No systemd: daemons are started directly.
# Environment: PS_SLURM_DIR, PS_SLURM_PORT (slurmctld port, default 6817; slurmd
# uses the next one), PS_SLURM_WAIT (seconds to wait for the node, default 60).
set -euo pipefail
DIR=${PS_SLURM_DIR:-/tmp/pertscore-slurm}
PORT=${PS_SLURM_PORT:-6817}
WAIT=${PS_SLURM_WAIT:-60}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
say() { echo "start-cluster: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts slurmctld/slurmd)"

# 1. Packages (tools/debian-packages.txt has them; install only if missing).
# libpmix-dev: Slurm's mpi/pmix plugin dlopens the unversioned libpmix.so.
need=()
for p in slurm-wlm munge libpmix-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q >&2
  timeout 600 apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

# 2. munge: a key, then munged (unless one is already answering).
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
mkdir -p "$DIR"
if ! munge_ok; then
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  # A munged killed hard leaves its socket lock behind; --force takes it over.
  runuser -u munge -- /usr/sbin/munged --force
  touch "$DIR/munged.started-by-us"
  for _ in $(seq 1 50); do munge_ok && break; sleep 0.2; done
  munge_ok || { cat /var/log/munge/munged.log >&2 || true; die "munged did not start"; }
fi

# 3. slurm.conf for one node: this host, all its CPUs (with the socket/core
# layout slurmd itself detects, else just nproc), its memory minus a margin.
NODE=$(hostname -s)
CPUS=$(nproc)
LAYOUT=$(timeout 20 slurmd -C 2>/dev/null | head -n1 | tr ' ' '\n' \
         | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ' || true)
case "$LAYOUT" in *CPUs=*) ;; *) LAYOUT="CPUs=$CPUS" ;; esac
MEM=$(free -m | awk '/^Mem:/ {print $2}')
MEM=$(( MEM > 2048 ? MEM - 1024 : MEM * 3 / 4 ))   # leave room for the OS and daemons
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
cat > "$CONF.new" <<CONFEOF
# Written by tests/slurm/start-cluster.sh: a one-node test cluster on localhost.
ClusterName=pertscore-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Containers and CI VMs have no usable cgroups: track processes by parentage.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Debian's Slurm and Open MPI share libpmix 4, so srun starts MPI ranks directly.
MpiDefault=pmix
ReturnToService=2
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 ${LAYOUT}RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONFEOF

node_state() { timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Already up with the same configuration: nothing to do.
if cmp -s "$CONF" "$CONF.new" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
  case "$(node_state)" in
    idle|mix|alloc) rm -f "$CONF.new"; say "cluster already up (node $NODE: $(node_state))"; exit 0 ;;
  esac
fi

# Otherwise: stop whatever of ours is left, then start fresh.
PS_SLURM_DIR=$DIR PS_SLURM_KEEP_MUNGE=1 bash "$(dirname "$0")/stop-cluster.sh" >&2 || true
mv "$CONF.new" "$CONF"
for f in "$DIR"/log/*.log; do [ -f "$f" ] && mv -f "$f" "$f.old"; done   # fresh logs per start
say "starting slurmctld and slurmd (node $NODE, ${LAYOUT} ${MEM} MB, config $CONF)"
# -c: start with an empty job state (a test cluster keeps nothing between runs).
slurmctld -c -f "$CONF"
slurmd -f "$CONF" -N "$NODE"

show_logs() {
  for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    echo "---- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2 2>/dev/null || true
  done
}
deadline=$(( SECONDS + WAIT ))
state=
while [ "$SECONDS" -lt "$deadline" ]; do
  state=$(node_state || true)
  case "$state" in
    idle) break ;;
    down*|drain*|fail*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
if [ "$state" != idle ]; then
  say "node $NODE not idle after ${WAIT}s (state: '${state:-no answer}')"
  show_logs
  exit 1
fi
say "cluster up: node $NODE idle after $(( SECONDS - deadline + WAIT ))s; export SLURM_CONF=$CONF"
