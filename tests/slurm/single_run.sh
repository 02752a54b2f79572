#!/usr/bin/env bash
# Slurm check 1: start a one-node Slurm cluster (real slurmctld/slurmd/munged),
# submit slurm/run.sbatch with 2 tasks, and check that the job completed and that
# its results equal a direct `mpirun -n 2` run of the same command (1e-8).
# The job is submitted twice: with the script's default launcher (srun, PMIx)
# and with PS_LAUNCHER=mpirun (Open MPI inside the allocation).
# Environment from ctest: PERTSCORE, MPIEXEC, PYTHON, TESTS_DIR, WORK_DIR, and
# OMPI_ALLOW_RUN_AS_ROOT* (sbatch passes the environment on to the job).
# PS_SLURM_KEEP=1 leaves the cluster running afterwards (for debugging; common.sh).
set -euo pipefail
source "$TESTS_DIR/slurm/common.sh" # root check, trap finish, start_cluster, job_state
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -f pertscore-*.log slurm-*.h5ad direct.h5ad submit-*.out

t0=$SECONDS
start_cluster
t_cluster=$(( SECONDS - t0 ))

t0=$SECONDS
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 4000 --genes 600 --perturbations 10 --moi 1 \
  --seed 3 --out sim.h5ad --quiet
args=(--input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt)
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run "${args[@]}" --output direct.h5ad --quiet --json
t_direct=$(( SECONDS - t0 ))

# submit LAUNCHER: run the sbatch script with 2 tasks and check the job.
# --mem=1G: the test needs far less than the script's default, which may exceed
# a small CI machine's memory (the node offers what `free` shows, minus 1 GB).
declare -A t_job
submit() {
  local launcher=$1 out=slurm-$1.h5ad id state log t0=$SECONDS
  echo "== sbatch --wait --ntasks=2 run.sbatch (PS_LAUNCHER=$launcher)"
  # --parsable prints the job id at submission, before --wait blocks.
  set +e
  PS_LAUNCHER=$launcher timeout 300 sbatch --parsable --wait --ntasks=2 --mem=1G \
    "$SBATCH_SCRIPT" "${args[@]}" --output "$out" --quiet > "submit-$launcher.out"
  local rc=$?
  set -e
  id=$(head -n1 "submit-$launcher.out" | cut -d';' -f1)
  [ -n "$id" ] && jobs_submitted+=("$id")
  t_job[$launcher]=$(( SECONDS - t0 ))
  [ "$rc" -eq 0 ] || { echo "FAIL: sbatch --wait exited $rc (124: timed out) for job '${id:-none}'"; return 1; }
  state=$(job_state "$id")
  echo "job $id: state $state, $(( SECONDS - t0 ))s from submission to end"
  [ "$state" = COMPLETED ] || { echo "FAIL: job $id state '$state', expected COMPLETED"; return 1; }
  log=pertscore-$id.log
  [ -s "$log" ] || { echo "FAIL: no job log $log in $PWD"; return 1; }
  cat "$log"
  # The summary must say 2 ranks: both tasks joined one MPI job.
  "$PYTHON" -c 'import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
sys.exit(0 if s and s[-1]["ranks"] == 2 and s[-1]["output"] == sys.argv[2] else 1)' "$log" "$out" \
    || { echo "FAIL: $log has no JSON summary of a 2-rank run writing $out"; return 1; }
  [ -s "$out" ] || { echo "FAIL: results file $out missing"; return 1; }
  "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" direct.h5ad "$out" 1e-8
}
submit srun
submit mpirun

echo "timings: cluster install+start ${t_cluster}s, simulate+direct run ${t_direct}s," \
  "srun job ${t_job[srun]}s, mpirun job ${t_job[mpirun]}s (sbatch --wait polls every few seconds)"
