#!/usr/bin/env bash
# Slurm check 4 (issue #6): a job killed during the QP (score) stage and
# resubmitted with --resume produces the same results as an uninterrupted run.
#
# On the one-node cluster of start-cluster.sh:
#   1. slurm/run.sbatch (2 tasks, srun) with PERTSCORE_FAULT=score:sleep=600: every
#      rank stops at the start of the score stage, after the ridge checkpoint is in
#      OUTPUT.partial; once the job log shows it, the job is scancel'ed (what a
#      time limit or a preemption does: SIGTERM, then SIGKILL).
#   2. The job ends CANCELLED, OUTPUT does not exist, OUTPUT.partial holds the ridge
#      checkpoint.
#   3. The same job is resubmitted with --resume (sbatch --wait): it COMPLETES,
#      says it took the ridge stage from the partial, and its results equal a
#      direct `mpirun -n 2` run exactly (tests/fault/compare_results.py).
# Environment from ctest: PERTSCORE, MPIEXEC, PYTHON, TESTS_DIR, WORK_DIR.
# PS_SLURM_KEEP=1 leaves the cluster running afterwards (for debugging; common.sh).
set -euo pipefail
source "$TESTS_DIR/slurm/common.sh" # root check, trap finish, start_cluster, job_state
unset PERTSCORE_FAULT
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
WORK_DIR=$(pwd -P)
rm -f pertscore-*.log direct.h5ad results.h5ad results.h5ad.partial submit-*.out

start_cluster

"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 3000 --genes 300 --perturbations 8 --moi 2 \
  --poisson-moi --control-fraction 0.25 --seed 7 --out sim.h5ad --quiet </dev/null
# automatic targets, permutations and dosage: every checkpointed item is exercised
args=(--input sim.h5ad --guides sim.guides.tsv --control NonTargeting --permutations 30 --min-dosage-cells 30)
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run "${args[@]}" --output direct.h5ad --quiet </dev/null
OUT=$WORK_DIR/results.h5ad

echo "== job 1: stops at the score stage (PERTSCORE_FAULT=score:sleep=600), then scancel"
id=$(PERTSCORE_FAULT=score:sleep=600 timeout 60 sbatch --parsable --ntasks=2 --mem=1G "$SBATCH_SCRIPT" \
  "${args[@]}" --output "$OUT" | cut -d';' -f1)
[ -n "$id" ] || { echo "FAIL: sbatch gave no job id"; exit 1; }
jobs_submitted+=("$id")
log=pertscore-$id.log
t0=$SECONDS
until [ -f "$log" ] && grep -q "fault injection: rank 0 sleeps 600 s at 'score'" "$log"; do
  state=$(job_state "$id")
  case "$state" in PENDING | CONFIGURING | RUNNING | "") ;; *) echo "FAIL: job $id ended ($state) before the score stage"; exit 1 ;; esac
  (( SECONDS - t0 < 300 )) || { echo "FAIL: job $id did not reach the score stage within 300 s"; exit 1; }
  sleep 1
done
echo "job $id reached the score stage after $(( SECONDS - t0 ))s; scancel"
timeout 20 scancel "$id"
t0=$SECONDS
until state=$(job_state "$id"); [ "$state" = CANCELLED ] || [ "$state" = FAILED ] || [ "$state" = COMPLETED ]; do
  (( SECONDS - t0 < 120 )) || { echo "FAIL: job $id still $state 120 s after scancel"; exit 1; }
  sleep 1
done
echo "job $id: state $state $(( SECONDS - t0 ))s after scancel"
[ "$state" = CANCELLED ] || { echo "FAIL: job $id state '$state', expected CANCELLED"; exit 1; }
[ ! -e "$OUT" ] || { echo "FAIL: $OUT exists although the job was cancelled"; exit 1; }
[ -s "$OUT.partial" ] || { echo "FAIL: no $OUT.partial left by the cancelled job"; exit 1; }
"$PYTHON" -c 'import sys, h5py
f = h5py.File(sys.argv[1], "r")
sys.exit(0 if "uns/pertscore/checkpoint/ridge/complete" in f and "uns/pertscore/checkpoint/score/complete" not in f else 1)' \
  "$OUT.partial" || { echo "FAIL: $OUT.partial does not hold (only) the ridge checkpoint"; exit 1; }
echo "$OUT.partial holds the ridge checkpoint"

echo "== job 2: the same job with --resume (sbatch --wait)"
set +e
timeout 300 sbatch --parsable --wait --ntasks=2 --mem=1G "$SBATCH_SCRIPT" "${args[@]}" --output "$OUT" --resume \
  >submit-resume.out
rc=$?
set -e
id=$(head -n1 submit-resume.out | cut -d';' -f1)
[ -n "$id" ] && jobs_submitted+=("$id")
[ "$rc" -eq 0 ] || { echo "FAIL: sbatch --wait exited $rc (124: timed out) for job '${id:-none}'"; exit 1; }
state=$(job_state "$id")
echo "job $id: state $state"
[ "$state" = COMPLETED ] || { echo "FAIL: job $id state '$state', expected COMPLETED"; exit 1; }
log=pertscore-$id.log
grep "resume:" "$log" || true
grep -q "resume: stages ridge taken from" "$log" || { echo "FAIL: job $id did not resume the ridge stage"; exit 1; }
[ -s "$OUT" ] && [ ! -e "$OUT.partial" ] || { echo "FAIL: after job $id: $OUT missing or $OUT.partial left"; exit 1; }
"$PYTHON" "$TESTS_DIR/fault/compare_results.py" direct.h5ad "$OUT"
echo "PASS: a cancelled Slurm job resubmitted with --resume gives the uninterrupted run's results"
