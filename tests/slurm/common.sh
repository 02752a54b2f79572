# Sourced by the Slurm checks (single_run.sh, resume.sh, sweep.sh): the root
# check, the cluster's environment, the exit trap that cancels this check's jobs,
# shows the logs of a failure and stops the cluster, and the cluster start.
# Environment from ctest: PERTSCORE, TESTS_DIR. PS_SLURM_KEEP=1 leaves the
# cluster running afterwards (for debugging).
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (installs slurm-wlm/munge if missing, starts slurmctld, slurmd, munged)"
  exit 77
fi
SLURM_DIR=$(cd "$TESTS_DIR/slurm" && pwd)
SBATCH_SCRIPT=$(cd "$TESTS_DIR/../slurm" && pwd)/run.sbatch
export PS_SLURM_DIR=${PS_SLURM_DIR:-/tmp/pertscore-slurm}
export SLURM_CONF=$PS_SLURM_DIR/slurm.conf
export PERTSCORE # run.sbatch starts "$PERTSCORE" (default: pertscore on PATH)

jobs_submitted=() # the checks add their job ids: cancelled on exit
finish() {
  rc=$?
  for id in "${jobs_submitted[@]}"; do timeout 10 scancel "$id" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "---- FAILED (rc $rc); job logs and daemon logs follow" >&2
    for f in pertscore-*.log "$PS_SLURM_DIR"/log/slurmctld.log "$PS_SLURM_DIR"/log/slurmd.log; do
      [ -f "$f" ] && { echo "---- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2; }
    done
  fi
  if [ "${PS_SLURM_KEEP:-0}" != 1 ]; then bash "$SLURM_DIR/stop-cluster.sh"; fi
  exit "$rc"
}
trap finish EXIT

job_state() { timeout 20 scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }

# Install if needed and start the one-node cluster, then show it.
start_cluster() {
  timeout 900 bash "$SLURM_DIR/start-cluster.sh"
  timeout 20 sinfo
}
