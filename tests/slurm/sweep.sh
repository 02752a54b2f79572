#!/usr/bin/env bash
# Slurm checks 2 and 3 on a real one-node Slurm:
#  2. an sbatch array sweep of 4 points with the dependent merge job
#     (slurm/submit-sweep.sh): the merged table has every point, and each point
#     equals a direct run with the same parameters;
#  3. re-running an unchanged job prints "up to date" and leaves the file alone
#     (same mtime and bytes); changing the input's content makes it reprocess.
set -euo pipefail
source "$TESTS_DIR/slurm/common.sh" # root check, trap finish, start_cluster
SLURM_SCRIPTS=$(cd "$TESTS_DIR/../slurm" && pwd)
export PS_LAUNCHER=mpirun
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -rf ./*
start_cluster

"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 3000 --genes 400 --perturbations 6 --seed 9 \
  --out sim.h5ad --quiet
cat > job.yaml <<YAML
input: sim.h5ad
guides: sim.guides.tsv
control: NonTargeting
targets: sim.targets.gmt
output: out/res.h5ad
permutations: 20
sweep:
  lambda: [0.001, 0.1]
  ridge-lambda: [0.01, 1]
slurm:
  ntasks: 2
  mem: 1G
  time: "00:10:00"
YAML
mkdir -p out
[ "$("$PERTSCORE" sweep --config job.yaml --count)" = 4 ]

echo "== check 2: array sweep + dependent merge"
read -r array merge < <(timeout 60 bash "$SLURM_SCRIPTS/submit-sweep.sh" job.yaml | tail -n 1)
echo "array job $array, merge job $merge"
for _ in $(seq 1 240); do   # at most 120 s
  state=$(scontrol show job "$merge" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
  case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  sleep 0.5
done
echo "merge job state: $state"
[ "$state" = COMPLETED ]
table=out/res.sweep.tsv
cat "$table" | cut -f1-7 | head -5
for t in 0 1 2 3; do
  n=$(awk -F'\t' -v t="$t" 'NR > 1 && $1 == t && $5 == "ok"' "$table" | wc -l)
  [ "$n" = 6 ] || { echo "FAIL: point $t has $n rows with status ok, expected 6 (one per perturbation)"; exit 1; }
done
compared=0
while IFS=$'\t' read -r point lambda ridge output; do
  "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting \
    --targets sim.targets.gmt --permutations 20 --lambda "$lambda" --ridge-lambda "$ridge" \
    --output "direct$point.h5ad" --quiet < /dev/null   # mpirun would eat the list on stdin
  echo "point $point (lambda $lambda, ridge-lambda $ridge) vs a direct run:"
  "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" "direct$point.h5ad" "$output" 1e-12
  compared=$((compared + 1))
done < <("$PERTSCORE" sweep --config job.yaml --list)
[ "$compared" = 4 ] || { echo "FAIL: compared $compared points, expected 4"; exit 1; }

echo "== check 3: an unchanged job is up to date; a changed input reprocesses"
target=out/res.point002.h5ad
before=$(stat -c '%Y %s' "$target"); sum_before=$(md5sum < "$target")
sleep 1.1
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" sweep --config job.yaml --task 2 2> rerun.err
grep -q "up to date" rerun.err || { echo "FAIL: no 'up to date' message"; cat rerun.err; exit 1; }
[ "$(stat -c '%Y %s' "$target")" = "$before" ] && [ "$(md5sum < "$target")" = "$sum_before" ] \
  || { echo "FAIL: the up-to-date output was rewritten"; exit 1; }
echo "unchanged: 'up to date', same mtime and bytes"
# change the guide table's content (one UMI count) without changing its meaning much
awk -F'\t' 'BEGIN{OFS="\t"} NR == 2 {$6 = $6 + 1} {print}' sim.guides.tsv > g.tmp && mv g.tmp sim.guides.tsv
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" sweep --config job.yaml --task 2 2> rerun2.err
if grep -q "up to date" rerun2.err; then echo "FAIL: changed input was not reprocessed"; exit 1; fi
[ "$(md5sum < "$target")" != "$sum_before" ] || [ "$(stat -c '%Y' "$target")" != "${before% *}" ] \
  || { echo "FAIL: output not rewritten after the input changed"; exit 1; }
echo "changed input: reprocessed"
echo OK
